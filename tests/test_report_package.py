"""The report package stays readable: no module over 500 lines, every name the notebooks and
the command line use importable from likeness.report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import likeness.report as report
from casedata import ELON_REFERENCE, SWAP_EPISODES, write_case
from likeness import face_crop
from likeness.case import load_case, override_analysis
from likeness.report.prose import FACE_SIZE_EVIDENCE

PACKAGE = Path(report.__file__).parent
NOTEBOOKS = PACKAGE.parents[2] / "notebooks"


def test_no_module_of_the_report_package_is_over_500_lines():
    sizes = {p.name: len(p.read_text("utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert len(sizes) >= 8
    assert max(sizes.values()) <= 500, sizes


def test_every_name_the_notebooks_call_is_exported():
    called = set()
    for path in NOTEBOOKS.glob("*.ipynb"):
        for cell in json.loads(path.read_text("utf-8"))["cells"]:
            called |= set(re.findall(r"\breport\.(\w+)", "".join(cell["source"])))
    assert called, "no notebook calls likeness.report"
    missing = sorted(name for name in called if not hasattr(report, name))
    assert not missing
    for name in ("build_report", "verify_run", "sha256_file", "NOTEBOOKS", "KERNEL_NAME"):
        assert name in report.__all__


def test_the_report_says_which_faces_the_analysis_cannot_see(tmp_path):
    """The sentence carries the case's min_face_size and the LFW figures measured at that size
    by benchmarks/face_size.py (the committed summary); a size between the measured ones is
    quoted with the nearest measured size, named."""
    measured = json.loads(FACE_SIZE_EVIDENCE.read_text("utf-8"))
    assert {"20", "30", "40", "60", "80"} <= set(measured["sizes"])
    case = load_case(write_case(tmp_path, case_id="scale", claimant="Elon Musk",
                                references=[ELON_REFERENCE],
                                episodes={"elon": SWAP_EPISODES["elon"]},
                                analysis={"min_face_size": 30}))
    text = report.detection_scale_markdown(case)
    at30 = measured["sizes"]["30"]
    assert text.startswith("Faces smaller than 30 px")
    assert ("At 30 px, a genuine face gives on LFW a median log10 LR of "
            f"{at30['full_calibration_genuine_median_log10_lr']:+.2f} (10th percentile "
            f"{at30['full_calibration_genuine_p10_log10_lr']:+.2f}) with the calibrator fitted "
            "on full-size photos") in text
    assert (f"and {at30['genuine_median_log10_lr']:+.2f} (10th percentile "
            f"{at30['genuine_p10_log10_lr']:+.2f}) with one fitted on faces of that size") in text
    # The study was run with the analysis's crop (rerun benchmarks/face_size.py when it changes).
    assert measured["crop_margin"] == face_crop.CROP_MARGIN
    assert f"(benchmarks/face_size.py, model {measured['model']})." in text
    other = override_analysis(case, {"model": "dlib-resnet-v1"})
    assert "not this analysis's model dlib-resnet-v1" in report.detection_scale_markdown(other)
    between = report.detection_scale_markdown(override_analysis(case, {"min_face_size": 37}))
    assert between.startswith("Faces smaller than 37 px")
    assert "At 40 px (the measured size nearest 37 px)" in between
    notebook = json.loads((NOTEBOOKS / "expert_report.ipynb").read_text("utf-8"))
    sources = ["".join(c["source"]) for c in notebook["cells"]]
    assert any("report.detection_scale_markdown(case)" in s for s in sources)
