"""Reports: every notebook through papermill on a small real case, HTML and PDF, the manifest,
verify, a failing cell, and the byte-identical re-run.

The small case is two 2.6 s sber-swap clips (the original and its Elon Musk swap) with six LFW
photos per population identity. Two reports are built once per module (each with its own full
analysis): the second exists to prove that a re-run gives identical tables and figures.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from casedata import ELON_REFERENCE, SWAP, write_case
from likeness import report
from likeness.case import load_case, override_analysis
from likeness.errors import ReportError

SMALL_EPISODES = {"orig": SWAP / "derived/orig.mp4", "elon": SWAP / "derived/elon.mp4"}
REFERENCES = [ELON_REFERENCE, SWAP / "examples/images/training/source1.png"]
# Six photos per identity keep the population (and the first embedding of it) small; fewer
# bootstrap replicates keep the analysis fast. Neither changes what is tested.
ANALYSIS = {"max_photos_per_identity": 6, "bootstrap_samples": 200}
RESULT_TABLES = ["episodes.csv", "tracks.csv", "timeline/orig.csv", "timeline/elon.csv",
                 "calibration.json"]


@pytest.fixture(scope="module")
def small_case(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report-case")
    return write_case(
        folder, case_id="report-small", claimant="Elon Musk", references=REFERENCES,
        episodes=SMALL_EPISODES, exclude=["Elon_Musk"], analysis=ANALYSIS,
    )


@pytest.fixture(scope="module")
def reports(small_case, tmp_path_factory) -> tuple[Path, Path]:
    """Two complete reports of the same case and parameters, each with its own analysis."""
    out = tmp_path_factory.mktemp("reports")
    first = report.build_report(small_case, out, run_id="first", progress=False)
    second = report.build_report(small_case, out, run_id="second", progress=False)
    return first, second


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text("utf-8"))


def test_report_folder_holds_every_deliverable(reports):
    folder = reports[0]
    assert folder.name == "first" and folder.parent.name == "report-small"
    for name in ["report.html", "report.pdf", "manifest.json", "inputs.json",
                 *(f"tables/{t}" for t in RESULT_TABLES)]:
        assert (folder / name).is_file(), name
    for name in report.NOTEBOOKS:
        assert (folder / "notebooks" / f"{name}.ipynb").is_file(), name
    figures = {p.name for p in (folder / "figures").iterdir()}
    for stem in ["episodes", "tippett", "ece", "score_distributions", "contact_sheet",
                 "timeline_orig", "timeline_elon", "stills_orig", "stills_elon"]:
        assert {f"{stem}.png", f"{stem}.svg"} <= figures, stem
    assert not (folder / "RUNNING").exists() and not (folder / "FAILED").exists()
    assert manifest(folder)["status"] == "complete"


def test_pdf_has_pages_a_reader_can_see(reports, tmp_path):
    pdf = reports[0] / "report.pdf"
    assert report.pdf_page_count(pdf) >= 5
    pages = report.render_pdf_pages(pdf, tmp_path, scale=0.5)
    from PIL import Image

    with Image.open(pages[0]) as first:
        grey = first.convert("L")
        # Text on the first page: a good share of the page is not white.
        assert sum(grey.histogram()[:128]) > 0.005 * grey.width * grey.height


def test_html_is_the_expert_report_with_code_hidden(reports):
    text = (reports[0] / "report.html").read_text("utf-8")
    assert "report.show_table" not in text and "open_run(" not in text  # no code
    sections = ["Contents", "1. The questions and the propositions", "2. Summary of findings",
                "3. The faces the findings are about", "4. The evidence and its integrity",
                "5. Method", "6. Models", "7. The population and the calibration data",
                "8. Validation", "9. Results per episode", "10. The verbal scale",
                "11. Limitations", "12. Declaration", "Appendix: reproducibility"]
    positions = [text.find(s) for s in sections]
    assert all(p > 0 for p in positions), dict(zip(sections, positions, strict=True))
    assert positions == sorted(positions)
    # The numbers come from the tables: the strongest LR of each episode is in the text.
    episodes = pd.read_csv(reports[0] / "tables/episodes.csv")
    for value in episodes["max_log10_lr"]:
        assert f"{value:+.2f}" in text
    calibration = json.loads((reports[0] / "tables/calibration.json").read_text("utf-8"))
    assert f"{calibration['validation']['eer']:.4f}" in text
    # Every evidence hash of intake is in the report.
    intake = json.loads((reports[0] / "analysis/intake.json").read_text("utf-8"))
    for item in intake["evidence"]:
        assert item["sha256"] in text


def test_executed_notebooks_ran_on_the_case_with_its_parameters(reports, small_case):
    folder = reports[0]
    case = load_case(small_case)
    for name in report.NOTEBOOKS:
        nb = nbformat.read(folder / "notebooks" / f"{name}.ipynb", as_version=4)
        assert nb.metadata["kernelspec"]["name"] == report.KERNEL_NAME
        params = nb.metadata["papermill"]["parameters"]
        assert params["run_dir"] == str(folder / "analysis")
        assert params["case_path"] == str(case.case_file)
        assert params["sample_fps"] == case.analysis.sample_fps
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]
        assert not errors, name


def test_manifest_hashes_every_input_output_and_weight(reports, small_case):
    folder = reports[0]
    m = manifest(folder)
    for rel, item in m["outputs"].items():
        assert report.sha256_file(folder / rel) == item["sha256"], rel
    assert "report.pdf" in m["outputs"] and "tables/episodes.csv" in m["outputs"]
    assert "manifest.json" not in m["outputs"]
    inputs = m["inputs"]
    case = load_case(small_case)
    assert inputs["case"]["sha256"] == report.sha256_file(case.case_file)
    evidence = {e["path"]: e["sha256"] for e in inputs["evidence"]}
    assert evidence == {str(p): report.sha256_file(p) for _, _, p in case.evidence_paths()}
    assert inputs["population"]["identities"] > 100
    assert not any(n.startswith("Elon_Musk/") for n in inputs["population"]["files"])
    embedding = inputs["models"][0]
    assert embedding["sha256"] == embedding["pinned_sha256"]
    assert {m["name"] for m in inputs["models"][1:]} == {"mtcnn-onet", "mtcnn-pnet", "mtcnn-rnet"}
    assert inputs["parameters"] == case.analysis.as_dict()
    assert inputs["environment"]["packages"]["papermill"]
    assert "commit" in inputs["git"] and "dirty" in inputs["git"]
    assert m["started_utc"] <= m["finished_utc"]
    assert set(inputs["notebooks"]["sha256"]) == set(report.NOTEBOOKS)


def test_verify_finds_no_change_then_every_change(reports, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reports[0], copy)
    assert report.verify_run(copy) == []
    with (copy / "tables/episodes.csv").open("a") as f:
        f.write("\n")
    (copy / "figures/ece.png").unlink()
    (copy / "tables/extra.csv").write_text("x\n")
    problems = report.verify_run(copy)
    assert len(problems) == 3, problems
    assert any("changed" in p and "tables/episodes.csv" in p for p in problems)
    assert any("missing" in p and "figures/ece.png" in p for p in problems)
    assert any("added" in p and "tables/extra.csv" in p for p in problems)


def test_rerun_gives_byte_identical_tables_and_figures(reports):
    first, second = reports
    for rel in RESULT_TABLES:
        assert (first / "tables" / rel).read_bytes() == (second / "tables" / rel).read_bytes(), rel
    figures = sorted(p.name for p in (first / "figures").iterdir())
    assert figures == sorted(p.name for p in (second / "figures").iterdir())
    for name in figures:
        assert (first / "figures" / name).read_bytes() == (
            second / "figures" / name
        ).read_bytes(), name


def test_failing_cell_fails_the_report_and_marks_the_folder(small_case, reports, tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(report.notebooks_root(), notebooks)
    # Two failing notebooks: the report notebook starts first (notebooks run side by side),
    # yet the error named is that of the first failing notebook in the report's order.
    for name, figure in (("recognizability", "no_such_figure"), ("expert_report", "nor_this")):
        path = notebooks / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(
            f"report.show_figure(report.figure_path(run_dir, '{figure}'))"
        ))
        nbformat.write(nb, path)
    out = reports[0].parent.parent
    # Reuse the first report's analysis: the analysis is resumable, so this run only renders.
    shutil.copytree(reports[0] / "analysis", out / "report-small" / "failing" / "analysis")
    with pytest.raises(ReportError) as info:
        report.build_report(small_case, out, run_id="failing", progress=False,
                            notebooks_dir=notebooks)
    message = str(info.value)
    assert "recognizability.ipynb" in message
    assert "report.figure_path(run_dir, 'no_such_figure')" in message
    assert "ReportError" in message and "no_such_figure.png does not exist" in message
    assert "nor_this" not in message
    folder = out / "report-small" / "failing"
    # Every notebook ran to its end, the failing ones with their error kept in the copy.
    for name in report.NOTEBOOKS:
        assert (folder / "notebooks" / f"{name}.ipynb").is_file(), name
    executed = nbformat.read(folder / "notebooks" / "expert_report.ipynb", as_version=4)
    assert "nor_this.png does not exist" in json.dumps(executed.cells[-1].outputs)
    assert (folder / "FAILED").is_file() and not (folder / "RUNNING").exists()
    assert manifest(folder)["status"] == "failed"
    assert not (folder / "report.pdf").exists()
    problems = report.verify_run(folder)
    assert any("status is 'failed'" in p for p in problems)
    assert any("FAILED marker" in p for p in problems)


def test_notebook_on_a_missing_run_folder_fails_with_the_cells_error(small_case, tmp_path):
    case = load_case(small_case)
    params = report.notebook_parameters(case, tmp_path / "no-such-run")
    with pytest.raises(ReportError) as info:
        report.execute_notebook("intake", tmp_path / "out", params)
    message = str(info.value)
    assert "intake.ipynb" in message and "report.open_run(" in message
    assert re.search(r"run folder .*no-such-run does not exist", message)


def test_source_notebooks_are_parameterized_and_clean():
    for name in report.NOTEBOOKS:
        nb = nbformat.read(report.notebooks_root() / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        names = re.findall(r"^(\w+) = ", tagged[0].source, flags=re.M)
        extra = report.REPORT_PARAMETERS if name == report.REPORT_NOTEBOOK else ()
        assert tuple(names) == report.NOTEBOOK_PARAMETERS + extra, name
        assert nb.metadata["kernelspec"]["name"] == report.KERNEL_NAME
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, name


@pytest.mark.parametrize(
    ("log10_lr", "expected"),
    [(0.0, "no support for either proposition (LR about 1)"), (0.5, "weak support for H1"),
     (1.0, "moderate support for H1"), (2.5, "moderately strong support for H1"),
     (-3.2, "strong support for H2"), (5.9, "very strong support for H1"),
     (6.0, "extremely strong support for H1"), (float("nan"), "no likelihood ratio")],
)
def test_verbal_equivalents_follow_enfsi_2015(log10_lr, expected):
    assert report.verbal_equivalent(log10_lr) == expected


def test_run_id_is_time_and_parameters_hash(small_case):
    case = load_case(small_case)
    run_id = report.default_run_id(case)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", run_id)
    assert run_id.endswith(report.parameters_hash(case)[:8])
    other = override_analysis(case, {"seed": 7})
    assert report.parameters_hash(other) != report.parameters_hash(case)
    # Unknown overrides are refused: tests/test_case.py, test_overrides_are_checked_like_case_yaml.


def test_counts_agree_across_the_pdf_and_the_tables(reports):
    """The PDF's text (what a reader sees) against the tables: the strength bands of the
    summary, the calibration and validation counts, the identities, the pinned weights."""
    folder = reports[0]
    text = re.sub(r"\s+", " ", report.pdf_text(folder / "report.pdf"))
    episodes = pd.read_csv(folder / "tables/episodes.csv", dtype={"episode": str})
    # Evaluative reporting: every episode counted in one strength band; no yes/no line.
    bands = report.band_counts(episodes["max_log10_lr"].where(episodes["n_faces"] > 0),
                               episodes["episode"])
    assert bands["episodes"].sum() == len(episodes)
    for band in bands.itertuples(index=False):
        plural = "s" if band.episodes != 1 else ""
        words = f" — {band[1]}" if band[1] else ""
        assert f"{band[0]}{words}: {band.episodes} episode{plural}" in text, band[0]
    assert "do not" not in text.split("2. Summary of findings")[2].split("3. The faces")[0]
    # One number per concept: each episode's strongest evidence, with its track, everywhere.
    for row in episodes.itertuples(index=False):
        assert f"{row.episode}: strongest evidence log10 LR" in text
        assert f"from track {row.best_track_id}" in text
        assert f"{row.max_log10_lr:+.2f}" in text
    calibration = json.loads((folder / "tables/calibration.json").read_text("utf-8"))
    cal, val = calibration["calibrator"], calibration["validation"]
    for label, value in [
        ("same-source scores, calibration half", cal["n_same_source"]),
        ("different-source scores, calibration half", cal["n_different_source"]),
        ("identities of the calibration half with scores", cal["n_identities"]),
        ("same-source scores, validation half", val["n_same_source"]),
        ("different-source scores, validation half", val["n_different_source"]),
        ("identities of the validation half with scores", val["n_identities"]),
        ("population identities (usable)", calibration["n_population_identities"]),
    ]:
        assert f"{label} {value}" in text, label
    inputs = json.loads((folder / "inputs.json").read_text("utf-8"))
    assert f"identities {inputs['population']['identities']}" in text
    assert f"photos of {inputs['population']['identities']} identities" in text
    # The weights: the text's claim is the table's (every file pinned and matching).
    n_models = len(inputs["models"])
    assert f"{n_models} of them are pinned" in text
    assert f"{n_models} of the pinned files match" in text
    assert "no pin" not in text
    # Page numbers "n of N" and a table of contents with page numbers.
    pages = report.pdf_page_count(folder / "report.pdf")
    assert f"page {pages} of {pages}" in text
    assert re.search(r"2\. Summary of findings \.* ?\d+", text)


def test_report_shows_absent_provenance_and_the_processing_log(reports):
    folder = reports[0]
    text = re.sub(r"\s+", " ", report.pdf_text(folder / "report.pdf"))
    assert "examiner not recorded" in text and "Declaration: not recorded" in text
    assert "Signed:" in text and "Peer review by:" in text
    log = [json.loads(line) for line in
           (folder / "analysis/processing_log.jsonl").read_text("utf-8").splitlines()]
    steps = [(e["event"], e["step"]) for e in log]
    assert steps[:2] == [("start", "report"), ("start", "analyze")]
    assert ("end", "analyze") in steps and steps[-1] == ("end", "report")
    analyzed = next(e for e in log if e["event"] == "end" and e["step"] == "analyze")
    assert analyzed["result_sha256"]["episodes.csv"] == report.sha256_file(
        folder / "tables/episodes.csv")
