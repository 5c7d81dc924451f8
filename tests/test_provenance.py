"""Provenance in case.yaml: every field read, shown, and said to be absent when it is."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from casedata import ELON_REFERENCE, SWAP, write_case
from likeness import report
from likeness.case import load_case
from likeness.errors import CaseError
from likeness.provenance import NOT_RECORDED

EPISODES = {"ep01": SWAP / "derived/orig.mp4", "ep02": SWAP / "derived/elon.mp4"}
SOURCE1 = SWAP / "examples/images/training/source1.png"


def _case(tmp_path: Path, **extra) -> Path:
    path = write_case(tmp_path, case_id="prov", claimant="Elon Musk",
                      references=[ELON_REFERENCE, SOURCE1], episodes=EPISODES,
                      exclude=["Elon_Musk"])
    data = yaml.safe_load(path.read_text())
    for key, value in extra.items():
        if key == "references":
            data["claimant"]["references"] = value
        elif key == "footage_extra":
            for item, more in zip(data["footage"], value, strict=True):
                item.update(more)
        elif key in ("attributes",):
            data["claimant"][key] = value
        elif key in ("relevance", "min_matching_identities"):
            data["population"][key] = value
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FULL = {
    "examiner": {"name": "Dr Ada Example", "qualifications": "PhD, facial image comparison"},
    "declaration": "I confirm that this report is my own work.\nI understand my duty.",
    "instructed_by": "Example & Partners LLP",
    "questions": ["Is the claimant recognizable in ep02?", "For how long?"],
    "references": [
        {"path": str(ELON_REFERENCE), "source": "https://example.org/elon.jpg",
         "obtained": "2026-03-01", "notes": "press photo"},
        str(SOURCE1),
    ],
    "footage_extra": [{"source": "broadcaster download", "obtained": "2026-03-02",
                       "notes": "screen capture"}, {}],
    "attributes": {"sex": "male"},
    "relevance": "Public figures photographed by the press, as the claimant is.",
}


def test_every_provenance_field_is_read_and_shown(tmp_path):
    case = load_case(_case(tmp_path, **FULL))
    p = case.provenance
    assert p.examiner.name == "Dr Ada Example" and p.instructed_by == "Example & Partners LLP"
    assert p.questions == ("Is the claimant recognizable in ep02?", "For how long?")
    # A mapping entry and a plain entry give the same photos as before, in order.
    assert [x.name for x in case.reference_paths] == ["elon_musk.jpg", "source1.png"]
    assert p.reference(case.reference_paths[0]).obtained == "2026-03-01"
    assert p.reference(case.reference_paths[1]).source is None
    assert p.episode("ep01").source == "broadcaster download"

    examiner = report.examiner_table(case).set_index("item")["value"]
    assert examiner["examiner"] == "Dr Ada Example"
    assert examiner["qualifications"] == "PhD, facial image comparison"
    refs = report.references_provenance_table(case)
    assert refs.iloc[0].tolist() == ["elon_musk.jpg", "https://example.org/elon.jpg",
                                     "2026-03-01", "press photo"]
    assert refs.iloc[1, 1:].tolist() == [NOT_RECORDED] * 3
    footage = report.footage_provenance_table(case)
    assert footage.iloc[0, 2:].tolist() == ["broadcaster download", "2026-03-02",
                                            "screen capture"]
    questions = report.questions_markdown(case)
    assert "> 1. Is the claimant recognizable in ep02?" in questions
    declaration = report.declaration_markdown(case)
    assert "> I confirm that this report is my own work." in declaration
    assert "Dr Ada Example" in declaration and "Peer review" in declaration
    assert "Public figures photographed" in report.population_relevance_markdown(case)


def test_a_case_without_provenance_says_not_recorded_for_each(tmp_path):
    case = load_case(_case(tmp_path))
    assert set(report.examiner_table(case)["value"]) == {NOT_RECORDED}
    for table in (report.references_provenance_table(case),
                  report.footage_provenance_table(case)):
        assert set(table[["source", "obtained", "notes"]].to_numpy().ravel()) == {NOT_RECORDED}
    assert NOT_RECORDED in report.questions_markdown(case)
    assert NOT_RECORDED in report.declaration_markdown(case)
    assert NOT_RECORDED in report.population_relevance_markdown(case)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"references": [{"path": str(ELON_REFERENCE), "obtained": "last spring"}]},
         "claimant.references[0].obtained: 'last spring' is not a date"),
        ({"references": [{"source": "x"}]}, "claimant.references[0]: required field 'path'"),
        ({"references": [{"path": str(ELON_REFERENCE), "url": "x"}]},
         "claimant.references[0]: unknown field 'url'"),
        ({"examiner": {"name": "A", "phone": "1"}}, "examiner: unknown field 'phone'"),
        ({"attributes": {"height": "tall"}}, "claimant.attributes: unknown attribute 'height'"),
        ({"footage_extra": [{"obtained": "2026-13-01"}, {}]}, "footage[0].obtained"),
        ({"min_matching_identities": -1}, "population.min_matching_identities"),
    ],
)
def test_bad_provenance_names_file_and_field(tmp_path, extra, message):
    path = _case(tmp_path, **extra)
    with pytest.raises(CaseError) as info:
        load_case(path)
    assert message in str(info.value) and str(path) in str(info.value)
