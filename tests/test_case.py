"""The case file: the schema's names, path rules and errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from casedata import ELON_REFERENCE, LFW, SWAP, write_case
from likeness import case as case_module
from likeness.case import load_case, override_analysis, population_exclude, population_photos
from likeness.errors import CaseError


@pytest.fixture()
def case_file(tmp_path: Path) -> Path:
    return write_case(
        tmp_path, case_id="demo-swap", claimant="Elon Musk", references=[ELON_REFERENCE.parent],
        episodes={"ep01": SWAP / "derived/orig.mp4", "ep02": SWAP / "derived/elon.mp4"},
        exclude=["Elon_Musk"],
    )


def _edit(case_file: Path, change) -> Path:
    data = yaml.safe_load(case_file.read_text())
    change(data)
    case_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return case_file


def test_load_case_expands_variables_and_folders(case_file):
    case = load_case(case_file)
    assert case.case_id == "demo-swap"
    assert [e.id for e in case.episodes] == ["ep01", "ep02"]
    assert case.population_root == LFW.resolve()
    # A folder of references expands to its photos, sorted.
    names = [p.name for p in case.reference_paths]
    assert "elon_musk.jpg" in names and names == sorted(names)
    assert case.analysis.sample_fps == 5.0
    assert case.analysis.model == "facenet-casia-webface"


def test_relative_paths_are_relative_to_the_case_file(tmp_path):
    clip = tmp_path / "footage" / "ep01.mp4"
    clip.parent.mkdir()
    clip.write_bytes((SWAP / "derived/orig.mp4").read_bytes())
    (tmp_path / "case.yaml").write_text(
        "case_id: rel\nclaimant: {name: X, references: [" + str(ELON_REFERENCE) + "]}\n"
        "footage:\n  - id: ep01\n    path: footage/ep01.mp4\n"
    )
    case = load_case(tmp_path)  # the folder is accepted too
    assert case.episodes[0].path == clip.resolve()


def test_testdata_defaults_to_shared_beside_the_project(monkeypatch):
    monkeypatch.delenv("LIKENESS_TESTDATA", raising=False)
    beside = Path(__file__).resolve().parents[2] / "shared/testdata"
    assert case_module.testdata_root() == beside.resolve()


BAD_CASES = [
    (lambda d: d.pop("footage"), "required field 'footage' is missing"),
    (
        lambda d: d.update(fotage=d.pop("footage")),
        "unknown field 'fotage' (did you mean 'footage'?)",
    ),
    (lambda d: d["claimant"].pop("references"), "claimant: required field 'references'"),
    (lambda d: d.update(case_id="demo swap!"), "may hold only letters, digits, - and _"),
    (
        lambda d: d["footage"][1].update(id="ep01"),
        "footage[1].id: episode id 'ep01' is used twice",
    ),
    (lambda d: d["footage"][0].update(path="missing.mp4"), "footage[0].path:"),
    (lambda d: d["analysis"].update(sample_fps=-2), "analysis.sample_fps: expected a positive"),
    (
        lambda d: d["analysis"].update(sample_fsp=5),
        "unknown field 'sample_fsp' (did you mean 'sample_fps'?)",
    ),
    (
        lambda d: d["analysis"].update(model="vgg-face"),
        "analysis.model: unknown model 'vgg-face'",
    ),
    (
        lambda d: d["population"].update(path="${NO_SUCH_VARIABLE_X}/lfw"),
        "NO_SUCH_VARIABLE_X} is not set",
    ),
    (
        lambda d: d["population"].update(exclude="Elon_Musk"),
        "population.exclude: expected a list",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_CASES)
def test_bad_case_files_name_file_field_and_problem(case_file, change, message):
    _edit(case_file, change)
    with pytest.raises(CaseError) as err:
        load_case(case_file)
    assert str(case_file) in str(err.value)
    assert message in str(err.value)


def test_missing_and_malformed_case_files(tmp_path):
    with pytest.raises(CaseError, match="case file not found"):
        load_case(tmp_path / "nope.yaml")
    bad = tmp_path / "case.yaml"
    bad.write_text("case_id: [unclosed\n")
    with pytest.raises(CaseError, match="not valid YAML"):
        load_case(bad)


def test_population_exclude_is_honoured(case_file):
    case = load_case(case_file)
    listing = population_photos(LFW, population_exclude(case))
    identities = set(listing["identity"])
    assert "Elon_Musk" not in identities
    # Not listed in the case's exclude, but excluded anyway: the claimant's own name.
    case2 = load_case(_edit(case_file, lambda d: d["claimant"].update(name="George W Bush")))
    assert "George_W_Bush" in population_exclude(case2)
    assert "George_W_Bush" not in set(population_photos(LFW, population_exclude(case2))["identity"])
    assert "George_W_Bush" in set(population_photos(LFW, ())["identity"])


def test_population_listing_is_capped_and_sorted():
    listing = population_photos(LFW, (), max_per_identity=3)
    counts = listing.groupby("identity").size()
    assert counts.max() == 3 and len(counts) > 100
    assert listing.equals(population_photos(LFW, (), max_per_identity=3))


def test_overrides_are_checked_like_case_yaml(case_file):
    case = load_case(case_file)
    changed = override_analysis(case, {"sample_fps": 2, "seed": 7})
    assert (changed.analysis.sample_fps, changed.analysis.seed) == (2.0, 7)
    assert changed.analysis.model == case.analysis.model and case.analysis.seed != 7
    with pytest.raises(CaseError, match=r"unknown field 'sample_fsp' \(did you mean"):
        override_analysis(case, {"sample_fsp": 2})
    with pytest.raises(CaseError, match=r"overrides\.sample_fps: expected a positive"):
        override_analysis(case, {"sample_fps": 0})
