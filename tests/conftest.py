"""Shared fixtures: the real test data and real analysed cases, computed once per session.

The test data lives beside the project (../shared/testdata, or $LIKENESS_TESTDATA); tests
never copy it into the project. The user's cache (model weights, photo embeddings, faces
tables) is shared with normal use, so a second test session reuses what the first computed;
set LIKENESS_CACHE to a fresh folder to test from nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from casedata import ELON_REFERENCE, MARK_REFERENCE, SWAP_EPISODES, TESTDATA, write_case
from likeness.case import load_case


def pytest_report_header(config) -> str:
    return f"likeness test data: {TESTDATA}"


def pytest_sessionstart(session) -> None:
    if not (TESTDATA / "README.md").exists():
        raise pytest.UsageError(
            f"test data not found at {TESTDATA}: put ../shared/testdata beside the project "
            "or set LIKENESS_TESTDATA"
        )


@pytest.fixture(scope="session")
def testdata() -> Path:
    return TESTDATA


@pytest.fixture(scope="session")
def elon_case_run(tmp_path_factory):
    """The face-swap series with Elon Musk as claimant, analysed once: (case, run_dir)."""
    from likeness.analysis import analyze_case

    folder = tmp_path_factory.mktemp("elon-case")
    case = load_case(
        write_case(
            folder, case_id="swap-elon", claimant="Elon Musk", references=[ELON_REFERENCE],
            episodes=SWAP_EPISODES, exclude=["Elon_Musk"],
        )
    )
    run_dir = folder / "run"
    analyze_case(case, run_dir, progress=False)
    return case, run_dir


@pytest.fixture(scope="session")
def mark_case_run(tmp_path_factory, elon_case_run):
    """The same series with Mark Zuckerberg as claimant (reuses the cached faces tables)."""
    from likeness.analysis import analyze_case

    folder = tmp_path_factory.mktemp("mark-case")
    case = load_case(
        write_case(
            folder, case_id="swap-mark", claimant="Mark Zuckerberg",
            references=[MARK_REFERENCE], episodes=SWAP_EPISODES, exclude=["Mark_Zuckerberg"],
        )
    )
    run_dir = folder / "run"
    analyze_case(case, run_dir, progress=False)
    return case, run_dir


@pytest.fixture(scope="session")
def dev_case_run(tmp_path_factory):
    """The development series of live face-swaps (claimant Keanu Reeves), analysed once:
    (case, run_dir, truth) with truth the episodes that carry the claimant's swap."""
    import pandas as pd

    from likeness.analysis import analyze_case

    series = TESTDATA / "deepfacelive/series_keanu_dev"
    case = load_case(series / "case.yaml")
    run_dir = tmp_path_factory.mktemp("dev-series") / "run"
    analyze_case(case, run_dir, progress=False)
    truth = pd.read_csv(series / "truth.tsv", sep="\t")
    swaps = set(truth.loc[truth["claimant_swap"] == "yes", "episode"])
    return case, run_dir, swaps
