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
    """Base class of every error likeness raises on purpose.

    ``exit_code`` is the status the ``likeness`` command exits with for this class of error
    (documented in :data:`EXIT_CODES` and the command's ``--help``).
    """

    exit_code = 2


class CaseError(LikenessError):
    """A case.yaml that is missing, malformed or names things that do not exist."""


class EvidenceError(LikenessError):
    """Evidence that is unreadable or changed since intake (chain of custody broken)."""


class EvidenceChangedError(EvidenceError):
    """Evidence whose SHA-256 differs from the one taken in at intake."""

    exit_code = 5


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


class RunFolderBusyError(LikenessError):
    """Another process is writing into the same run folder."""

    exit_code = 4


class RunFolderIntegrityError(LikenessError):
    """A result recorded in a run folder was changed, truncated or removed since it was written."""

    exit_code = 5


class OutputError(LikenessError):
    """An output cannot be written: disk full, read-only folder, no permission, name too long."""

    exit_code = 6


class ResourceError(LikenessError):
    """The machine lacks what the analysis needs (memory, a GPU that was asked for)."""

    exit_code = 7


class LikenessWarning(UserWarning):
    """Something the user must know that did not stop the work (the message names the file);
    the command line shows it as one line, ``likeness: warning: ...``."""


# Exit statuses of the ``likeness`` command, one per class of outcome.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "verify found a change (the report folder does not match its manifest)",
    2: "bad input: case.yaml, footage, photo, model weights or report failure (the message "
    "names the file and the field)",
    3: "the analysis finished but at least one episode failed (see episode_status.json)",
    4: "the run folder is in use by another likeness process; wait for it or use another --out",
    5: "integrity: evidence or a recorded intermediate result changed since it was written",
    6: "an output cannot be written (disk full, read-only or missing folder, no permission)",
    7: "not enough resources (memory, a requested GPU)",
    70: "internal error (a bug): the message gives the log file holding the traceback",
    130: "interrupted (Ctrl-C); what was finished is kept, run the command again to resume",
    141: "the program reading the output stopped reading (a closed pipe, as `| head` does); "
    "what was finished is kept",
}


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
