"""Files: the SHA-256 of a file, and writes that never leave a half-written file.

Every output of likeness is written to a temporary file beside its destination and renamed
over it when complete (a rename is atomic on one file system), so a crash or a kill leaves
either the old file, the new one, or nothing: never a partial file that looks complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.errors import OutputError

HASH_CHUNK = 1 << 20

# Errors that say the output side failed, whatever file the call was about.
_OUTPUT_ERRNOS = {
    errno.ENOSPC: "the disk is full; free space or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is exhausted; free space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EFBIG: "the file grew beyond the size this process may write (ulimit -f); "
    "raise the limit or write elsewhere (--out)",
}
# Errors that say the output side failed when they are about the output's own path.
_PATH_ERRNOS = {
    errno.EACCES: "no permission to write there; choose a folder you may write to (--out)",
    errno.EPERM: "no permission to write there; choose a folder you may write to (--out)",
    errno.ENOTDIR: "a file is in the way where a folder is needed; choose another --out",
    errno.EEXIST: "a file is in the way where a folder is needed; choose another --out",
    errno.EISDIR: "a folder is in the way where a file is needed; choose another --out",
    errno.ENAMETOOLONG: "the name is too long for the file system; use shorter ids or paths",
    errno.ENOENT: "its folder does not exist or was removed; choose an existing --out",
}

# Called with (finished temporary file, destination) just before each rename into place, so
# that the run folder can record what it holds as it is written (likeness.runfolder registers
# here). Called before the rename: a crash between the two leaves a record of a file that did
# not land, which the run folder tells from a changed file; the opposite order would leave a
# finished file without a record.
rename_hooks: list[Callable[[Path, Path], None]] = []


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError | None:
    """The OutputError for ``exc`` raised while writing ``path``, or None when it is not one.

    pyarrow's errors carry no errno, only FFmpeg/C library text: those are matched by text.
    """
    code = exc.errno
    text = str(exc)
    if code is None and "No space left on device" in text:
        code = errno.ENOSPC
    if code is None and "Read-only file system" in text:
        code = errno.EROFS
    advice = _OUTPUT_ERRNOS.get(code) or _PATH_ERRNOS.get(code)
    if advice is None:
        return None
    return OutputError(f"{path}: cannot be written: {os.strerror(code)}; {advice}")


def make_folder(path: str | os.PathLike[str]) -> Path:
    """Create an output folder (and its parents), or raise OutputError saying why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (output_error(path, exc) or exc) from exc
    if not path.is_dir():
        raise OutputError(f"{path}: is a file, not a folder; choose another --out")
    return path


def rename_into_place(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename a finished temporary file onto ``path`` (atomic), telling ``rename_hooks`` first."""
    for hook in rename_hooks:
        hook(Path(tmp), Path(path))
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise (output_error(path, exc) or exc) from exc


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
    A full disk, a read-only folder or a missing permission raises OutputError naming ``path``.
    """
    path = Path(path)
    make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            yield tmp
        except OSError as exc:
            # Only errors of the writing side become OutputError; a failing read stays itself.
            about_output = exc.errno in _OUTPUT_ERRNOS or exc.filename in (None, str(tmp))
            error = output_error(path, exc) if about_output else None
            if error is None:
                raise
            raise error from exc
        rename_into_place(tmp, path)
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
    for source in prefetch_each([items], depth):
        yield from source


_ITEM, _ERROR, _END, _DONE = range(4)


def prefetch_each(sources: Iterable[Iterable], depth: int = 2) -> Iterator[Iterator]:
    """One iterator per source, all produced in order by one background thread that starts on
    the next source as soon as one is exhausted: the next episode's first frames are decoded
    while this episode's last ones are still being computed on, not after.

    At most ``depth`` items wait at any time, whatever source they come from, so memory is
    bounded as for one source. A source's exception is raised by its own iterator, after its
    items, and the next sources go on. Moving to the next iterator drops what is left of the
    current one. When the consumer stops (closes the generator, or the process is
    interrupted), the producer stops too and closes its source. Sources should be lazy (a
    generator that opens its file when first iterated), so that a source that cannot even
    start fails as its own iterator, and the next ones still come.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: int, payload: Any = None) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, payload), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        remaining = iter(sources)
        while True:
            try:
                source = next(remaining)
            except StopIteration:
                break
            except BaseException as exc:  # making the next source failed: its consumer hears
                put(_ERROR, exc)  # it (a generator of sources is finished after raising)
                break
            try:
                for item in source:
                    if not put(_ITEM, item):
                        return
                end = (_END, None)
            except BaseException as exc:  # handed to the consumer, not lost in the thread
                end = (_ERROR, exc)  # the error ends its source
            finally:
                close = getattr(source, "close", None)
                if close is not None:  # a generator abandoned half-way closes its files
                    close()
            if not put(*end):
                return
        put(_DONE)

    def rest_of_source(kind: int, payload: Any) -> Iterator:
        while kind != _END:  # an _ERROR is raised, and ends the source too
            if kind == _ERROR:
                raise payload
            yield payload
            kind, payload = q.get()

    thread = threading.Thread(target=produce, daemon=True, name="likeness-prefetch")
    thread.start()
    current: Iterator | None = None
    try:
        while True:
            if current is not None:
                try:  # what the consumer left of the previous source, its error included
                    for _ in current:
                        pass
                except BaseException:
                    pass
            kind, payload = q.get()
            if kind == _DONE:
                return
            current = rest_of_source(kind, payload)
            yield current
    finally:
        stop.set()
        thread.join()
