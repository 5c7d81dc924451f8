"""The tables and figure groups the notebooks display about the results and reproducibility."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness.case import Case
from likeness.report import columns
from likeness.report.layout import ANALYSIS_DIR, INPUTS_FILE
from likeness.report.manifest import collect_inputs
from likeness.report.render import figure_grid_html, figure_path, show_table
from likeness.report.scale import verbal_equivalent
from likeness.report.views_evidence import calibration_record, read_csv, track_summary_table


def episodes_results(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``episodes.csv`` as written by the analysis (the contract's columns)."""
    return read_csv(Path(run_dir) / "episodes.csv", dtype={"episode": str})


# The one name of each concept, used alike in the summary, the tables and the figures.
STRONGEST_EVIDENCE = "strongest evidence"  # the log10 LR of the episode's strongest track
SCREEN_TIME = "claimant screen time"


def interval_text(lo: Any, hi: Any, fmt: str = "+.2f", *, value: Any = None) -> str:
    """`` [lo, hi]`` with no-break spaces, or nothing when either end is missing or both ends
    equal ``value`` (a value held at a bound: the bound says it)."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    if value is not None and pd.notna(value) and np.isclose(lo, value) and np.isclose(hi, value):
        return ""
    return f"\u00a0[{format(lo, fmt)},\u00a0{format(hi, fmt)}]"


def lr_bounds(run_dir: str | os.PathLike[str]) -> tuple[float | None, float | None]:
    """The lowest and highest reportable log10 LR of the run's calibrator (None: unbounded)."""
    cal = calibration_record(run_dir).get("calibrator") or {}
    return cal.get("lower_log10_lr"), cal.get("upper_log10_lr")


def bounded_text(value: float, bounds: tuple[float | None, float | None]) -> str:
    """A log10 LR as text, written as a bound ("≥ +3.20") when it sits at the calibration's
    highest reportable value, ("≤ -3.10") at its lowest: the true value may lie beyond."""
    lo, hi = bounds
    if value is None or pd.isna(value):
        return "–"
    if hi is not None and np.isclose(value, hi):
        return f"\u2265\u00a0{value:+.2f}"
    if lo is not None and np.isclose(value, lo):
        return f"\u2264\u00a0{value:+.2f}"
    return f"{value:+.2f}"


def episodes_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-episode results: the strongest evidence (the strongest track's log10 LR) with its
    95% interval and verbal equivalent, the track that carries it, the lineup rank, the
    claimant's screen time, and issue 7's columns when the analysis wrote them."""
    e = episodes_results(run_dir)
    bounds = lr_bounds(run_dir)
    rows = []
    for r in e.to_dict("records"):
        has_lr = bool(r["n_faces"]) and pd.notna(r["max_log10_lr"])
        strongest = "–"
        if has_lr:
            strongest = bounded_text(r["max_log10_lr"], bounds) + interval_text(
                r["max_log10_lr_lo"], r["max_log10_lr_hi"], value=r["max_log10_lr"])
        row = {
            "episode": r["episode"],
            "faces (tracks)": f"{r['n_faces']} ({r['n_tracks']})",
            f"{STRONGEST_EVIDENCE}, log10 LR [95% CI]": strongest,
            "verbal equivalent": verbal_equivalent(r["max_log10_lr"]) if has_lr
            else ("no face" if not r["n_faces"] else "no likelihood ratio"),
            "strongest track": str(int(r["best_track_id"])) if has_lr else "–",
            "lineup rank": f"{r['best_track_lineup_rank']}\u00a0of\u00a0{r['lineup_n']}"
            if r["best_track_lineup_rank"] else "–",
            f"{SCREEN_TIME} s / face s": "–" if pd.isna(r["claimant_seconds"])
            else f"{r['claimant_seconds']:.1f}\u00a0/\u00a0{r['face_seconds']:.1f}",
        }
        if columns.EPISODE_PERSONA in r:
            persona = r[columns.EPISODE_PERSONA]
            row["persona"] = persona if isinstance(persona, str) and persona else "–"
        for name in (columns.EPISODE_LINEUP_LR, columns.EPISODE_PERFORMER_LR):
            if name in r:
                row[columns.EPISODE_OPTIONAL[name]] = format_log10_lr(r[name])
        if columns.EPISODE_FACE_SECONDS in r:
            row[columns.EPISODE_OPTIONAL[columns.EPISODE_FACE_SECONDS]] = (
                "–" if pd.isna(r[columns.EPISODE_FACE_SECONDS])
                else f"{r[columns.EPISODE_FACE_SECONDS]:.1f}")
        rows.append(row)
    return pd.DataFrame(rows)


def read_tracks(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``tracks.csv``, strongest tracks first (ties: episode, then track id)."""
    t = read_csv(Path(run_dir) / "tracks.csv", dtype={"episode": str})
    return t.sort_values(["log10_lr", "episode", "track_id"], ascending=[False, True, True],
                         kind="stable").reset_index(drop=True)


def tracks_table(
    run_dir: str | os.PathLike[str], *, top: int | None = None, episode: str | None = None
) -> pd.DataFrame:
    """The per-track table, strongest tracks first (``top``: keep that many; ``episode``: one
    episode's tracks only). The track's log10 LR is the number every other section calls
    the track's evidence; issue 7's columns are shown when present."""
    t = read_tracks(run_dir)
    if episode is not None:
        t = t[t["episode"] == episode]
    if top is not None:
        t = t.head(top)
    bounds = lr_bounds(run_dir)
    lo_col, hi_col = columns.TRACK_LR_INTERVAL
    out = pd.DataFrame({
        "episode": t["episode"],
        "track": t["track_id"],
        "from s": t["start_s"],
        "to s": t["end_s"],
        "faces": t["n_faces"],
        "mean quality": t["mean_quality"],
        "score": t["score"],
        "log10 LR": [
            bounded_text(v, bounds) + interval_text(lo, hi, value=v)
            for v, lo, hi in zip(t["log10_lr"], t.get(lo_col, pd.Series(np.nan, t.index)),
                                 t.get(hi_col, pd.Series(np.nan, t.index)), strict=True)
        ],
        "verbal equivalent": [verbal_equivalent(v) for v in t["log10_lr"]],
        "lineup rank": [f"{r} of {n}" for r, n in zip(t["lineup_rank"], t["lineup_n"],
                                                       strict=True)],
    })
    for name, label in columns.TRACK_OPTIONAL.items():
        if name in t and name not in columns.TRACK_LR_INTERVAL:
            out[label] = t[name].fillna("") if name == columns.TRACK_PERSONA else t[name]
    return out.reset_index(drop=True)


def timeline(run_dir: str | os.PathLike[str], episode: str) -> pd.DataFrame:
    """``timeline/<episode>.csv``: one row per face (time_s, track_id, log10_lr, score)."""
    return read_csv(Path(run_dir) / "timeline" / f"{episode}.csv")


def format_log10_lr(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.2f}"


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


