"""`likeness population describe`: identities, photos, sizes and population.csv attributes, on
the real LFW folder of the test data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from casedata import LFW
from likeness import cli
from likeness.errors import PopulationError
from likeness.population import describe_population, matching_identities

IDENTITIES = sorted(p.name for p in LFW.iterdir() if p.is_dir())


def _small_population(tmp_path: Path, n: int = 6) -> Path:
    """A copy of the first ``n`` LFW identities (at most 3 photos each): population.csv must
    sit in the population folder, and the test data is read-only."""
    root = tmp_path / "population"
    for name in IDENTITIES[:n]:
        (root / name).mkdir(parents=True)
        for photo in sorted((LFW / name).iterdir())[:3]:
            shutil.copy(photo, root / name / photo.name)
    return root


def test_describe_the_lfw_folder_without_population_csv(capsys):
    tables = describe_population(LFW)
    summary = tables["summary"].set_index("quantity")["value"]
    photos = sum(len(list((LFW / n).iterdir())) for n in IDENTITIES)
    assert summary["identities"] == str(len(IDENTITIES))
    assert summary["photos"] == str(photos)
    assert summary["photo size (pixels), median width x height"] == "250 x 250"
    assert summary["population.csv"].startswith("absent")
    assert tables["attributes"].empty
    assert tables["identities"]["photos"].sum() == photos
    assert cli.main(["population", "describe", str(LFW)]) == 0
    out = capsys.readouterr().out
    assert f"{len(IDENTITIES)}" in out and f"{photos}" in out


def test_describe_with_population_csv_counts_attributes(tmp_path, capsys):
    root = _small_population(tmp_path)
    rows = [(name, "female" if i < 2 else "male", "East Asian" if i == 0 else "White")
            for i, name in enumerate(IDENTITIES[:5])]  # the sixth identity is not described
    pd.DataFrame(rows, columns=["identity", "sex", "ethnicity"]).to_csv(
        root / "population.csv", index=False)
    tables = describe_population(root)
    attrs = tables["attributes"].set_index(["attribute", "value"])["identities"]
    assert attrs[("sex", "female")] == 2 and attrs[("sex", "male")] == 3
    assert attrs[("ethnicity", "East Asian")] == 1 and attrs[("ethnicity", "White")] == 4
    assert tables["summary"].set_index("quantity")["value"][
        "identities described in population.csv"] == "5"
    identities = tables["identities"]
    assert matching_identities(identities, {"sex": "Female", "ethnicity": "east asian"}) == 1
    assert matching_identities(identities, {"sex": "female"}) == 2
    assert matching_identities(identities, {"occupation": "actor"}) is None
    assert matching_identities(identities, {}) is None
    assert cli.main(["population", "describe", str(root)]) == 0
    assert "East Asian" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [("name,sex\nA,male\n", "no 'identity' column"),
     ("identity,height\nA,1\n", "unknown column 'height'"),
     ("identity,sex\nA,male\nA,female\n", "identity 'A' is described twice")],
)
def test_bad_population_csv_names_the_file(tmp_path, text, message, capsys):
    root = _small_population(tmp_path, n=1)
    (root / "population.csv").write_text(text)
    with pytest.raises(PopulationError) as info:
        describe_population(root)
    assert message in str(info.value) and "population.csv" in str(info.value)
    assert cli.main(["population", "describe", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
