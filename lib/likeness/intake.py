"""Intake and chain of custody: hash every evidence file once, check the hashes before each step.

``intake.json`` in the run folder records, for the case file, each episode and each reference
photo: its path, size and SHA-256, and for videos what :func:`likeness.probing.probe_video`
reads (container, codec, size, rotation, frame rate, duration, frame count). Later steps call
:func:`check_evidence`, which refuses to go on when any evidence file changed. Evidence files
are only ever opened for reading.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from PIL import Image

from likeness import probing, runfolder
from likeness.case import Case
from likeness.errors import EvidenceChangedError, EvidenceError, FootageError, record_warning
from likeness.files import sha256_file, write_json_atomic

INTAKE_FILE = "intake.json"


def _image_info(path: Path) -> dict[str, Any]:
    try:
        with Image.open(path) as img:
            return {
                "format": img.format,
                "mode": img.mode,
                "width": img.width,
                "height": img.height,
            }
    except Exception as exc:  # the photo step records unreadable photos as warnings
        return {"error": f"not a readable image: {exc}"}


def _hash_evidence(path: Path, role: str) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise EvidenceError(f"{path}: {role} file cannot be read ({exc.strerror})") from exc


@runfolder.guarded_step("intake")
def intake_case(case: Case, run_dir: Path) -> dict[str, Any]:
    """Hash and probe every evidence file of ``case`` into ``run_dir/intake.json``."""
    evidence = []
    for role, item_id, path in case.evidence_paths():
        entry: dict[str, Any] = {
            "role": role,
            "id": item_id,
            "path": str(path),
            "size_bytes": path.stat().st_size if path.exists() else None,
            "sha256": _hash_evidence(path, role),
        }
        if role == "footage":
            try:
                entry["probe"] = probing.probe_video(path)
                for note in probing.probe_notes(entry["probe"]):
                    record_warning(run_dir, f"footage {item_id}", note)
            except FootageError as exc:
                # The episode's own step fails with this message; intake still records the hash.
                entry["probe_error"] = str(exc)
        else:
            entry["image"] = _image_info(path)
        evidence.append(entry)
    record = {
        "case_id": case.case_id,
        "case_file": {"path": str(case.case_file), "sha256": sha256_file(case.case_file)},
        "evidence": evidence,
        "intake_time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(Path(run_dir) / INTAKE_FILE, record)
    return record


def load_intake(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / INTAKE_FILE
    if not path.exists():
        raise EvidenceError(f"{path}: no intake record; run 'likeness intake' first")
    try:
        record = json.loads(path.read_text("utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("evidence"), list):
            raise ValueError("no 'evidence' list")
        return record
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceError(
            f"{path}: intake record is unreadable ({exc}); take the case in again into a new "
            "--out folder"
        ) from exc


def check_evidence(case: Case, run_dir: Path) -> dict[str, Any]:
    """Re-hash the evidence against intake.json; raise EvidenceError listing what changed.

    The case's evidence must also be the one taken in: a file added to or removed from the
    case since intake is a change too.
    """
    record = load_intake(run_dir)
    recorded = {(e["role"], e["path"]): e["sha256"] for e in record["evidence"]}
    current = {(role, str(path)): path for role, _, path in case.evidence_paths()}
    problems = []
    for key in sorted(set(recorded) - set(current)):
        problems.append(f"{key[1]}: {key[0]} in intake.json is no longer part of the case")
    for key in sorted(set(current) - set(recorded)):
        problems.append(f"{key[1]}: {key[0]} was not taken in; run 'likeness intake' again")
    for key in sorted(set(recorded) & set(current)):
        got = _hash_evidence(current[key], key[0])
        if got != recorded[key]:
            problems.append(
                f"{key[1]}: {key[0]} changed since intake (SHA-256 {recorded[key][:16]}... "
                f"at intake, {got[:16]}... now)"
            )
    if problems:
        raise EvidenceChangedError(
            "evidence does not match intake.json, refusing to go on:\n  " + "\n  ".join(problems)
        )
    return record


def ensure_intake(case: Case, run_dir: Path) -> dict[str, Any]:
    """Take the case in on the first run; on later runs check the evidence is unchanged."""
    if (Path(run_dir) / INTAKE_FILE).exists():
        return check_evidence(case, run_dir)
    return intake_case(case, run_dir)
