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
``build`` (papermill build), ``columns`` (issue 7's optional result columns, in one place),
``views_evidence``, ``views_results``, ``views_faces``, ``views_provenance`` and
``views_population`` (the tables and figures the notebooks display) and ``prose`` (the
text). The views, the prose and the render helpers are what the notebooks call: each returns a
table (DataFrame), a displayable HTML/Markdown/Image object or a text, so that notebook cells
hold nothing but calls and display. Every public name is importable from ``likeness.report``.
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
    MTCNN_PINNED_SHA256,
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
    lr_words,
    models_markdown,
    question_markdown,
    rerun_markdown,
    title_markdown,
)
from likeness.report.render import (
    CONTENTS_PLACEHOLDER,
    PRINT_CSS,
    contents_html,
    export_html,
    figure_grid_html,
    figure_path,
    format_value,
    pdf_page_count,
    render_pdf,
    render_pdf_pages,
    show_contents,
    show_figure,
    show_markdown,
    show_table,
    table_html,
)
from likeness.report.scale import (
    NEUTRAL_LOG10_LR,
    NO_BAND,
    STRENGTH_BANDS,
    VERBAL_SCALE,
    band_counts,
    strength_band,
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
from likeness.report.views_faces import (
    personas_table,
    reference_scores_table,
    show_episode_stills,
    show_optional_tables,
    show_persona_links,
    stills_figure_path,
)
from likeness.report.views_population import (
    population_description,
    population_relevance_markdown,
    show_population_attributes,
)
from likeness.report.views_provenance import (
    declaration_markdown,
    examiner_table,
    footage_provenance_table,
    processing_log_table,
    questions_markdown,
    references_provenance_table,
)
from likeness.report.views_results import (
    SCREEN_TIME,
    STRONGEST_EVIDENCE,
    bounded_text,
    environment_table,
    episodes_results,
    episodes_table,
    format_log10_lr,
    inputs_table,
    interval_text,
    lr_bounds,
    packages_table,
    read_tracks,
    reproducibility_record,
    show_episode_tracks,
    show_timelines,
    timeline,
    tracks_table,
)

__all__ = [
    "ANALYSIS_DIR",
    "CONTENTS_PLACEHOLDER",
    "FAILED_FILE",
    "FIGURES_DIR",
    "INPUTS_FILE",
    "KERNEL_NAME",
    "MANIFEST_FILE",
    "MTCNN_PINNED_SHA256",
    "NEUTRAL_LOG10_LR",
    "NOTEBOOKS",
    "NOTEBOOKS_DIR",
    "NOTEBOOK_PARAMETERS",
    "NO_BAND",
    "PRINT_CSS",
    "REPORT_NOTEBOOK",
    "RESULT_TABLES",
    "RESULT_TABLE_DIRS",
    "RUNNING_FILE",
    "SCREEN_TIME",
    "STRENGTH_BANDS",
    "STRONGEST_EVIDENCE",
    "TABLES_DIR",
    "UNHASHED",
    "VERBAL_SCALE",
    "band_counts",
    "bounded_text",
    "build_report",
    "calibration_record",
    "calibration_table",
    "case_table",
    "collect_inputs",
    "contents_html",
    "copy_results",
    "declaration_markdown",
    "default_run_id",
    "environment_record",
    "environment_table",
    "episodes_results",
    "episodes_table",
    "evidence_folders",
    "evidence_table",
    "examiner_table",
    "execute_notebook",
    "export_html",
    "faces_summary_table",
    "figure_grid_html",
    "figure_path",
    "file_record",
    "findings_markdown",
    "finish_manifest",
    "footage_provenance_table",
    "footage_table",
    "format_log10_lr",
    "format_value",
    "git_record",
    "hash_outputs",
    "hash_outputs_listing",
    "inputs_table",
    "intake_record",
    "interval_text",
    "kernel_record",
    "lr_bounds",
    "lr_words",
    "model_provenance_table",
    "models_markdown",
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
    "personas_table",
    "photos_table",
    "population_description",
    "population_files",
    "population_record",
    "population_relevance_markdown",
    "population_summary_table",
    "processing_log_table",
    "question_markdown",
    "questions_markdown",
    "read_csv",
    "read_faces",
    "read_json",
    "read_tracks",
    "reference_scores_table",
    "references_image_table",
    "references_provenance_table",
    "render_pdf",
    "render_pdf_pages",
    "reproducibility_record",
    "rerun_command",
    "rerun_markdown",
    "sha256_file",
    "show_contents",
    "show_episode_stills",
    "show_episode_tracks",
    "show_figure",
    "show_markdown",
    "show_optional_tables",
    "show_persona_links",
    "show_population_attributes",
    "show_table",
    "show_timelines",
    "show_warnings",
    "stills_figure_path",
    "strength_band",
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
