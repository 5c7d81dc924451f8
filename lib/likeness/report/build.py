"""Building a report folder: analyse, draw the figures, run the notebooks with papermill,
render HTML and PDF, copy the results, seal with the manifest."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from likeness import processing_log
from likeness.case import Case, load_case, override_analysis
from likeness.case_yaml import CASE_ID_PATTERN
from likeness.errors import LikenessError, ReportError, RunFolderIntegrityError
from likeness.files import sha256_file, write_json_atomic
from likeness.report.layout import (
    ANALYSIS_DIR,
    FAILED_FILE,
    FIGURES_DIR,
    INPUTS_FILE,
    KERNEL_NAME,
    MANIFEST_FILE,
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    REPORT_NOTEBOOK,
    RESULT_TABLE_DIRS,
    RESULT_TABLES,
    RUNNING_FILE,
    TABLES_DIR,
    notebooks_root,
)
from likeness.report.manifest import (
    collect_inputs,
    default_run_id,
    finish_manifest,
    kernel_record,
    notebook_parameters,
    notebooks_record,
    utc_now,
)
from likeness.report.render import export_html, render_pdf

# Notebooks run at a time. Each runs in its own kernel process; two fill the 2 cores of the
# machine the demo is timed on (the five took 23.8 s one by one, the report alone 13.7 s).
NOTEBOOK_WORKERS = 2


def rerun_command(case: Case, out_root: Path, run_id: str, overrides: Mapping[str, Any]) -> str:
    """The shell command that re-runs this report into the same folder."""
    sets = "".join(f" --set {k}={json.dumps(v)}" for k, v in sorted(overrides.items()))
    return f"likeness report {case.case_file} --out {out_root} --run-id {run_id}{sets}"


def _check_previous_analysis(report_dir: Path) -> None:
    """Refuse to rebuild a complete report whose analysis files changed since its manifest.

    The analysis folder's own record (``outputs.json``) catches an edited intermediate
    result, but an edit that also rewrites that record would pass it; the manifest of the
    earlier complete build is a second, independent record, so a rebuild with the same run id
    can never bless an edit."""
    manifest_path = report_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # an unreadable manifest protects nothing; the analysis' own record still does
    if manifest.get("status") != "complete":
        return
    prefix = f"{ANALYSIS_DIR}/"
    for rel, recorded in sorted((manifest.get("outputs") or {}).items()):
        if not rel.startswith(prefix) or rel.endswith("processing_log.jsonl"):
            continue
        path = report_dir / rel
        if not path.is_file() or sha256_file(path) != recorded.get("sha256"):
            message = (
                f"{path}: changed since it was written (the complete report of this run id "
                "records another hash for it in manifest.json, or the file is gone); restore "
                "the file or build the report under a new --run-id"
            )
            # The folder no longer holds what its manifest vouches for: it stops being complete.
            manifest.update(status="failed", error=message)
            write_json_atomic(manifest_path, manifest, sort_keys=False)
            (report_dir / FAILED_FILE).write_text(f"{utc_now()}\n{message}\n", "utf-8")
            raise RunFolderIntegrityError(message)


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
    survey_dir: str | os.PathLike[str] | None = None,
    survey_results_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Analyse a case and write its expert report folder; return the folder.

    Steps: (a) ``analysis.analyze_case`` into ``<folder>/analysis`` (resumable), (b) the
    notebooks of ``NOTEBOOKS`` executed with papermill on the ``likeness`` kernel, two at a
    time (:func:`execute_notebooks`), into ``<folder>/notebooks``, (c) ``report.html`` from
    expert_report.ipynb with code hidden, (d) ``report.pdf`` from that HTML with WeasyPrint,
    (e) the result tables and figures copied to ``tables/`` and ``figures/``, (f)
    ``manifest.json``.

    ``overrides`` replaces analysis parameters of the case (names as in ``case.yaml``'s
    ``analysis`` section, e.g. ``{"sample_fps": 2, "seed": 1}``). ``notebooks_dir`` runs a
    lab's own copies of the notebooks (same names) instead of the project's ``notebooks/``;
    their SHA-256 are recorded in the manifest either way. ``survey_dir`` (a folder made by
    ``likeness survey design`` and analysed by ``likeness survey analyze``) adds the survey
    section, its files hashed into the manifest under ``survey``.

    On any error the folder is marked failed (``FAILED`` holds the error, manifest status
    'failed') and ReportError is raised; a failing notebook cell's error names the notebook,
    the cell's line and the exception.
    """
    started = time.monotonic()
    started_utc = utc_now()
    overrides = dict(overrides or {})
    case = override_analysis(load_case(case_path), overrides)
    kernel = kernel_record()
    source_dir = Path(notebooks_dir).resolve() if notebooks_dir else notebooks_root()
    out_root = Path(out_root).expanduser().resolve()
    run_id = run_id or default_run_id(case)
    if not CASE_ID_PATTERN.match(run_id):
        raise ReportError(f"run id '{run_id}' may hold only letters, digits, - and _")
    report_dir = out_root / case.case_id / run_id
    report_dir.mkdir(parents=True, exist_ok=True)
    _check_previous_analysis(report_dir)
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
    analysis_dir = report_dir / ANALYSIS_DIR
    logged = processing_log.log_start(
        analysis_dir, "report",
        {"run_id": run_id, "out_root": str(out_root), "overrides": overrides,
         "notebooks": str(source_dir), **case.analysis.as_dict()},
    )
    try:
        tic = time.monotonic()
        inputs = collect_inputs(case, command=rerun_command(case, out_root, run_id, overrides))
        inputs["notebooks"] = notebooks_record(source_dir)
        write_json_atomic(report_dir / INPUTS_FILE, inputs, sort_keys=False)
        manifest["inputs"] = inputs
        durations["hash_inputs"] = time.monotonic() - tic

        tic = time.monotonic()
        from likeness.analysis import analyze_case

        analyze_case(case, analysis_dir, progress=progress)
        durations["analysis"] = time.monotonic() - tic

        tic = time.monotonic()
        write_figures(case, analysis_dir)
        durations["figures"] = time.monotonic() - tic

        parameters = notebook_parameters(case, analysis_dir)
        if survey_dir:
            from likeness.survey.report_section import survey_files

            results = survey_results_dir or Path(survey_dir) / "results"
            parameters.update(survey_dir=str(Path(survey_dir).resolve()),
                              survey_results_dir=str(Path(results).resolve()))
            manifest["survey"] = survey_files(survey_dir, results)
        manifest["notebook_parameters"] = parameters
        executed: dict[str, Path] = {}
        for name, (path, seconds) in execute_notebooks(
            NOTEBOOKS, report_dir / NOTEBOOKS_DIR, parameters, source_dir=source_dir,
            progress=progress,
        ).items():
            executed[name] = path
            durations[f"notebook_{name}"] = seconds

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
        processing_log.log_end(analysis_dir, "report", logged, status="failed", results=[],
                               message=message)
        finish_manifest(report_dir, manifest, started, durations)
        (report_dir / FAILED_FILE).write_text(f"{utc_now()}\n{message}\n", encoding="utf-8")
        (report_dir / RUNNING_FILE).unlink(missing_ok=True)
        if isinstance(exc, LikenessError) or not isinstance(exc, Exception):
            raise
        # An unexpected error (a bug) still fails the report as a ReportError, with its cause.
        raise ReportError(f"report {report_dir} failed: {message}") from exc
    manifest["status"] = "complete"
    processing_log.log_end(
        analysis_dir, "report", logged,
        results=[report_dir / name for name in ("report.pdf", "report.html", INPUTS_FILE)],
    )
    finish_manifest(report_dir, manifest, started, durations)
    (report_dir / RUNNING_FILE).unlink(missing_ok=True)
    return report_dir


