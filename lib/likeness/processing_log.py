"""The processing log: an audit trail of every command run on a run folder.

``<run folder>/processing_log.jsonl`` holds one JSON object a line, appended (never rewritten)
as the work goes on: a ``start`` line when a step begins (time, step, the command line, the
declared parameters) and an ``end`` line when it ends (time, status, seconds, and the SHA-256 of
each result file it produced). A step killed half way leaves its ``start`` line without an
``end``: the log shows it. Each line is written by one ``write`` on a file opened for appending
and flushed to disk, so a crash leaves every earlier line whole.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.files import sha256_file

LOG_FILE = "processing_log.jsonl"
# The result files of a run folder whose hashes an ``end`` line records by default.
RESULT_PATTERNS = ("*.json", "*.csv", "*.parquet", "faces/*.parquet", "timeline/*.csv")


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def command_line() -> str:
    """The command that runs, as typed: ``likeness ...`` for the command line tool (also when
    started as ``python -m likeness.cli``), else the program and its arguments."""
    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0]).name
    if program in ("likeness", "cli.py"):
        program = "likeness"
    return " ".join([program, *sys.argv[1:]])


def append_entry(run_dir: str | os.PathLike[str], entry: Mapping[str, Any]) -> None:
    """Append one line to the run folder's processing log (created when absent)."""
    path = Path(run_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(entry), sort_keys=True, ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def log_start(
    run_dir: str | os.PathLike[str], step: str, parameters: Mapping[str, Any] | None = None
) -> float:
    """Record that ``step`` starts; returns the monotonic clock to pass to :func:`log_end`."""
    append_entry(run_dir, {
        "time_utc": _utc_now(),
        "event": "start",
        "step": step,
        "command": command_line(),
        "pid": os.getpid(),
        "parameters": dict(parameters or {}),
    })
    return time.monotonic()


def log_end(
    run_dir: str | os.PathLike[str],
    step: str,
    started: float,
    *,
    status: str = "ok",
    results: Iterable[str | os.PathLike[str]] | None = None,
    message: str = "",
) -> None:
    """Record that ``step`` ended, with the SHA-256 of each result file that exists
    (``results``; default: the run folder's files matching ``RESULT_PATTERNS``)."""
    root = Path(run_dir)
    if results is None:
        results = sorted({p for pattern in RESULT_PATTERNS for p in root.glob(pattern)})
    hashes = {}
    for item in results:
        path = Path(item)
        path = path if path.is_absolute() else root / path
        if path.is_file():
            hashes[_relative(path, root)] = sha256_file(path)
    entry = {
        "time_utc": _utc_now(),
        "event": "end",
        "step": step,
        "status": status,
        "seconds": round(time.monotonic() - started, 3),
        "result_sha256": dict(sorted(hashes.items())),
    }
    if message:
        entry["message"] = message
    append_entry(run_dir, entry)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_log(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The processing log as a table (one row per line; empty when there is no log)."""
    path = Path(run_dir) / LOG_FILE
    columns = ["time_utc", "event", "step", "status", "seconds", "command", "parameters",
               "result_sha256", "message"]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows).reindex(columns=columns)
