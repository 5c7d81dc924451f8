"""The development series' survey, shared by the survey tests: analysed and designed once per
test module (the faces tables come from the user cache after the first run)."""

from __future__ import annotations

from pathlib import Path

from casedata import TESTDATA

DEV_CASE = TESTDATA / "deepfacelive/series_keanu_dev/case.yaml"
# Accepted spellings of the claimant in three scripts (the survey option ``names``).
DEV_NAMES = ["Киану Ривз", "基努·里维斯"]


def design_dev_survey(folder: Path) -> tuple[Path, dict]:
    from likeness.analysis import analyze_case
    from likeness.case import load_case
    from likeness.survey.design import design_survey, load_options

    run_dir = folder / "run"
    analyze_case(load_case(DEV_CASE), run_dir, progress=False)
    survey_dir = folder / "survey"
    design = design_survey(DEV_CASE, run_dir, survey_dir, load_options(names=DEV_NAMES))
    return survey_dir, design