def write_figures(case: Case, analysis_dir: Path) -> list[Path]:
    """Draw the run's figures into ``analysis_dir/figures`` (likeness.figures; deterministic,
    so drawing them again on a resumed run gives the same files).

    matplotlib draws on one core: a second process draws every other episode's stills
    meanwhile (the demo's figures took 26 s in one process). It is spawned, not forked: the
    analysis may have left inference threads behind in this process.
    """
    from likeness import figures, stills

    ids = [episode.id for episode in case.episodes]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        drawn_elsewhere = pool.submit(stills.write_episode_stills, case, analysis_dir,
                                      episodes=ids[::2])
        drawn = figures.write_run_figures(case, analysis_dir)
        drawn_here = stills.write_episode_stills(case, analysis_dir, episodes=ids[1::2])
        drawn_stills = [*drawn_here, *drawn_elsewhere.result()]
    # In the order of one process: the run's figures, then the stills episode by episode.
    return drawn + sorted(drawn_stills, key=lambda p: (ids.index(p.stem[len("stills_"):]),
                                                       p.suffix))


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


def execute_notebooks(
    names: tuple[str, ...],
    out_dir: Path,
    parameters: Mapping[str, Any],
    *,
    source_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, tuple[Path, float]]:
    """:func:`execute_notebook` for each of ``names``, ``workers`` at a time; per name, in the
    order of ``names``, the executed notebook and the seconds it took. ``workers`` defaults to
    :data:`NOTEBOOK_WORKERS`.

    The notebooks read the analysis and its figures and write only their own executed copy, so
    they may run side by side; each runs in its own kernel process, and a thread only waits on
    it. The report notebook, the longest, starts first. Every notebook runs to its end; then the
    first failure in the order of ``names`` is raised.
    """
    workers = max(1, workers or NOTEBOOK_WORKERS)

    def run(name: str) -> tuple[Path, float]:
        tic = time.monotonic()
        path = execute_notebook(name, out_dir, parameters, source_dir=source_dir,
                                progress=progress and workers == 1)
        return path, time.monotonic() - tic

    order = sorted(names, key=lambda name: name != REPORT_NOTEBOOK)
    with ThreadPoolExecutor(workers, thread_name_prefix="likeness-notebook") as pool:
        futures = {name: pool.submit(run, name) for name in order}
        wait(futures.values())
    return {name: futures[name].result() for name in names}


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


