"""Cache entries: each written with its SHA-256 beside it, checked before it is read.

The user cache (:func:`likeness.models.cache_dir`) holds results that are expensive to make and
are reused across cases: the embedded faces of each photo, the faces table of each footage, the
networks exported to ONNX. (Model weights are pinned by their own published SHA-256 instead,
see :mod:`likeness.models`.)

A cache entry is evidence at one remove: a damaged or edited entry would silently become a
wrong result. So every entry ``<name>`` is written with ``<name>.sha256`` (the SHA-256 of its
bytes, in ``sha256sum`` format) and read only through :func:`read_entry`, which hashes the very
bytes it hands back, or :func:`verify_entry` for entries read by path. An entry whose bytes do
not match, whose seal is missing or unreadable, or whose content its reader cannot use
(:func:`discard`) is removed with a warning naming the file (also written to the processing
log of the run folder this process is working on) and made again by the caller.

The seal is written before the entry is renamed into place: a crash in between leaves a seal
that does not match the (old or missing) entry, which reads as damaged and is rebuilt, never an
entry that looks sealed but is not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

from likeness import files, processing_log, runfolder
from likeness.errors import LikenessWarning

SEAL_SUFFIX = ".sha256"


class CacheWarning(LikenessWarning):
    """A cache entry was damaged, edited or unsealed: it was discarded and is made again."""


def seal_path(entry: str | os.PathLike[str]) -> Path:
    """The file holding the SHA-256 of cache entry ``entry``: ``<entry>.sha256``."""
    entry = Path(entry)
    return entry.with_name(entry.name + SEAL_SUFFIX)


def write_entry(entry: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Write cache entry ``entry`` atomically with its seal: ``write(tmp)`` writes the bytes."""
    entry = Path(entry)
    with files.atomic_path(entry) as tmp:
        write(tmp)
        seal = f"{files.sha256_file(tmp)}  {entry.name}\n"
        files.write_bytes_atomic(seal_path(entry), seal.encode("ascii"))


def copy_entry(source: str | os.PathLike[str], entry: str | os.PathLike[str]) -> None:
    """Copy the file ``source`` into the cache as ``entry`` (with its seal)."""
    write_entry(entry, lambda tmp: shutil.copyfile(source, tmp))


def read_entry(entry: str | os.PathLike[str]) -> bytes | None:
    """The bytes of cache entry ``entry`` when they match its seal; None when there is no entry.

    The very bytes returned are hashed (no window for a change between check and use). A
    damaged, edited or unsealed entry is discarded (see :func:`discard`) and None returned, so
    that the caller makes it again.
    """
    entry = Path(entry)
    try:
        data = entry.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        discard(entry, f"it cannot be read ({exc.strerror})")
        return None
    return data if _matches_seal(entry, hashlib.sha256(data).hexdigest()) else None


def verify_entry(entry: str | os.PathLike[str]) -> bool:
    """Whether cache entry ``entry`` exists and matches its seal, for entries too large to hold
    in memory (compiled networks) that are then read by path. A damaged, edited or unsealed
    entry is discarded (see :func:`discard`) and False returned."""
    entry = Path(entry)
    try:
        actual = files.sha256_file(entry)
    except FileNotFoundError:
        return False
    except OSError as exc:
        discard(entry, f"it cannot be read ({exc.strerror})")
        return False
    return _matches_seal(entry, actual)


def _matches_seal(entry: Path, actual: str) -> bool:
    """Whether ``actual`` (the SHA-256 of the entry's bytes) is its seal's; discards it if not."""
    try:
        words = seal_path(entry).read_text("ascii").split()
    except FileNotFoundError:
        discard(entry, f"it carries no SHA-256 ({seal_path(entry).name} is missing)")
        return False
    except (OSError, UnicodeDecodeError) as exc:
        discard(entry, f"its SHA-256 file is unreadable ({exc})")
        return False
    expected = words[0] if words else ""
    if actual != expected:
        discard(
            entry, f"its content (SHA-256 {actual[:16]}...) is not what was written "
            f"(SHA-256 {expected[:16] or 'none'}...): damaged or edited"
        )
        return False
    return True


def discard(entry: str | os.PathLike[str], reason: str) -> None:
    """Remove cache entry ``entry`` and its seal, with a warning saying why.

    The warning (a :class:`CacheWarning`) names the file; when this process holds a run folder
    (a step is running) the run folder's processing log says so too.
    """
    entry = Path(entry)
    entry.unlink(missing_ok=True)
    seal_path(entry).unlink(missing_ok=True)
    message = f"{entry}: cache entry discarded and made again: {reason}"
    warnings.warn(message, CacheWarning, stacklevel=2)
    held = runfolder.held_folders()
    if held:  # the innermost step's folder: the one whose work reads this entry
        processing_log.append_entry(held[-1], {
            "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "event": "cache_discarded",
            "file": str(entry),
            "message": message,
        })
