"""The run folder: one writer at a time, and a record of every result it holds.

Intermediate results (faces tables, embedded photos, the intake record, the result tables) are
evidence too: a later step, or ``likeness report`` reusing a run, must never read a file that
was changed since it was written. So:

- **One writer.** A step (intake, analyze) holds an OS lock (``fcntl.flock``) on
  ``.likeness.lock`` in the run folder for its whole length; a second process asking for the
  same folder is refused at once with :class:`RunFolderBusyError` (no waiting, no mixing).
  The lock is released by the kernel when the process ends, even on ``kill -9``.
- **A record of what was written.** ``outputs.json`` maps the relative path of every file in
  the run folder to its size and SHA-256. Files written through :mod:`likeness.files` while a
  step holds the lock are recorded the moment they are renamed into place (so a crash keeps
  the record of what was finished); at the end of each step every file then in the folder is
  recorded, whatever wrote it, so new kinds of result need no list here.
- **A check before reading.** When a step starts, every recorded file is re-hashed; a file that
  changed, was truncated or was removed stops the step with
  :class:`RunFolderIntegrityError` naming it. The append-only warnings file and processing
  log may only have grown. A result file the record does not know (a ``.parquet`` or
  ``.json`` left by an interrupted run, another program, or a copy from elsewhere) is never
  read: it is removed, with a warning, and the step rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from likeness import files
from likeness.errors import (
    WARNINGS_FILE,
    RunFolderBusyError,
    RunFolderIntegrityError,
    record_warning,
)
from likeness.processing_log import LOG_FILE as PROCESSING_LOG

LOCK_FILE = ".likeness.lock"
OUTPUTS_FILE = "outputs.json"
RECORD_VERSION = 1
# Files that are never recorded: the lock and the record itself.
NOT_RECORDED = frozenset({LOCK_FILE, OUTPUTS_FILE})
# Files that steps only append to: a later state must start with the recorded bytes. The
# processing log is appended by `likeness report` too, outside the analysis step's record.
APPEND_ONLY = frozenset({WARNINGS_FILE, PROCESSING_LOG})
# Result formats steps resume from: an unrecorded one is removed and rebuilt, never read.
RESUMABLE_SUFFIXES = (".parquet", ".json")

# Run folders whose lock this process holds: resolved path -> [file descriptor, depth].
_held: dict[Path, list[int]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _is_transient(rel: str) -> bool:
    """Temporary files of atomic writes and the .partial faces table of a running episode."""
    name = rel.rsplit("/", 1)[-1]
    return name.endswith((".tmp", ".partial")) or (name.startswith(".") and name != LOCK_FILE)


def _listing(run_dir: Path) -> list[str]:
    """Relative paths (POSIX) of the files that belong in the record, sorted."""
    rels = []
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(run_dir).as_posix()
            if rel not in NOT_RECORDED and not _is_transient(rel):
                rels.append(rel)
    return sorted(rels)


def _entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": files.sha256_file(path)}


def read_record(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{relative path: {bytes, sha256}}`` of the run folder's recorded files ({} if none)."""
    path = Path(run_dir) / OUTPUTS_FILE
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text("utf-8"))
        recorded = record["files"]
        if not isinstance(recorded, dict):
            raise TypeError("'files' is not a mapping")
        return recorded
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise RunFolderIntegrityError(
            f"{path}: the run folder's record of its results is unreadable ({exc}); the folder "
            "cannot be trusted, analyse into a new --out folder"
        ) from exc


def _write_record(run_dir: Path, recorded: dict[str, dict[str, Any]]) -> None:
    data = {"version": RECORD_VERSION, "files": dict(sorted(recorded.items()))}
    files.write_json_atomic(run_dir / OUTPUTS_FILE, data)


def record_files(run_dir: str | os.PathLike[str]) -> None:
    """Record every file now in the run folder in ``outputs.json`` (the end of a step).

    The record is rebuilt from the folder's listing, so files the step removed leave it too.
    """
    run_dir = Path(run_dir)
    _write_record(run_dir, {rel: _entry(run_dir / rel) for rel in _listing(run_dir)})


