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

The package's modules, lowest layer first: ``layout`` (the folder's names), ``scale`` (the
ENFSI verbal scale), ``render`` (HTML, PDF), ``manifest`` (hashing, the manifest, verify),
``build`` (papermill build), ``views_evidence`` and ``views_results`` (the tables the notebooks
display) and ``prose`` (the text). The views, the prose and the render helpers are what the
notebooks call: each returns a table (DataFrame), a displayable HTML/Markdown/Image object or a
text, so that notebook cells hold nothing but calls and display. Every public name is importable
from ``likeness.report``.
"""

from likeness.files import sha256_file
from likeness.report.build import (
    build_report,
    copy_results,
    execute_notebook,
    rerun_command,
    write_figures,
)
from likeness.report.layout import (
    ANALYSIS_DIR,
    FAILED_FILE,
    FIGURES_DIR,
    INPUTS_FILE,
    KERNEL_NAME,
    MANIFEST_FILE,
    NOTEBOOK_PARAMETERS,
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    REPORT_NOTEBOOK,
    RESULT_TABLE_DIRS,
    RESULT_TABLES,
    RUNNING_FILE,
    TABLES_DIR,
    UNHASHED,
    notebooks_root,
)
from likeness.report.manifest import (
    collect_inputs,
    default_run_id,
    environment_record,
    file_record,
    finish_manifest,
    git_record,
    hash_outputs,
    hash_outputs_listing,
    kernel_record,
    models_record,
    mtcnn_weight_files,
    notebook_parameters,
    notebooks_record,
    parameters_hash,
    population_files,
    population_record,
    utc_now,
    verify_run,
)
from likeness.report.prose import (
    findings_markdown,
    question_markdown,
    rerun_markdown,
    title_markdown,
)
from likeness.report.render import (
    PRINT_CSS,
    export_html,
    figure_grid_html,
    figure_path,
    format_value,
    pdf_page_count,
    render_pdf,
    render_pdf_pages,
    show_figure,
    show_markdown,
    show_table,
    table_html,
)
from likeness.report.scale import (
    NEUTRAL_LOG10_LR,
    VERBAL_SCALE,
    verbal_equivalent,
    verbal_scale_table,
)
from likeness.report.views_evidence import (
    calibration_record,
    calibration_table,
    case_table,
    evidence_folders,
    evidence_table,
    faces_summary_table,
    footage_table,
    intake_record,
    model_provenance_table,
    models_table,
    open_run,
    parameters_table,
    photos_table,
    population_summary_table,
    read_csv,
    read_faces,
    read_json,
    references_image_table,
    show_warnings,
    track_summary_table,
    validation_table,
    warnings_table,
)
from likeness.report.views_results import (
    environment_table,
    episodes_results,
    episodes_table,
    format_log10_lr,
    inputs_table,
    packages_table,
    reproducibility_record,
    show_episode_tracks,
    show_timelines,
    timeline,
    tracks_table,
)

__all__ = [
    "ANALYSIS_DIR",
    "FAILED_FILE",
    "FIGURES_DIR",
    "INPUTS_FILE",
    "KERNEL_NAME",
    "MANIFEST_FILE",
    "NEUTRAL_LOG10_LR",
    "NOTEBOOKS",
    "NOTEBOOKS_DIR",
    "NOTEBOOK_PARAMETERS",
    "PRINT_CSS",
    "REPORT_NOTEBOOK",
    "RESULT_TABLES",
    "RESULT_TABLE_DIRS",
    "RUNNING_FILE",
    "TABLES_DIR",
    "UNHASHED",
    "VERBAL_SCALE",
    "build_report",
    "calibration_record",
    "calibration_table",
    "case_table",
    "collect_inputs",
    "copy_results",
    "default_run_id",
    "environment_record",
    "environment_table",
    "episodes_results",
    "episodes_table",
    "evidence_folders",
    "evidence_table",
    "execute_notebook",
    "export_html",
    "faces_summary_table",
    "figure_grid_html",
    "figure_path",
    "file_record",
    "findings_markdown",
    "finish_manifest",
    "footage_table",
    "format_log10_lr",
    "format_value",
    "git_record",
    "hash_outputs",
    "hash_outputs_listing",
    "inputs_table",
    "intake_record",
    "kernel_record",
    "model_provenance_table",
    "models_record",
    "models_table",
    "mtcnn_weight_files",
    "notebook_parameters",
    "notebooks_record",
    "notebooks_root",
    "open_run",
    "packages_table",
    "parameters_hash",
    "parameters_table",
    "pdf_page_count",
    "photos_table",
    "population_files",
    "population_record",
    "population_summary_table",
    "question_markdown",
    "read_csv",
    "read_faces",
    "read_json",
    "references_image_table",
    "render_pdf",
    "render_pdf_pages",
    "reproducibility_record",
    "rerun_command",
    "rerun_markdown",
    "sha256_file",
    "show_episode_tracks",
    "show_figure",
    "show_markdown",
    "show_table",
    "show_timelines",
    "show_warnings",
    "table_html",
    "timeline",
    "title_markdown",
    "track_summary_table",
    "tracks_table",
    "utc_now",
    "validation_table",
    "verbal_equivalent",
    "verbal_scale_table",
    "verify_run",
    "warnings_table",
    "write_figures",
]
