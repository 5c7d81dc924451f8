"""Reproducible expert reports: run the notebooks with papermill, render HTML and PDF, seal them.

``build_report(case)`` writes one report folder, ``<out_root>/<case_id>/<run_id>/``::

    manifest.json     SHA-256 of every input (case.yaml, footage, reference photos, population
                      photos), every output and every model weight file; the parameters; the
                      package versions; the git commit; the times; ``status`` ('complete' or
                      'failed')
    report.html       expert_report.ipynb, executed, code hidden, print style sheet
    report.pdf        report.html rendered by WeasyPrint
    tables/           the result tables: episodes.csv, tracks.csv, timeline/<episode>.csv,
                      calibration.json, warnings.csv (copies of the analysis folder's)
    figures/          the figures (PNG and SVG; copies of the analysis folder's)
    notebooks/        the five notebooks, executed, in the order they ran
    analysis/         the analysis run folder (faces/<episode>.parquet, references.parquet,
                      population.parquet, intake.json, analysis.json, ...); resumable
    inputs.json       the inputs part of the manifest, written before the notebooks run so
                      that the report's reproducibility appendix can show it
    RUNNING, FAILED   markers: RUNNING while a build runs, FAILED (with the error) after one
                      failed. A complete report has neither and manifest status 'complete'.

The default ``run_id`` is ``<UTC start time as YYYYmmddTHHMMSSZ>-<parameters hash>``, where the
parameters hash is the first 8 hex digits of the SHA-256 of the case id and the effective
analysis parameters as canonical JSON (sorted keys): runs with the same parameters share the
suffix, so they are easy to pair, and the time keeps every run apart. Passing an existing
``run_id`` resumes that run: the analysis reuses what is done, the notebooks run again.

``verify_run(report_dir)`` re-hashes the evidence, the population photos, the model weights and
every output against ``manifest.json`` and lists what changed.

The second half of this module holds the presentation functions the notebooks call: each returns
a table (DataFrame), a displayable HTML/Markdown/Image object or a text, so that notebook cells
hold nothing but calls and display.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import analysis
from likeness import case as case_module
from likeness.analysis import package_versions, population_exclude
from likeness.case import Case, load_case, override_analysis, project_root
from likeness.errors import LikenessError, ReportError
from likeness.files import sha256_file, write_json_atomic
from likeness.intake import load_intake

# The notebooks, in the order they run. Each has a cell tagged 'parameters'.
NOTEBOOKS = ("intake", "faces", "similarity_calibration", "recognizability", "expert_report")
REPORT_NOTEBOOK = "expert_report"
NOTEBOOK_PARAMETERS = ("case_path", "run_dir", "model", "sample_fps", "operating_point", "seed")
# The kernelspec the set-up installs into .venv (ipykernel install --sys-prefix --name likeness).
KERNEL_NAME = "likeness"

MANIFEST_FILE = "manifest.json"
INPUTS_FILE = "inputs.json"
RUNNING_FILE = "RUNNING"
FAILED_FILE = "FAILED"
ANALYSIS_DIR = "analysis"
TABLES_DIR = "tables"
FIGURES_DIR = "figures"
NOTEBOOKS_DIR = "notebooks"
# Files the analysis writes that are result tables (copied to tables/).
RESULT_TABLES = ("episodes.csv", "tracks.csv", "calibration.json", "warnings.csv")
RESULT_TABLE_DIRS = ("timeline",)
# Files that describe a report folder rather than belong to it: never hashed as outputs.
UNHASHED = (MANIFEST_FILE, RUNNING_FILE, FAILED_FILE)

# The packages whose versions decide the numbers or the rendering (recorded in the manifest).



# ---------------------------------------------------------------------------------------------
# Parameters and run ids


def notebooks_root() -> Path:
    """The folder holding the source notebooks (``<project>/notebooks``)."""
    return project_root() / "notebooks"


def notebook_parameters(case: Case, analysis_dir: Path) -> dict[str, Any]:
    """The papermill parameters every notebook gets (the names of its 'parameters' cell)."""
    params = case.analysis
    return {
        "case_path": str(case.case_file),
        "run_dir": str(analysis_dir),
        "model": params.model,
        "sample_fps": params.sample_fps,
        "operating_point": params.operating_point_log10_lr,
        "seed": params.seed,
    }


def parameters_hash(case: Case) -> str:
    """SHA-256 of the case id and the effective analysis parameters (canonical JSON)."""
    payload = {"case_id": case.case_id, "analysis": case.analysis.as_dict()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_run_id(case: Case, now: dt.datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<8 hex digits of parameters_hash>`` (UTC)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{parameters_hash(case)[:8]}"


# ---------------------------------------------------------------------------------------------
# Hashes, versions, git


def file_record(path: Path) -> dict[str, Any]:
    """Path, size and SHA-256 of one file."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def environment_record() -> dict[str, Any]:
    """Python, platform, key package versions and the lock file's hash."""
    lock = project_root() / "requirements.lock"
    return {
        **analysis.software_versions(),
        "python_executable": sys.executable,
        "machine": platform.machine(),
        "requirements_lock_sha256": sha256_file(lock) if lock.is_file() else None,
    }


def git_record(root: Path | None = None) -> dict[str, Any]:
    """The project's git commit and whether its tree has uncommitted changes.

    Read-only (``git rev-parse``, ``git status --porcelain``); a project that is not a git
    checkout, or a git that is missing, gives commit None with the reason.
    """
    root = root or project_root()

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=normal")
    except OSError as exc:
        return {"commit": None, "dirty": None, "note": f"git not available: {exc}"}
    if status.returncode != 0:
        return {"commit": None, "dirty": None, "note": status.stderr.strip()}
    record: dict[str, Any] = {
        "commit": head.stdout.strip() if head.returncode == 0 else None,
        "dirty": bool(status.stdout.strip()),
        "changed_files": len(status.stdout.splitlines()),
    }
    if head.returncode != 0:
        record["note"] = "the repository has no commit yet"
    return record


def kernel_record(kernel_name: str = KERNEL_NAME) -> dict[str, Any]:
    """The kernelspec the notebooks run on; ReportError when it is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as exc:
        raise ReportError(
            f"Jupyter kernel '{kernel_name}' is not installed: run `make setup` (or "
            f"`.venv/bin/python -m ipykernel install --sys-prefix --name {kernel_name}`)"
        ) from exc
    return {"name": kernel_name, "argv0": spec.argv[0], "resource_dir": spec.resource_dir}


def mtcnn_weight_files() -> list[Path]:
    """facenet-pytorch's MTCNN weight files (pnet, rnet, onet), which detection depends on."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return sorted(data.glob("*.pt"))


# ---------------------------------------------------------------------------------------------
# The inputs record (first half of the manifest)


def population_files(case: Case) -> pd.DataFrame:
    """The population photos the analysis uses: identity, path (claimant's folder excluded)."""
    if case.population_root is None:
        return pd.DataFrame(columns=["identity", "path"])
    photos = case_module.population_photos(
        case.population_root,
        population_exclude(case),
        max_per_identity=case.analysis.max_photos_per_identity,
    )
    return photos.dropna(subset=["path"]).reset_index(drop=True)


