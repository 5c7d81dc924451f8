"""Files: the SHA-256 of a file, and writes that never leave a half-written file.

Every output of likeness is written to a temporary file beside its destination and renamed
over it when complete (a rename is atomic on one file system), so a crash or a kill leaves
either the old file, the new one, or nothing: never a partial file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks (footage can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name starts with a dot and ends with ``.tmp``, so listings can skip it; it is
    removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, sort_keys: bool = True) -> None:
    """Write JSON (indented, UTF-8, trailing newline) atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, "utf-8")


def copy_atomic(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp, open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, HASH_CHUNK)


CSV_FLOAT_FORMAT = "%.6f"


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a result table byte-reproducibly: fixed float format, '\\n' line ends, no index."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Produce ``items`` in a background thread, so reading and decoding overlap computing.

    PyAV, PIL and hashlib work with the GIL released; exceptions of the producer are re-raised
    here, after the items it produced before them.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # handed to the consumer, not lost in the thread
            q.put(exc)
        q.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            thread.join()
            raise item
        yield item
    thread.join()
