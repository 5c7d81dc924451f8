"""The report's text computed from the results: title, question, findings, how to re-run."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import face_crop
from likeness.case import Case
from likeness.report import columns
from likeness.report.layout import ANALYSIS_DIR
from likeness.report.manifest import models_record
from likeness.report.scale import band_counts, verbal_equivalent
from likeness.report.views_evidence import intake_record
from likeness.report.views_results import (
    SCREEN_TIME,
    STRONGEST_EVIDENCE,
    bounded_text,
    episodes_results,
    format_log10_lr,
    lr_bounds,
    read_tracks,
)


def lr_words(log10_lr: float) -> str:
    """A log10 LR as a plain likelihood ratio: "about 220", "about 3.2", "about 1/40"."""
    lr = 10 ** float(log10_lr)
    if lr >= 10:
        return f"about {lr:,.0f}"
    if lr >= 0.1:
        return f"about {lr:.2f}"
    return f"about 1/{1 / lr:,.0f}"


def findings_markdown(case: Case, run_dir: str | os.PathLike[str]) -> str:
    """The findings as evaluative reporting, from ``episodes.csv`` and ``tracks.csv``.

    First the number of episodes in each strength band of the strongest evidence (no line
    between "supports" and "does not"), then one bullet per episode: the strongest evidence
    (its strongest track's log10 LR, the same number as in the tables and figures) with its
    interval and verbal equivalent, every other track whose LR exceeds 1, the lineup rank,
    and the claimant's screen time with the declared screen-time operating point."""
    e = episodes_results(run_dir)
    tracks = read_tracks(run_dir)
    bounds = lr_bounds(run_dir)
    counts = band_counts(e["max_log10_lr"].where(e["n_faces"] > 0), e["episode"])
    point = case.analysis.operating_point_log10_lr
    lines = [
        f"The {STRONGEST_EVIDENCE} of an episode is the log10 LR of its strongest face track. "
        f"Over the {len(e)} episodes it falls in these bands of the ENFSI verbal scale:",
        "",
    ]
    for band in counts.itertuples(index=False):
        which = f" ({band.which})" if band.episodes else ""
        words = f" — {band[1]}" if band[1] else ""
        lines.append(f"- **{band[0]}**{words}: {band.episodes} "
                     f"episode{'s' if band.episodes != 1 else ''}{which}")
    lines += [
        "",
        "Each likelihood ratio is reported with its strength; none is turned into a yes or a "
        "no. The episodes, one by one:",
        "",
    ]
    for r in e.to_dict("records"):
        episode = r["episode"]
        if r["n_faces"] == 0:
            lines.append(f"- **{episode}**: no face in the analysed frames; no evidence "
                         "either way.")
            continue
        if pd.isna(r["max_log10_lr"]):
            lines.append(f"- **{episode}**: {r['n_faces']} faces; no likelihood ratio "
                         f"({r['warning']}).")
            continue
        value = r["max_log10_lr"]
        details = [f"LR {lr_words(value)}"]
        if bounded_text(value, bounds).startswith(("\u2265", "\u2264")):
            details.append("at the bound of the calibration: at least this strong")
        if pd.notna(r["max_log10_lr_lo"]) and not (
            np.isclose(r["max_log10_lr_lo"], value) and np.isclose(r["max_log10_lr_hi"], value)
        ):
            details.append(f"95% interval {format_log10_lr(r['max_log10_lr_lo'])} to "
                           f"{format_log10_lr(r['max_log10_lr_hi'])}")
        persona = r.get(columns.EPISODE_PERSONA)
        persona_text = f", persona {persona}" if isinstance(persona, str) and persona else ""
        text = (
            f"- **{episode}**: {STRONGEST_EVIDENCE} log10 LR "
            f"**{bounded_text(value, bounds)}** ({'; '.join(details)}), "
            f"{verbal_equivalent(value)}, from track {int(r['best_track_id'])}{persona_text}; "
            f"lineup rank {r['best_track_lineup_rank']} of {r['lineup_n']}"
        )
        if pd.notna(r.get(columns.EPISODE_LINEUP_LR, np.nan)):
            text += f" (lineup log10 LR {format_log10_lr(r[columns.EPISODE_LINEUP_LR])})"
        others = tracks[(tracks["episode"] == episode) & (tracks["log10_lr"] > 0)
                        & (tracks["track_id"] != r["best_track_id"])]
        if len(others):
            listed = ", ".join(f"track {int(o.track_id)} {bounded_text(o.log10_lr, bounds)}"
                               for o in others.itertuples(index=False))
            text += f"; other tracks with LR above 1: {listed}"
        if pd.notna(r["claimant_seconds"]):
            text += (f"; {SCREEN_TIME} {r['claimant_seconds']:.1f} s of "
                     f"{r['face_seconds']:.1f} s with faces")
        lines.append(text + ".")
    # Issue 7 counts screen time per track and keeps the face-by-face count beside it.
    counted = ("the whole duration of each track whose log10 LR exceeds"
               if columns.EPISODE_FACE_SECONDS in e.columns
               else "the time with a face whose log10 LR exceeds")
    lines += [
        "",
        f"*{SCREEN_TIME.capitalize()}* counts {counted} the declared **screen-time operating "
        f"point** ({point:+g}, a parameter of the analysis, section 5). That parameter decides "
        "the screen time only; it decides nothing about the strength of the evidence.",
    ]
    return "\n".join(lines)


# What benchmarks/face_size.py measured: the evidence genuine LFW faces carry when shrunk to a
# given size (written by that benchmark; the report quotes it for the case's min_face_size).
FACE_SIZE_EVIDENCE = Path(__file__).resolve().parents[1] / "face_size_evidence.json"


def detection_scale_markdown(case: Case, evidence_file: Path = FACE_SIZE_EVIDENCE) -> str:
    """What the analysis cannot see: faces below the case's ``min_face_size``, and what a
    genuine face at that size carries on LFW (the measured size nearest to it)."""
    n = case.analysis.min_face_size
    text = (f"Faces smaller than {n} px (the side of the detector's box, the parameter "
            "min_face_size) are not detected and so not analysed: the findings say nothing "
            "about them.")
    measured = json.loads(Path(evidence_file).read_text("utf-8"))
    sizes = {int(k): v for k, v in measured["sizes"].items()}
    nearest = min(sizes, key=lambda s: (abs(s - n), s))
    m = sizes[nearest]
    at = f"At {n} px" if nearest == n else f"At {nearest} px (the measured size nearest {n} px)"
    return text + (
        f" {at}, a genuine face gives on LFW a median log10 LR of "
        f"{m['full_calibration_genuine_median_log10_lr']:+.2f} (10th percentile "
        f"{m['full_calibration_genuine_p10_log10_lr']:+.2f}) with the calibrator fitted on "
        f"full-size photos, as this analysis fits it, and {m['genuine_median_log10_lr']:+.2f} "
        f"(10th percentile {m['genuine_p10_log10_lr']:+.2f}) with one fitted on faces of that "
        f"size; the detector found {m['detection_rate']:.0%} of them "
        f"(benchmarks/face_size.py, model {measured['model']}"
        + ("" if measured["model"] == case.analysis.model
           else f", not this analysis's model {case.analysis.model}")
        + ("" if measured.get("crop_margin") == face_crop.CROP_MARGIN
           else f"; measured with crop margin {measured.get('crop_margin', 'unrecorded')}, not "
                f"this analysis's {face_crop.CROP_MARGIN}") + ")."
    )


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


def models_markdown(case: Case) -> str:
    """How the weight files are pinned, from the same record as the model table (so the text
    and the table cannot disagree)."""
    records = models_record(case.analysis.model)
    pinned = [m for m in records if m.get("pinned_sha256")]
    matching = [m for m in pinned if m["pinned_sha256"] == m.get("sha256")]
    unpinned = [m["name"] for m in records if not m.get("pinned_sha256")]
    text = (f"The analysis used {len(records)} weight files. {len(pinned)} of them are pinned by "
            f"SHA-256 (the face model in likeness's model registry, the face detector's MTCNN "
            f"files for the facenet-pytorch version of the lock file), and {len(matching)} "
            "of the pinned files match their pin on the files used.")
    if unpinned:
        text += f" Without a pin: {', '.join(unpinned)}; their measured SHA-256 is recorded."
    if len(matching) < len(pinned):
        text += " **A weight file differs from its pin: the results are not reproducible.**"
    return text


def title_markdown(case: Case, run_dir: str | os.PathLike[str]) -> str:
    """The report's title block: title, case id, claimant, dates."""
    intake = intake_record(run_dir)
    hashed = str(intake.get("intake_time_utc", "?")).replace("T", " ").replace("+00:00", "")
    run = Path(run_dir).resolve()
    folder = f" · report {run.parent.name}" if run.name == ANALYSIS_DIR else ""
    return (
        f"# Expert report: {case.title}\n\n"
        f"Case **{case.case_id}**{folder} · claimant **{case.claimant_name}** · "
        f"{len(case.episodes)} episodes · evidence hashed for this analysis on {hashed} UTC "
        "(when and where each file was obtained: section 4)"
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