def population_record(case: Case) -> dict[str, Any] | None:
    """Root, exclusions, counts, per-photo SHA-256 and the SHA-256 of the whole listing.

    The listing is the text ``<identity>/<file name> <sha256>`` per photo, one a line, sorted;
    its hash changes when any photo is added, removed, renamed or altered.
    """
    if case.population_root is None:
        return None
    photos = population_files(case)
    root = case.population_root
    files = {
        str(Path(p).relative_to(root)): sha256_file(Path(p)) for p in photos["path"]
    }
    listing = "".join(f"{name} {sha}\n" for name, sha in sorted(files.items()))
    return {
        "root": str(root),
        "exclude": list(population_exclude(case)),
        "max_photos_per_identity": case.analysis.max_photos_per_identity,
        "identities": int(photos["identity"].nunique()),
        "photos": len(files),
        "listing_sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
        "files": dict(sorted(files.items())),
    }


def models_record(model_name: str) -> list[dict[str, Any]]:
    """The embedding model (registry entry + measured weights hash) and MTCNN's weight files."""
    from likeness.models import model_record

    record = model_record(model_name)
    path = Path(record["weights_path"])
    entry = {
        "role": "embedding",
        "name": model_name,
        "path": str(path),
        "pinned_sha256": record.get("sha256"),
        "licence": record.get("licence"),
        "provenance": record.get("provenance"),
        "provenance_url": record.get("provenance_url"),
        "training_data": record.get("training_data"),
        "published_lfw_accuracy": record.get("published_lfw_accuracy"),
    }
    if path.is_file():
        entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    else:
        entry.update(bytes=None, sha256=None)
    rows = [entry]
    if record.get("shape_predictor_path"):  # dlib's alignment model, pinned like the weights
        predictor = Path(record["shape_predictor_path"])
        rows.append(
            {
                **entry,
                "role": "alignment",
                "name": f"{model_name} 5-point shape predictor",
                "path": str(predictor),
                "pinned_sha256": record["shape_predictor_sha256"],
                "bytes": predictor.stat().st_size if predictor.is_file() else None,
                "sha256": sha256_file(predictor) if predictor.is_file() else None,
            }
        )
    facenet_version = package_versions(["facenet-pytorch"])["facenet-pytorch"]
    for weights in mtcnn_weight_files():
        rows.append(
            {
                "role": "detection",
                "name": f"mtcnn-{weights.stem}",
                "path": str(weights),
                "licence": "MIT (facenet-pytorch)",
                "provenance": f"facenet-pytorch {facenet_version} package data",
                **{k: v for k, v in file_record(weights).items() if k != "path"},
            }
        )
    return rows


def notebooks_record(source_dir: Path) -> dict[str, Any]:
    """Folder and SHA-256 of each source notebook the report runs."""
    files = {}
    for name in NOTEBOOKS:
        path = Path(source_dir) / f"{name}.ipynb"
        files[name] = sha256_file(path) if path.is_file() else None
    return {"folder": str(source_dir), "sha256": files}


def collect_inputs(case: Case, *, command: str | None = None) -> dict[str, Any]:
    """Everything the report depends on, hashed: the inputs half of ``manifest.json``."""
    evidence = [
        {"role": role, "id": ident, **file_record(path)}
        for role, ident, path in case.evidence_paths()
    ]
    return {
        "case": {
            "case_id": case.case_id,
            "title": case.title,
            "claimant": case.claimant_name,
            **file_record(case.case_file),
        },
        "parameters": case.analysis.as_dict(),
        "parameters_sha256": parameters_hash(case),
        "evidence": evidence,
        "population": population_record(case),
        "models": models_record(case.analysis.model),
        "environment": environment_record(),
        "git": git_record(),
        "command": command,
    }


# ---------------------------------------------------------------------------------------------
# Building a report


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def rerun_command(case: Case, out_root: Path, run_id: str, overrides: Mapping[str, Any]) -> str:
    """The shell command that re-runs this report into the same folder."""
    sets = "".join(f" --set {k}={json.dumps(v)}" for k, v in sorted(overrides.items()))
    return f"likeness report {case.case_file} --out {out_root} --run-id {run_id}{sets}"


def _clear_previous_outputs(report_dir: Path) -> None:
    """Remove what an earlier build of this run id left, except the resumable analysis."""
    for name in ("report.html", "report.pdf", MANIFEST_FILE, INPUTS_FILE, FAILED_FILE):
        (report_dir / name).unlink(missing_ok=True)
    for name in (TABLES_DIR, FIGURES_DIR, NOTEBOOKS_DIR):
        shutil.rmtree(report_dir / name, ignore_errors=True)


