"""Exceptions and recorded warnings.

Every error names the file it is about and says what is wrong; problems that must not stop a
run (a reference photo without a face, an identity without a usable photo) are recorded as
warnings in the run folder instead, so that the report can state them.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path


class LikenessError(Exception):
    """Base class of every error likeness raises on purpose."""


class CaseError(LikenessError):
    """A case.yaml that is missing, malformed or names things that do not exist."""


class EvidenceError(LikenessError):
    """Evidence that is unreadable or changed since intake (chain of custody broken)."""


class FootageError(LikenessError):
    """A video that cannot be decoded as footage."""


class ImageError(LikenessError):
    """A still photo that cannot be read."""


class ModelWeightsError(LikenessError):
    """Model weights that are missing or whose SHA-256 differs from the pinned one."""


class PopulationError(LikenessError):
    """A population folder, or its population.csv, that cannot be described."""


class ReportError(LikenessError):
    """A report run that failed (a notebook cell raised, a renderer failed)."""


WARNINGS_FILE = "warnings.csv"
WARNING_COLUMNS = ("time_utc", "source", "message")


def record_warning(run_dir: Path, source: str, message: str) -> None:
    """Append a warning to ``run_dir/warnings.csv`` (created with a header on first use).

    Warnings are appended, never rewritten, so a crashed run keeps those it had recorded.
    """
    path = Path(run_dir) / WARNINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if is_new:
            writer.writerow(WARNING_COLUMNS)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        writer.writerow((now, str(source), str(message)))
