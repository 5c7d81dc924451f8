"""The report package stays readable: no module over 500 lines, every name the notebooks and
the command line use importable from likeness.report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import likeness.report as report

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
