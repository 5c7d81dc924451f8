"""The report's text computed from the results: title, question, findings, how to re-run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness.case import Case
from likeness.report.layout import ANALYSIS_DIR
from likeness.report.scale import verbal_equivalent
from likeness.report.views_evidence import calibration_record, intake_record
from likeness.report.views_results import episodes_results, format_log10_lr


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
            details.append(f"95% interval {format_log10_lr(row.max_log10_lr_lo)} to "
                           f"{format_log10_lr(row.max_log10_lr_hi)}")
        lines.append(
            f"- **{row.episode}**: strongest track log10 LR "
            f"**{format_log10_lr(row.max_log10_lr)}** "
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