def build_report(
    case_path: str | os.PathLike[str],
    out_root: str | os.PathLike[str] = "reports",
    *,
    run_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    notebooks_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Analyse a case and write its expert report folder; return the folder.

    Steps: (a) ``analysis.analyze_case`` into ``<folder>/analysis`` (resumable), (b) the
    notebooks of ``NOTEBOOKS`` executed in order with papermill on the ``likeness`` kernel
    into ``<folder>/notebooks``, (c) ``report.html`` from expert_report.ipynb with code hidden,
    (d) ``report.pdf`` from that HTML with WeasyPrint, (e) the result tables and figures copied
    to ``tables/`` and ``figures/``, (f) ``manifest.json``.

    ``overrides`` replaces analysis parameters of the case (names as in ``case.yaml``'s
    ``analysis`` section, e.g. ``{"sample_fps": 2, "seed": 1}``). ``notebooks_dir`` runs a
    lab's own copies of the notebooks (same names) instead of the project's ``notebooks/``;
    their SHA-256 are recorded in the manifest either way.

    On any error the folder is marked failed (``FAILED`` holds the error, manifest status
    'failed') and ReportError is raised; a failing notebook cell's error names the notebook,
    the cell's line and the exception.
    """
    started = time.monotonic()
    started_utc = _now()
    overrides = dict(overrides or {})
    case = override_analysis(load_case(case_path), overrides)
    kernel = kernel_record()
    source_dir = Path(notebooks_dir).resolve() if notebooks_dir else notebooks_root()
    out_root = Path(out_root).expanduser().resolve()
    run_id = run_id or default_run_id(case)
    if not case_module.CASE_ID_PATTERN.match(run_id):
        raise ReportError(f"run id '{run_id}' may hold only letters, digits, - and _")
    report_dir = out_root / case.case_id / run_id
    report_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous_outputs(report_dir)
    (report_dir / RUNNING_FILE).write_text(f"started {started_utc} pid {os.getpid()}\n", "utf-8")

    manifest: dict[str, Any] = {
        "status": "running",
        "case_id": case.case_id,
        "run_id": run_id,
        "started_utc": started_utc,
        "kernel": kernel,
    }
    durations: dict[str, float] = {}
    try:
        tic = time.monotonic()
        inputs = collect_inputs(case, command=rerun_command(case, out_root, run_id, overrides))
        inputs["notebooks"] = notebooks_record(source_dir)
        write_json_atomic(report_dir / INPUTS_FILE, inputs, sort_keys=False)
        manifest["inputs"] = inputs
        durations["hash_inputs"] = time.monotonic() - tic

        tic = time.monotonic()
        analysis_dir = report_dir / ANALYSIS_DIR
        from likeness.analysis import analyze_case

        analyze_case(case, analysis_dir, progress=progress)
        durations["analysis"] = time.monotonic() - tic

        tic = time.monotonic()
        write_figures(case, analysis_dir)
        durations["figures"] = time.monotonic() - tic

        parameters = notebook_parameters(case, analysis_dir)
        manifest["notebook_parameters"] = parameters
        executed: dict[str, Path] = {}
        for name in NOTEBOOKS:
            tic = time.monotonic()
            executed[name] = execute_notebook(
                name, report_dir / NOTEBOOKS_DIR, parameters, source_dir=source_dir,
                progress=progress,
            )
            durations[f"notebook_{name}"] = time.monotonic() - tic

        tic = time.monotonic()
        html_path = export_html(
            executed[REPORT_NOTEBOOK], report_dir / "report.html",
            title=f"Expert report: {case.title}",
            running_header=f"Expert report · case {case.case_id} · report {run_id}",
        )
        durations["html"] = time.monotonic() - tic
        tic = time.monotonic()
        render_pdf(html_path, report_dir / "report.pdf")
        durations["pdf"] = time.monotonic() - tic

        copy_results(analysis_dir, report_dir)
    except BaseException as exc:  # also KeyboardInterrupt: the folder must not look complete
        message = f"{type(exc).__name__}: {exc}"
        manifest.update(status="failed", error=message)
        _finish_manifest(report_dir, manifest, started, durations)
        (report_dir / FAILED_FILE).write_text(f"{_now()}\n{message}\n", encoding="utf-8")
        (report_dir / RUNNING_FILE).unlink(missing_ok=True)
        if isinstance(exc, LikenessError) or not isinstance(exc, Exception):
            raise
        # An unexpected error (a bug) still fails the report as a ReportError, with its cause.
        raise ReportError(f"report {report_dir} failed: {message}") from exc
    manifest["status"] = "complete"
    _finish_manifest(report_dir, manifest, started, durations)
    (report_dir / RUNNING_FILE).unlink(missing_ok=True)
    return report_dir


def write_figures(case: Case, analysis_dir: Path) -> list[Path]:
    """Draw the run's figures into ``analysis_dir/figures`` (likeness.figures; deterministic,
    so drawing them again on a resumed run gives the same files)."""
    from likeness import figures

    return figures.write_run_figures(case, analysis_dir)


def _finish_manifest(
    report_dir: Path, manifest: dict[str, Any], started: float, durations: dict[str, float]
) -> None:
    manifest["finished_utc"] = _now()
    manifest["duration_s"] = round(time.monotonic() - started, 3)
    manifest["step_durations_s"] = {k: round(v, 3) for k, v in durations.items()}
    manifest["outputs"] = hash_outputs(report_dir)
    write_json_atomic(report_dir / MANIFEST_FILE, manifest, sort_keys=False)


def hash_outputs(report_dir: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {bytes, sha256}}`` of every file in the report folder (sorted)."""
    outputs = {}
    for path in sorted(p for p in Path(report_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(report_dir).as_posix()
        if rel in UNHASHED or rel.endswith(".tmp"):
            continue
        outputs[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return outputs


def copy_results(analysis_dir: Path, report_dir: Path) -> list[Path]:
    """Copy the result tables and the figures of the analysis into ``tables/`` and
    ``figures/`` of the report folder (copies, not links: the report must stand alone)."""
    copied = []
    tables = report_dir / TABLES_DIR
    for name in RESULT_TABLES:
        if (analysis_dir / name).is_file():
            tables.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(analysis_dir / name, tables / name)))
    for name in RESULT_TABLE_DIRS:
        if (analysis_dir / name).is_dir():
            shutil.copytree(analysis_dir / name, tables / name, dirs_exist_ok=True)
            copied += sorted((tables / name).rglob("*"))
    if (analysis_dir / FIGURES_DIR).is_dir():
        shutil.copytree(analysis_dir / FIGURES_DIR, report_dir / FIGURES_DIR, dirs_exist_ok=True)
        copied += sorted((report_dir / FIGURES_DIR).rglob("*"))
    return copied


# ---------------------------------------------------------------------------------------------
# Executing notebooks

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")


def _failing_line(source: str, traceback: list[str]) -> str:
    """The line of the cell that raised (from IPython's 'Cell In[n], line k'), else its first."""
    lines = [line for line in source.splitlines() if line.strip()]
    numbers = _CELL_LINE.findall(_ANSI.sub("", "\n".join(traceback)))
    all_lines = source.splitlines()
    if numbers and 0 < int(numbers[0]) <= len(all_lines):
        return all_lines[int(numbers[0]) - 1].strip()
    return lines[0].strip() if lines else ""


def execute_notebook(
    name: str,
    out_dir: Path,
    parameters: Mapping[str, Any],
    *,
    source_dir: Path | None = None,
    kernel_name: str = KERNEL_NAME,
    progress: bool = False,
) -> Path:
    """Run ``<source_dir>/<name>.ipynb`` with papermill into ``out_dir/<name>.ipynb``.

    A cell that raises stops the run; the executed notebook (with the error) is kept and
    ReportError names the notebook, the cell's failing line and the exception.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = (source_dir or notebooks_root()) / f"{name}.ipynb"
    if not source.is_file():
        raise ReportError(f"notebook {source} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=dict(parameters),
            kernel_name=kernel_name,
            progress_bar=progress,
            log_output=False,
            cwd=str(out_dir),
        )
    except PapermillExecutionError as exc:
        line = _failing_line(exc.source, exc.traceback)
        raise ReportError(
            f"notebook {name}.ipynb failed in cell {exc.exec_count} at `{line}`: "
            f"{exc.ename}: {exc.evalue} (executed notebook with the traceback: {output})"
        ) from exc
    return output


# ---------------------------------------------------------------------------------------------
# HTML and PDF

PRINT_CSS = """
@page {
  size: A4;
  margin: 18mm 16mm 20mm 16mm;
  @top-left { content: "__RUNNING_HEADER__"; font: 7.5pt "DejaVu Sans", sans-serif;
              color: #666; }
  @bottom-right { content: "page " counter(page) " of " counter(pages);
                  font: 7.5pt "DejaVu Sans", sans-serif; color: #666; }
}
html { font-family: "DejaVu Serif", "Liberation Serif", Georgia, serif; font-size: 9.5pt;
       line-height: 1.38; color: #111; }
body { margin: 0 auto; max-width: 178mm; }
h1 { font-size: 17pt; margin: 0 0 6pt 0; line-height: 1.2; }
h2 { font-size: 13pt; margin: 16pt 0 5pt 0; border-bottom: 0.6pt solid #888;
     break-after: avoid; }
h3 { font-size: 10.5pt; margin: 11pt 0 4pt 0; break-after: avoid; }
h1, h2, h3, h4 { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; }
p, li { orphans: 3; widows: 3; }
.anchor-link { display: none; }
table { border-collapse: collapse; margin: 0; font-size: 7.6pt;
        font-family: "DejaVu Sans Condensed", "DejaVu Sans", "Liberation Sans Narrow", sans-serif;
        max-width: 100%; break-inside: avoid; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { border-bottom: 0.4pt solid #bbb; padding: 1.6pt 4pt; vertical-align: top;
         text-align: left; }
th { border-bottom: 0.8pt solid #444; font-weight: bold; }
td.num, th.num { text-align: right; white-space: nowrap; }
.table-block { break-inside: avoid; margin: 6pt 0 9pt 0; }
table.wide { width: 100%; }
.table-caption { font-weight: bold; font-size: 8.5pt; margin: 0 0 2pt 0;
                 font-family: "DejaVu Sans", sans-serif; break-after: avoid; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 6.8pt; }
td.mono { word-break: break-all; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 7.5pt; }
img, svg { max-width: 100%; height: auto; }
.output_png, .output_svg { text-align: center; margin: 4pt 0 2pt 0; break-inside: avoid; }
.output_stderr, .output_error { display: none; }
.figure-caption { font-size: 8pt; color: #333; margin: 0 0 10pt 0; break-before: avoid; }
.grid-cell { display: inline-block; vertical-align: top; margin-bottom: 4pt;
             break-inside: avoid; text-align: center; }
h2[id^="Appendix"] { break-before: page; }
blockquote { margin: 4pt 0 4pt 10pt; padding-left: 8pt; border-left: 2pt solid #999; }
@media screen {
  body { padding: 2em; }
}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""


def export_html(
    notebook_path: Path, html_path: Path, *, title: str, running_header: str = ""
) -> Path:
    """Write the executed notebook as a print-friendly HTML page: code, prompts and stderr
    hidden (nbconvert's 'basic' template, ``exclude_input``), outputs and Markdown kept."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            # Progress bars and library warnings are not part of the report.
            cell.outputs = [
                o for o in cell.outputs
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    exporter = HTMLExporter(
        template_name="basic",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    # The running header goes into a CSS string: keep it to characters that need no escaping.
    header = re.sub(r'["\\\n<>]', " ", running_header)
    page = _PAGE.format(
        title=html.escape(title),
        css=PRINT_CSS.replace("__RUNNING_HEADER__", header),
        body=body,
    )
    html_path.write_text(page, encoding="utf-8")
    return html_path


_INLINE_AFTER_SPACE = re.compile(r"(\s)<(strong|em|b|i|code|a)\b")


def render_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render the HTML page to PDF with WeasyPrint (atomic write)."""
    import logging

    import weasyprint

    # WeasyPrint logs every CSS property it ignores; those are not errors of the report.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    tmp = pdf_path.with_name(pdf_path.name + ".tmp")
    # WeasyPrint 70 sometimes breaks a line at the wrong place when a space is followed by an
    # inline element (<strong>, <em>...) at the end of a line, leaving one word alone on a
    # line; a zero-width space after such spaces gives it the right break opportunity.
    page = _INLINE_AFTER_SPACE.sub("\\1\u200b<\\2", html_path.read_text("utf-8"))
    try:
        weasyprint.HTML(string=page, base_url=str(html_path.parent)).write_pdf(str(tmp))
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{html_path}: WeasyPrint could not render the PDF: {exc}") from exc
    os.replace(tmp, pdf_path)
    return pdf_path


def pdf_page_count(pdf_path: Path) -> int:
    """Number of pages of a PDF (pypdfium2)."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(pdf_path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def render_pdf_pages(pdf_path: Path, out_dir: Path, *, scale: float = 1.5) -> list[Path]:
    """Render every page of a PDF to ``out_dir/page-NN.png`` (to look at it as a reader would)."""
    import pypdfium2

    out_dir.mkdir(parents=True, exist_ok=True)
    pdf = pypdfium2.PdfDocument(str(pdf_path))
    paths = []
    try:
        for i in range(len(pdf)):
            path = out_dir / f"page-{i + 1:02d}.png"
            pdf[i].render(scale=scale).to_pil().save(path)
            paths.append(path)
    finally:
        pdf.close()
    return paths


# ---------------------------------------------------------------------------------------------
# Verifying a report folder


def verify_run(report_dir: str | os.PathLike[str]) -> list[str]:
    """Re-hash a report folder's inputs and outputs against its ``manifest.json``.

    Returns one human-readable line per difference (empty list: nothing changed): a report
    that is not complete, evidence / case file / population photos / model weights that are
    missing or changed, outputs that are missing, changed or were added.
    """
    report_dir = Path(report_dir).expanduser().resolve()
    manifest_path = report_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return [f"{manifest_path}: no manifest.json (not a report folder, or the build is "
                "still running or was killed)"]
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{manifest_path}: unreadable manifest: {exc}"]
    problems: list[str] = []
    if manifest.get("status") != "complete":
        problems.append(
            f"report status is '{manifest.get('status')}', not 'complete'"
            + (f": {manifest['error']}" if manifest.get("error") else "")
        )
    for marker in (RUNNING_FILE, FAILED_FILE):
        if (report_dir / marker).exists():
            problems.append(f"{marker} marker present: the build did not complete")

    def check(what: str, path: str | Path, expected: str | None) -> None:
        path = Path(path)
        if expected is None:
            return
        if not path.is_file():
            problems.append(f"{what} missing: {path}")
            return
        actual = sha256_file(path)
        if actual != expected:
            problems.append(
                f"{what} changed: {path} (sha256 {expected[:16]}… in manifest, now {actual[:16]}…)"
            )

    inputs = manifest.get("inputs") or {}
    if "case" in inputs:
        check("case file", inputs["case"]["path"], inputs["case"]["sha256"])
    for item in inputs.get("evidence", []):
        check(f"evidence ({item['role']} {item['id']})", item["path"], item["sha256"])
    population = inputs.get("population")
    if population:
        root = Path(population["root"])
        for name, sha in population["files"].items():
            check("population photo", root / name, sha)
        present = _population_now(population)
        for name in sorted(present - set(population["files"])):
            problems.append(f"population photo added: {root / name}")
    for model in inputs.get("models", []):
        check(f"model weights ({model['name']})", model["path"], model.get("sha256"))

    recorded = manifest.get("outputs") or {}
    for rel, item in recorded.items():
        check("output", report_dir / rel, item["sha256"])
    current = hash_outputs_listing(report_dir)
    for rel in sorted(current - set(recorded)):
        problems.append(f"output added: {report_dir / rel} (not in the manifest)")
    return problems


def hash_outputs_listing(report_dir: Path) -> set[str]:
    """Relative paths of the files a manifest would hash (without hashing them)."""
    return {
        p.relative_to(report_dir).as_posix()
        for p in Path(report_dir).rglob("*")
        if p.is_file() and p.relative_to(report_dir).as_posix() not in UNHASHED
        and not p.name.endswith(".tmp")
    }


def _population_now(population: Mapping[str, Any]) -> set[str]:
    """Relative paths of the population photos the same listing rule finds today."""
    root = Path(population["root"])
    if not root.is_dir():
        return set()
    photos = case_module.population_photos(
        root, tuple(population["exclude"]), max_per_identity=population["max_photos_per_identity"]
    ).dropna(subset=["path"])
    return {str(Path(p).relative_to(root)) for p in photos["path"]}


# ---------------------------------------------------------------------------------------------
# Presentation: what the notebooks call. Each function returns a table or a displayable
# object; numbers in the report's text come from here, never from typed-in prose.

# Verbal equivalents of likelihood ratios: ENFSI Guideline for Evaluative Reporting in
# Forensic Science (2015), p. 17. Rows: lower bound of log10 LR (inclusive), upper bound
# (exclusive), the verbal equivalent for the proposition the LR supports.
VERBAL_SCALE = (
    (0.0, 1.0, "weak support"),  # LR 1 (exclusive) to 10
    (1.0, 2.0, "moderate support"),  # 10 to 100
    (2.0, 3.0, "moderately strong support"),  # 100 to 1,000
    (3.0, 4.0, "strong support"),  # 1,000 to 10,000
    (4.0, 6.0, "very strong support"),  # 10,000 to 1,000,000
    (6.0, float("inf"), "extremely strong support"),  # 1,000,000 and above
)
# |log10 LR| below this is reported as 'no support for either proposition' (LR about 1).
NEUTRAL_LOG10_LR = 0.05


def verbal_equivalent(log10_lr: float) -> str:
    """ENFSI (2015) verbal equivalent of a log10 LR, naming the proposition it supports."""
    if log10_lr is None or not pd.notna(log10_lr):
        return "no likelihood ratio"
    value = float(log10_lr)
    if abs(value) < NEUTRAL_LOG10_LR:
        return "no support for either proposition (LR about 1)"
    magnitude = abs(value)
    words = next(w for lo, hi, w in VERBAL_SCALE if lo <= magnitude < hi)
    return f"{words} for {'H1' if value > 0 else 'H2'}"


def verbal_scale_table() -> pd.DataFrame:
    """The ENFSI (2015) scale as a table: LR range, log10 LR range, verbal equivalent."""
    rows = [{"likelihood ratio": "about 1", "log10 LR": "about 0",
             "verbal equivalent": "the findings support neither proposition"}]
    for lo, hi, words in VERBAL_SCALE:
        lr_hi = "and above" if hi == float("inf") else f"to {10 ** hi:,.0f}"
        lr_lo = "above 1" if lo == 0 else f"{10 ** lo:,.0f}"
        log_hi = "and above" if hi == float("inf") else f"to {hi:g}"
        rows.append({
            "likelihood ratio": f"{lr_lo} {lr_hi}",
            "log10 LR": f"{lo:g} {log_hi}",
            "verbal equivalent": f"{words} for H1 over H2",
        })
    return pd.DataFrame(rows)


def open_run(
    case_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    model: str,
    sample_fps: float | None,
    operating_point: float,
    seed: int,
) -> Case:
    """The case a notebook presents, checked against the run folder it reads.

    The notebook's parameters override the case's analysis parameters; the run folder must
    exist, hold an analysis (``analysis.json``) and have been made with exactly these
    parameters, so a notebook never shows results of other settings than it states.
    """
    overrides = {
        "model": model,
        "sample_fps": sample_fps,
        "operating_point_log10_lr": operating_point,
        "seed": seed,
    }
    case = override_analysis(load_case(case_path), overrides)
    run = Path(run_dir).expanduser().resolve()
    if not run.is_dir():
        raise ReportError(
            f"run folder {run} does not exist: run `likeness analyze {case.case_file} --out "
            f"{run}` first (or `likeness report`, which analyses and runs every notebook)"
        )
    record_path = run / "analysis.json"
    if not record_path.is_file():
        raise ReportError(f"{record_path}: no analysis in this run folder; run `likeness analyze`")
    recorded = json.loads(record_path.read_text("utf-8"))
    if recorded.get("case_id") != case.case_id:
        raise ReportError(
            f"{record_path}: the run folder belongs to case '{recorded.get('case_id')}', "
            f"not '{case.case_id}' ({case.case_file})"
        )
    wanted = case.analysis.as_dict()
    differ = [
        f"{k}={recorded['parameters'].get(k)!r} (notebook: {v!r})"
        for k, v in wanted.items()
        if recorded.get("parameters", {}).get(k) != v
    ]
    if differ:
        raise ReportError(
            f"{record_path}: the run folder was analysed with other parameters: "
            + ", ".join(differ) + "; set the notebook's parameters to match or use another run"
        )
    return case


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not produce it")
    return json.loads(path.read_text("utf-8"))


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not produce it")
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs)


def _mark_numeric(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def table_html(
    df: pd.DataFrame,
    caption: str | None = None,
    *,
    digits: int | Mapping[str, int] = 2,
    mono: Iterable[str] = (),
) -> str:
    """A table as HTML for the report: numbers right-aligned with a fixed number of decimals
    (``digits``: one for all, or per column), text left-aligned, ``mono`` columns (hashes) in a
    monospace font. The index is not shown."""
    mono = set(mono) | {c for c in df.columns if "sha256" in str(c).lower()}
    per_col = digits if isinstance(digits, Mapping) else {}
    default = digits if isinstance(digits, int) else 2
    numeric = {
        c for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    }
    # The caption is a paragraph in a block kept with its table (a <caption> can be left
    # alone at the foot of a page by WeasyPrint).
    parts = ['<div class="table-block">']
    if caption:
        parts.append(f'<p class="table-caption">{html.escape(caption)}</p>')
    wide = " wide" if len(df.columns) >= 6 else ""
    parts.append(f'<table class="likeness-table{wide}">')
    head = "".join(
        f'<th class="{"num" if c in numeric else "text"}">{html.escape(str(c))}</th>'
        for c in df.columns
    )
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            cls = "num" if col in numeric else "text"
            if col in mono:
                cls += " mono"
            text = _mark_numeric(value, int(per_col.get(col, default)))
            if value is None or (isinstance(value, float) and value != value):
                text = "–"
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def show_table(
    df: pd.DataFrame,
    caption: str | None = None,
    *,
    digits: int | Mapping[str, int] = 2,
    mono: Iterable[str] = (),
):
    """Display a table (IPython HTML object) formatted by :func:`table_html`."""
    from IPython.display import HTML

    return HTML(table_html(df, caption, digits=digits, mono=mono))


def show_markdown(text: str):
    """Display computed Markdown text (IPython Markdown object)."""
    from IPython.display import Markdown

    return Markdown(text)


def figure_path(run_dir: str | os.PathLike[str], name: str) -> Path:
    """``<run_dir>/figures/<name>.png``; ReportError when the analysis did not draw it."""
    path = Path(run_dir) / FIGURES_DIR / f"{name}.png"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(run_dir) / FIGURES_DIR).glob("*.png"))
        raise ReportError(
            f"figure {path} does not exist; figures of this run: {', '.join(available) or 'none'}"
        )
    return path


def show_figure(path: str | os.PathLike[str], caption: str | None = None, *, width: int = 520):
    """Display a PNG figure (embedded in the notebook) with an optional caption below it."""
    from IPython.display import HTML, Image, display

    path = Path(path)
    if not path.is_file():
        raise ReportError(f"figure {path} does not exist")
    display(Image(filename=str(path), width=width))
    if caption:
        return HTML(f'<p class="figure-caption">{html.escape(caption)}</p>')
    return None


# --- the case and its evidence


def case_table(case: Case) -> pd.DataFrame:
    """The case at a glance: id, title, claimant, footage, references, population."""
    rows = [
        ("case id", case.case_id),
        ("title", case.title),
        ("case file", str(case.case_file)),
        ("claimant", case.claimant_name),
        ("reference photos", f"{len(case.reference_paths)}"),
        ("episodes (broadcast order)", ", ".join(e.id for e in case.episodes)),
        ("population", str(case.population_root) if case.population_root else "none"),
        ("excluded from the population", ", ".join(case.population_exclude) or "none"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def parameters_table(case: Case) -> pd.DataFrame:
    """The declared analysis parameters with their meaning."""
    meaning = {
        "sample_fps": "frames analysed per second of footage (empty: every frame)",
        "model": "face embedding model",
        "device": "compute device ('auto': GPU when present)",
        "detect_batch_size": "frames per detector call",
        "embed_batch_size": "face crops per embedding call",
        "min_face_size": "smallest face searched for, in pixels",
        "min_detection_prob": "detections below this probability are not faces",
        "top_k": "a face's score: mean of its k best similarities to the photos of a person",
        "operating_point_log10_lr": "log10 LR beyond which a face counts as the claimant "
        "in the screen time",
        "bootstrap_samples": "bootstrap replicates of the 95% intervals",
        "seed": "seed of every random choice (population split, bootstrap)",
        "max_photos_per_identity": "population photos used per identity",
    }
    params = case.analysis.as_dict()
    return pd.DataFrame(
        [(k, "every frame" if v is None else str(v), meaning.get(k, "")) for k, v in
         params.items()],
        columns=["parameter", "value", "meaning"],
    )


def intake_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run folder's ``intake.json`` (evidence hashes and video probes)."""
    return load_intake(Path(run_dir))


def evidence_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per evidence file: role, id, file name, size and SHA-256 at intake."""
    rows = [
        {
            "role": e["role"],
            "id": e["id"],
            "file": Path(e["path"]).name,
            "bytes": int(e.get("size_bytes") or 0),
            "SHA-256 at intake": e["sha256"],
        }
        for e in intake_record(run_dir)["evidence"]
    ]
    return pd.DataFrame(rows)


def evidence_folders(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The folders the evidence files lie in (the evidence table shows file names only)."""
    evidence = intake_record(run_dir)["evidence"]
    rows = [(e["role"], e["id"], str(Path(e["path"]).parent)) for e in evidence]
    return pd.DataFrame(rows, columns=["role", "id", "folder"])


def footage_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per episode with what the video's probe says."""
    rows = []
    for e in intake_record(run_dir)["evidence"]:
        if e["role"] != "footage":
            continue
        p = e.get("probe") or {}
        rows.append({
            "episode": e["id"],
            "codec": p.get("codec", "unreadable"),
            "width x height": f"{p.get('width', '?')} x {p.get('height', '?')}",
            "rotation": p.get("rotation"),
            "frame rate": p.get("frame_rate"),
            "VFR": bool(p.get("variable_frame_rate", False)),
            "duration s": p.get("duration_s"),
            "frames": p.get("frame_count"),
            "audio": bool(p.get("has_audio", False)),
            "problem": e.get("probe_error", ""),
        })
    return pd.DataFrame(rows)


def references_image_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The reference photos' format, mode and size from intake."""
    rows = []
    for e in intake_record(run_dir)["evidence"]:
        if e["role"] == "reference":
            img = e.get("image") or {}
            rows.append({
                "photo": e["id"],
                "format": img.get("format", ""),
                "mode": img.get("mode", ""),
                "width x height": f"{img.get('width', '?')} x {img.get('height', '?')}",
                "problem": img.get("error", ""),
            })
    return pd.DataFrame(rows)


def show_warnings(run_dir: str | os.PathLike[str], caption: str = "Recorded warnings"):
    """The recorded warnings as a table, or a sentence saying there were none."""
    table = warnings_table(run_dir)
    if table.empty:
        return show_markdown("*No warnings were recorded.*")
    return show_table(table, caption)


def warnings_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The run's recorded warnings (``warnings.csv``), without repeats, in recorded order."""
    path = Path(run_dir) / "warnings.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["source", "message"])
    df = pd.read_csv(path, keep_default_na=False)
    return df[["source", "message"]].drop_duplicates().reset_index(drop=True)


# --- faces


def read_faces(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """The faces table of one episode (without the embeddings)."""
    try:
        return analysis.read_faces(Path(run_dir), episode, embeddings=False)
    except FileNotFoundError as exc:
        raise ReportError(
            f"{analysis.faces_path(Path(run_dir), episode)} does not exist: "
            "the episode was not analysed"
        ) from exc


def faces_summary_table(case: Case, run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Per episode: frames analysed, faces, tracks, and the faces' median size, sharpness,
    pose and quality, with the episode's decoding status."""
    run_dir = Path(run_dir)
    statuses = _read_json(run_dir / "episode_status.json")
    rows = []
    for episode in case.episodes:
        status = statuses.get(episode.id, {})
        row: dict[str, Any] = {
            "episode": episode.id,
            "frames analysed": int(status.get("n_frames", 0)),
            "faces": int(status.get("n_faces", 0)),
            "status": status.get("status", "not analysed"),
        }
        faces_file = analysis.faces_path(Path(run_dir), episode.id)
        if faces_file.is_file():
            f = read_faces(run_dir, episode.id)
            row.update({
                "frames with a face": int(f["frame_index"].nunique()),
                "tracks": int(f["track_id"].nunique()),
                "median face px": float(f["face_px"].median()) if len(f) else float("nan"),
                "median sharpness": float(f["sharpness"].median()) if len(f) else float("nan"),
                "median |yaw| deg": float(f["yaw"].abs().median()) if len(f) else float("nan"),
                "median quality": float(f["quality"].median()) if len(f) else float("nan"),
            })
        rows.append(row)
    order = ["episode", "frames analysed", "frames with a face", "faces", "tracks",
             "median face px", "median sharpness", "median |yaw| deg", "median quality",
             "status"]
    return pd.DataFrame(rows).reindex(columns=order)


def track_summary_table(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """One row per track of an episode: time span, faces, median size and quality."""
    f = read_faces(run_dir, episode)
    if f.empty:
        return pd.DataFrame(columns=["track", "from s", "to s", "faces", "median face px",
                                     "median quality"])
    g = f.groupby("track_id", sort=True)
    return pd.DataFrame({
        "track": g.size().index.astype(int),
        "from s": g["time_s"].min().to_numpy(),
        "to s": g["time_s"].max().to_numpy(),
        "faces": g.size().to_numpy(),
        "median face px": g["face_px"].median().to_numpy(),
        "median quality": g["quality"].median().to_numpy(),
    })


def photos_table(run_dir: str | os.PathLike[str], which: str = "references") -> pd.DataFrame:
    """The embedded photos (``references`` or ``population``): status, faces, quality, warning."""
    path = Path(run_dir) / f"{which}.parquet"
    if not path.is_file():
        raise ReportError(f"{path} does not exist: the analysis did not embed the {which}")
    df = pd.read_parquet(path, columns=None)
    out = pd.DataFrame({
        "photo": [Path(p).name for p in df["path"]],
        "status": df["status"],
        "faces found": df["n_faces"].fillna(0).astype(int),
        "probability": df["prob"],
        "face px": df["face_px"],
        "quality": df["quality"],
        "warning": df["warning"].fillna(""),
    })
    if "identity" in df:
        out.insert(0, "identity", df["identity"])
    return out


def population_summary_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The population in numbers: identities, photos, usable photos, photos per identity."""
    pop = photos_table(run_dir, "population")
    ok = pop[pop["status"] == "ok"]
    per_identity = ok.groupby("identity").size()
    rows = [
        ("identities listed", pop["identity"].nunique()),
        ("photos listed", len(pop)),
        ("usable photos (one face found)", len(ok)),
        ("identities with a usable photo", ok["identity"].nunique()),
        ("usable photos per identity, median", f"{per_identity.median():g}" if len(ok) else 0),
        ("usable photos per identity, min", int(per_identity.min()) if len(ok) else 0),
        ("usable photos per identity, max", int(per_identity.max()) if len(ok) else 0),
    ]
    for status, n in pop.loc[pop["status"] != "ok", "status"].value_counts().items():
        rows.append((f"photos not used: {status}", int(n)))
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["quantity", "value"])


# --- models, calibration and validation


def models_table(model_name: str) -> pd.DataFrame:
    """The model weight files the analysis used: role, name, SHA-256 measured now, and whether
    it equals the pinned one."""
    rows = []
    for m in models_record(model_name):
        pinned = m.get("pinned_sha256")
        rows.append({
            "role": m["role"],
            "model": m["name"],
            "bytes": int(m.get("bytes") or 0),
            "SHA-256": m.get("sha256") or "missing",
            "matches pin": "no pin" if pinned is None else bool(pinned == m.get("sha256")),
        })
    return pd.DataFrame(rows)


def model_provenance_table(model_name: str) -> pd.DataFrame:
    """Licence, provenance and training data of the embedding model."""
    m = models_record(model_name)[0]
    rows = [
        ("model", m["name"]),
        ("provenance", m.get("provenance") or ""),
        ("source", m.get("provenance_url") or ""),
        ("training data", m.get("training_data") or ""),
        ("licence", m.get("licence") or ""),
        ("published LFW accuracy", f"{m['published_lfw_accuracy']:.4f}"
         if m.get("published_lfw_accuracy") else "not published"),
        ("face detector", "MTCNN of facenet-pytorch (pnet, rnet, onet weights; MIT)"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def calibration_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run folder's ``calibration.json``."""
    return _read_json(Path(run_dir) / "calibration.json")


def calibration_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """How the likelihood ratios were calibrated: split, data sizes, calibrator, bounds."""
    c = calibration_record(run_dir)
    cal = c.get("calibrator") or {}
    rule = c.get("score_rule") or {}
    split = c.get("split") or {}
    params = cal.get("parameters") or {}
    rows = [
        ("score of a face", f"{rule.get('similarity', '')}; {rule.get('set_score', '')}"),
        ("claimant reference photos used", c.get("n_reference_photos")),
        ("population identities (usable)", c.get("n_population_identities")),
        ("population photos (usable)", c.get("n_population_photos")),
        ("identities in the calibration half", len(split.get("calibration", []))),
        ("identities in the validation half", len(split.get("validation", []))),
        ("same-source scores (calibration)", cal.get("n_same_source")),
        ("different-source scores (calibration)", cal.get("n_different_source")),
        ("calibrator", f"{cal.get('calibrator', 'none')} ({cal.get('library', '')})"),
    ]
    rows += [(f"  {k.replace('_', ' ')}", v) for k, v in params.items()]
    rows += [
        ("bounds", cal.get("bounder", "")),
        ("lowest reportable log10 LR", cal.get("lower_log10_lr")),
        ("highest reportable log10 LR", cal.get("upper_log10_lr")),
        ("operating point (log10 LR)", c.get("operating_point_log10_lr")),
        ("seed", c.get("seed")),
    ]
    return pd.DataFrame(
        [(k, _mark_numeric(v, 3) if v is not None else "–") for k, v in rows],
        columns=["item", "value"],
    )


def validation_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Validation of the calibrated LRs on the held-out half of the population."""
    v = calibration_record(run_dir).get("validation")
    if not v:
        return pd.DataFrame({"metric": ["validation"], "value": ["not possible (see warnings)"],
                             "meaning": [""]})
    meaning = {
        "n_identities": "identities in the validation half (none used for calibration)",
        "n_same_source": "same-source comparisons (H1 true)",
        "n_different_source": "different-source comparisons (H2 true)",
        "eer": "equal error rate of the scores",
        "cllr": "log-likelihood-ratio cost of the LRs (0 perfect, 1 uninformative)",
        "cllr_min": "Cllr after optimal calibration (discrimination loss)",
        "cllr_cal": "Cllr - Cllr_min (calibration loss)",
        "misleading_same_source": "share of same-source comparisons with LR < 1",
        "misleading_different_source": "share of different-source comparisons with LR > 1",
        "share_at_bounds": "share of LRs at the lowest or highest reportable value",
        "min_log10_lr": "lowest log10 LR",
        "max_log10_lr": "highest log10 LR",
    }
    label = {"n_identities": "identities", "n_same_source": "same-source comparisons",
             "n_different_source": "different-source comparisons", "eer": "EER",
             "cllr": "Cllr", "cllr_min": "Cllr_min", "cllr_cal": "Cllr_cal",
             "misleading_same_source": "misleading, same source",
             "misleading_different_source": "misleading, different source",
             "share_at_bounds": "share at the bounds", "min_log10_lr": "lowest log10 LR",
             "max_log10_lr": "highest log10 LR"}
    rows = [(k, v[k], meaning.get(k, "")) for k in meaning if k in v]
    rows += [(k, val, "") for k, val in v.items() if k not in meaning]
    return pd.DataFrame(
        [(label.get(k, k.replace("_", " ")), _mark_numeric(val, 4), m) for k, val, m in rows],
        columns=["metric", "value", "meaning"],
    )


# --- results


def episodes_results(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``episodes.csv`` as written by the analysis (the contract's columns)."""
    return _read_csv(Path(run_dir) / "episodes.csv", dtype={"episode": str})


def episodes_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-episode results for the report: faces and tracks, screen time, the claimant's
    share with its 95% interval, the strongest evidence with its 95% interval, the typical
    face, the lineup rank and the verbal equivalent of the strongest LR."""
    e = episodes_results(run_dir)

    def with_interval(value: Any, lo: Any, hi: Any, fmt: str) -> str:
        if pd.isna(value):
            return "–"
        text = format(value, fmt)
        if pd.isna(lo) or pd.isna(hi):
            return text
        # No-break spaces: an interval is read as one item and must not wrap.
        return f"{text}\u00a0[{format(lo, fmt)},\u00a0{format(hi, fmt)}]"

    rows = []
    for r in e.itertuples(index=False):
        rows.append({
            "episode": r.episode,
            "faces (tracks)": f"{r.n_faces} ({r.n_tracks})",
            "claimant s / face s": "–" if pd.isna(r.claimant_seconds)
            else f"{r.claimant_seconds:.1f}\u00a0/\u00a0{r.face_seconds:.1f}",
            "claimant share [95% CI]": with_interval(
                r.claimant_share, r.claimant_share_lo, r.claimant_share_hi, ".2f"),
            "max log10 LR [95% CI]": with_interval(
                r.max_log10_lr, r.max_log10_lr_lo, r.max_log10_lr_hi, "+.2f")
            if r.n_faces else "–",
            "median log10 LR": _fmt_llr(r.median_log10_lr) if r.n_faces else "–",
            "lineup rank": f"{r.best_track_lineup_rank}\u00a0of\u00a0{r.lineup_n}"
            if r.best_track_lineup_rank else "–",
            "strongest evidence": verbal_equivalent(r.max_log10_lr) if r.n_faces else "no face",
        })
    return pd.DataFrame(rows)


def tracks_table(run_dir: str | os.PathLike[str], *, top: int | None = None) -> pd.DataFrame:
    """``tracks.csv`` for the report, strongest tracks first (``top``: keep that many)."""
    t = _read_csv(Path(run_dir) / "tracks.csv", dtype={"episode": str})
    t = t.sort_values(["log10_lr", "episode", "track_id"], ascending=[False, True, True],
                      kind="stable")
    if top is not None:
        t = t.head(top)
    return pd.DataFrame({
        "episode": t["episode"],
        "track": t["track_id"],
        "from s": t["start_s"],
        "to s": t["end_s"],
        "faces": t["n_faces"],
        "mean quality": t["mean_quality"],
        "score": t["score"],
        "log10 LR": t["log10_lr"],
        "lineup rank": [f"{r} of {n}" for r, n in zip(t["lineup_rank"], t["lineup_n"],
                                                       strict=True)],
    }).reset_index(drop=True)


def timeline(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """``timeline/<episode>.csv``: one row per face (time_s, track_id, log10_lr, score)."""
    return _read_csv(Path(run_dir) / "timeline" / f"{episode}.csv")


def _fmt_llr(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.2f}"


def findings_markdown(case: Case, run_dir: str | os.PathLike[str]) -> str:
    """The findings in sentences, from ``episodes.csv``: which episodes support H1, then one
    bullet per episode with its strongest evidence, screen time and lineup rank."""
    e = episodes_results(run_dir)
    cal = calibration_record(run_dir).get("calibrator") or {}
    bounds = [cal.get("lower_log10_lr"), cal.get("upper_log10_lr")]
    supports_h1 = e.loc[e["max_log10_lr"] > case.analysis.operating_point_log10_lr, "episode"]
    if len(supports_h1):
        lead = (
            f"In {len(supports_h1)} of {len(e)} episodes ({', '.join(supports_h1)}) the strongest "
            f"face track gives a log10 LR above the operating point "
            f"({case.analysis.operating_point_log10_lr:+g}), i.e. the findings support H1; "
            "in the others they do not."
        )
    else:
        lead = (
            f"In none of the {len(e)} episodes does any face track give a log10 LR above the "
            f"operating point ({case.analysis.operating_point_log10_lr:+g})."
        )
    lines = [lead, ""]
    for row in e.itertuples(index=False):
        if row.n_faces == 0:
            lines.append(f"- **{row.episode}**: no face in the analysed frames; no evidence "
                         "either way.")
            continue
        if pd.isna(row.max_log10_lr):
            lines.append(f"- **{row.episode}**: {row.n_faces} faces; no likelihood ratio "
                         f"({row.warning}).")
            continue
        lr = 10 ** row.max_log10_lr
        lr_text = f"{lr:,.0f}" if lr >= 10 else (f"{lr:.2f}" if lr >= 0.1 else f"1/{1 / lr:,.0f}")
        details = [f"LR about {lr_text}"]
        if any(b is not None and np.isclose(row.max_log10_lr, b) for b in bounds):
            details.append("at the bound of the calibration")
        if not (np.isclose(row.max_log10_lr_lo, row.max_log10_lr)
                and np.isclose(row.max_log10_lr_hi, row.max_log10_lr)):
            details.append(f"95% interval {_fmt_llr(row.max_log10_lr_lo)} to "
                           f"{_fmt_llr(row.max_log10_lr_hi)}")
        lines.append(
            f"- **{row.episode}**: strongest track log10 LR **{_fmt_llr(row.max_log10_lr)}** "
            f"({'; '.join(details)}), {verbal_equivalent(row.max_log10_lr)}; claimant on "
            f"screen {row.claimant_seconds:.1f} s of {row.face_seconds:.1f} s with faces; "
            f"lineup rank {row.best_track_lineup_rank} of {row.lineup_n}."
        )
    return "\n".join(lines)


def question_markdown(case: Case) -> str:
    """The question put to the expert, with the case's names filled in."""
    episodes = ", ".join(e.id for e in case.episodes)
    return (
        f"Is **{case.claimant_name}** (the claimant) rendered recognizably in the faces shown "
        f"in the {len(case.episodes)} episodes of the footage ({episodes}), and for how long? "
        "For each face in the footage the findings are evaluated under two propositions:\n\n"
        f"- **H1**: the questioned face is rendered to be recognizable as {case.claimant_name};\n"
        f"- **H2**: the questioned face depicts another person of the relevant population.\n"
    )


def title_markdown(case: Case, run_dir: str | os.PathLike[str]) -> str:
    """The report's title block: title, case id, claimant, dates."""
    intake = intake_record(run_dir)
    taken_in = str(intake.get("intake_time_utc", "?")).replace("T", " ").replace("+00:00", "")
    run = Path(run_dir).resolve()
    folder = f" · report {run.parent.name}" if run.name == ANALYSIS_DIR else ""
    return (
        f"# Expert report: {case.title}\n\n"
        f"Case **{case.case_id}**{folder} · claimant **{case.claimant_name}** · "
        f"{len(case.episodes)} episodes · evidence taken in {taken_in} UTC"
    )


# --- reproducibility


def reproducibility_record(
    case: Case, run_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """The inputs record of the report folder that holds ``run_dir`` (``inputs.json``, written
    by build_report before the notebooks run), else one computed now."""
    path = Path(run_dir).resolve().parent / INPUTS_FILE
    if Path(run_dir).resolve().name == ANALYSIS_DIR and path.is_file():
        return json.loads(path.read_text("utf-8"))
    return collect_inputs(case)


def environment_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """Python, platform, git commit and the key packages' versions of an inputs record."""
    env = record["environment"]
    git = record["git"]
    commit = git.get("commit") or f"none ({git.get('note', '')})"
    rows = [
        ("likeness git commit", commit),
        ("uncommitted changes", {True: "yes", False: "no", None: "unknown"}[git.get("dirty")]),
        ("python", env["python"]),
        ("platform", env["platform"]),
        ("requirements.lock SHA-256", env.get("requirements_lock_sha256") or "none"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def packages_table(record: Mapping[str, Any], *, per_row: int = 3) -> pd.DataFrame:
    """The key packages' versions, ``per_row`` package/version pairs a row (compact)."""
    items = [(n, v or "not installed") for n, v in record["environment"]["packages"].items()]
    rows = []
    for i in range(0, len(items), per_row):
        row: dict[str, str] = {}
        for j in range(per_row):
            name, version = items[i + j] if i + j < len(items) else ("", "")
            row[f"package{' ' * j}"] = name
            row[f"version{' ' * j}"] = version
        rows.append(row)
    return pd.DataFrame(rows)


def inputs_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """The hashed inputs of a report: case file, evidence, population listing, model weights."""
    rows = [("case file", Path(record["case"]["path"]).name, record["case"]["sha256"])]
    rows += [(e["role"], Path(e["path"]).name, e["sha256"]) for e in record["evidence"]]
    pop = record.get("population")
    if pop:
        rows.append((
            "population listing",
            f"{pop['photos']} photos of {pop['identities']} identities",
            pop["listing_sha256"],
        ))
    rows += [("model weights", m["name"], m.get("sha256") or "missing") for m in record["models"]]
    return pd.DataFrame(rows, columns=["input", "file", "SHA-256"])


def rerun_markdown(record: Mapping[str, Any]) -> str:
    """How to re-run and verify this report."""
    command = record.get("command") or (
        f"likeness report {record['case']['path']} --out reports/"
    )
    return (
        "To re-run the whole analysis and this report from the evidence (same parameters, same "
        "numbers):\n\n"
        f"```\n{command}\n```\n\n"
        "To check that the evidence, the model weights and every file of a report folder are "
        "unchanged since it was written (SHA-256 against its `manifest.json`):\n\n"
        "```\nlikeness verify REPORT_FOLDER\n```\n"
    )


def figure_grid_html(
    paths: Iterable[Path], labels: Iterable[str], caption: str = "", *, columns: int = 1,
    width_percent: int = 85,
) -> str:
    """PNG figures in a grid of ``columns`` a row (embedded as data URIs) with one caption;
    each image takes ``width_percent`` of its cell (wide figures stay legible in print)."""
    import base64

    cells = []
    cell_width = 100 // columns - (1 if columns > 1 else 0)
    for path, label in zip(paths, labels, strict=True):
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        cells.append(
            f'<div class="grid-cell" style="width: {cell_width}%">'
            f'<img style="width: {width_percent}%" src="data:image/png;base64,{data}" '
            f'alt="{html.escape(label)}"></div>'
        )
    caption_html = f'<p class="figure-caption">{html.escape(caption)}</p>' if caption else ""
    return f'<div class="figure-grid">{"".join(cells)}</div>{caption_html}'


def show_timelines(case: Case, run_dir: str | os.PathLike[str], caption: str = ""):
    """The timeline figures of every episode in broadcast order, under one caption."""
    from IPython.display import HTML

    paths = [figure_path(run_dir, f"timeline_{e.id}") for e in case.episodes]
    caption = caption or (
        "Timelines in broadcast order: the log10 LR of each analysed face over the episode's "
        "time, one line and marker style per track; the dashed line is the operating point."
    )
    return HTML(figure_grid_html(paths, [e.id for e in case.episodes], caption))


def show_episode_tracks(case: Case, run_dir: str | os.PathLike[str]) -> None:
    """Display the tracks of every episode (time span, faces, size, quality)."""
    from IPython.display import display

    for episode in case.episodes:
        display(show_table(track_summary_table(run_dir, episode.id),
                           f"Tracks of episode {episode.id}", digits={"from s": 1, "to s": 1}))