def _prefix_sha256(path: Path, n_bytes: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = n_bytes
        while remaining > 0 and (chunk := f.read(min(files.HASH_CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def check_recorded(run_dir: str | os.PathLike[str]) -> list[str]:
    """Re-hash every recorded file; return the relative paths the record does not know.

    Raises RunFolderIntegrityError naming each recorded file that changed, shrank or is gone.
    """
    run_dir = Path(run_dir)
    recorded = read_record(run_dir)
    problems = []
    for rel, want in sorted(recorded.items()):
        path = run_dir / rel
        if want.get("pending"):
            # Recorded just before its rename by a step that did not finish: kept only when the
            # rename landed (same bytes); otherwise an interrupted write, treated as unrecorded.
            if not (path.is_file() and _entry(path) == {k: want[k] for k in ("bytes", "sha256")}):
                del recorded[rel]
            continue
        if not path.is_file():
            problems.append(f"{path}: removed since it was written")
            continue
        size = path.stat().st_size
        if rel in APPEND_ONLY and size >= want["bytes"]:
            if _prefix_sha256(path, want["bytes"]) != want["sha256"]:
                problems.append(f"{path}: its recorded lines were changed")
            continue
        if size != want["bytes"]:
            problems.append(
                f"{path}: changed since it was written (now {size} bytes, {want['bytes']} "
                "when written)"
            )
        elif files.sha256_file(path) != want["sha256"]:
            problems.append(
                f"{path}: changed since it was written (same size, SHA-256 "
                f"{want['sha256'][:16]}... when written)"
            )
    if problems:
        raise RunFolderIntegrityError(
            f"{run_dir}: results in this run folder were changed after they were written, "
            f"refusing to read them ({'; '.join(problems)}); restore the original files, or "
            "analyse into a new --out folder (or a new --run-id)"
        )
    return [rel for rel in _listing(run_dir) if rel not in recorded]


def _discard_unrecorded(run_dir: Path, unrecorded: list[str]) -> None:
    """Remove the unrecorded result files a step would otherwise resume from."""
    for rel in unrecorded:
        if rel.endswith(RESUMABLE_SUFFIXES) and rel not in APPEND_ONLY:
            (run_dir / rel).unlink(missing_ok=True)
            record_warning(
                run_dir,
                "run folder",
                f"{run_dir / rel}: not in {OUTPUTS_FILE} (left by an interrupted run or "
                "written by another program); removed and rebuilt",
            )


def _record_before_rename(tmp: Path, path: Path) -> None:
    """files.rename_hooks: record a file about to land in a run folder this process holds.

    The entry is marked pending until the step ends: if the process dies before the rename,
    the next step finds a pending entry whose file is missing or different, which is an
    interrupted write (dropped), not a changed result.
    """
    resolved = path.resolve()
    for run_dir in _held:
        if not resolved.is_relative_to(run_dir):
            continue
        rel = resolved.relative_to(run_dir).as_posix()
        if rel in NOT_RECORDED or _is_transient(rel):
            continue
        recorded = read_record(run_dir)
        recorded[rel] = {**_entry(tmp), "pending": True}
        _write_record(run_dir, recorded)


files.rename_hooks.append(_record_before_rename)


def held_folders() -> list[Path]:
    """The run folders whose lock this process holds, outermost first."""
    return list(_held)


@contextlib.contextmanager
def writer_lock(run_dir: str | os.PathLike[str], step: str) -> Iterator[bool]:
    """Hold the run folder's lock; yields True for the outermost holder in this process.

    Raises RunFolderBusyError at once when another process holds it.
    """
    run_dir = files.make_folder(run_dir).resolve()
    if run_dir in _held:  # a step inside a step (analyze runs intake): already ours
        _held[run_dir][1] += 1
        try:
            yield False
        finally:
            _held[run_dir][1] -= 1
        return
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise (files.output_error(run_dir / LOCK_FILE, exc) or exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunFolderBusyError(
            f"{run_dir}: another likeness process is writing into this run folder ({step} "
            "refused, nothing was changed); wait for it to finish, or use another --out folder"
        ) from None
    _held[run_dir] = [fd, 1]
    try:
        yield True
    finally:
        del _held[run_dir]
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def step(run_dir: str | os.PathLike[str], name: str) -> Iterator[Path]:
    """A step writing into ``run_dir``: lock, check the record, then record what it wrote."""
    with writer_lock(run_dir, name) as outermost:
        run_dir = Path(run_dir).resolve()
        if not outermost:
            yield run_dir
            return
        _discard_unrecorded(run_dir, check_recorded(run_dir))
        try:
            yield run_dir
        except BaseException:
            # Keep the record of what was finished; the step's own error is the one that counts.
            with contextlib.suppress(Exception):
                record_files(run_dir)
            raise
        record_files(run_dir)


def guarded_step(name: str) -> Callable[[F], F]:
    """Decorate ``func(case, run_dir, ...)`` to run as a step (see :func:`step`)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(case: Any, run_dir: Any, *args: Any, **kwargs: Any) -> Any:
            with step(run_dir, name):
                return func(case, run_dir, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
