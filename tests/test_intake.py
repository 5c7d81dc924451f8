"""Chain of custody: intake hashes and probes the evidence; changed evidence is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from casedata import ELON_REFERENCE, SWAP, write_case
from likeness.case import load_case
from likeness.errors import EvidenceError
from likeness.intake import check_evidence, ensure_intake, intake_case


@pytest.fixture()
def copied_case(tmp_path):
    """A case whose evidence is a private copy, so the test may tamper with it."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    clip = shutil.copy(SWAP / "derived/elon.mp4", evidence / "ep01.mp4")
    ref = shutil.copy(ELON_REFERENCE, evidence / "elon.jpg")
    case_file = write_case(tmp_path / "case", case_id="custody", claimant="Elon Musk",
                           references=[ref], episodes={"ep01": clip})
    return load_case(case_file), tmp_path / "run"


def test_intake_hashes_and_probes_every_evidence_file(copied_case):
    case, run_dir = copied_case
    record = intake_case(case, run_dir)
    on_disk = json.loads((run_dir / "intake.json").read_text())
    assert on_disk["case_file"]["sha256"] == record["case_file"]["sha256"]
    by_role = {e["role"]: e for e in on_disk["evidence"]}
    for entry in on_disk["evidence"]:
        data = Path(entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size_bytes"] == len(data)
    probe = by_role["footage"]["probe"]
    assert (probe["codec"], probe["width"], probe["height"]) == ("h264", 464, 560)
    assert probe["rotation"] == 0 and probe["frame_count"] == 66
    assert by_role["reference"]["image"]["format"] == "JPEG"


def test_changed_evidence_is_refused(copied_case):
    case, run_dir = copied_case
    ensure_intake(case, run_dir)
    check_evidence(case, run_dir)  # unchanged: passes
    clip = case.episodes[0].path
    with open(clip, "r+b") as f:  # one byte changed, as a re-encode or an edit would
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EvidenceError) as err:
        ensure_intake(case, run_dir)
    assert str(clip) in str(err.value) and "changed since intake" in str(err.value)


def test_evidence_added_after_intake_is_refused(copied_case, tmp_path):
    case, run_dir = copied_case
    intake_case(case, run_dir)
    extra = shutil.copy(SWAP / "derived/orig.mp4", tmp_path / "evidence/ep02.mp4")
    bigger = load_case(write_case(
        tmp_path / "case", case_id="custody", claimant="Elon Musk",
        references=list(case.reference_paths), episodes={"ep01": case.episodes[0].path,
                                                         "ep02": extra},
    ))
    with pytest.raises(EvidenceError, match="was not taken in"):
        check_evidence(bigger, run_dir)
