"""The report folder's layout: the notebooks it runs, its files and sub-folders, the kernel."""

from __future__ import annotations

from pathlib import Path

from likeness.case import project_root

# The notebooks, in the order they run. Each has a cell tagged 'parameters'.
NOTEBOOKS = ("intake", "faces", "similarity_calibration", "recognizability", "expert_report")
REPORT_NOTEBOOK = "expert_report"
NOTEBOOK_PARAMETERS = ("case_path", "run_dir", "model", "sample_fps", "operating_point", "seed")
# The expert report's own further parameters: a survey of public recognition (issue 11).
REPORT_PARAMETERS = ("survey_dir", "survey_results_dir")
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
RESULT_TABLES = ("episodes.csv", "tracks.csv", "calibration.json", "warnings.csv",
                 # issue 7's tables, copied when the analysis wrote them
                 "personas.csv", "sensitivity.csv", "calibrators.csv", "models.csv")
RESULT_TABLE_DIRS = ("timeline",)
# Files that describe a report folder rather than belong to it: never hashed as outputs.
UNHASHED = (MANIFEST_FILE, RUNNING_FILE, FAILED_FILE)


def notebooks_root() -> Path:
    """The folder holding the source notebooks (``<project>/notebooks``)."""
    return project_root() / "notebooks"


