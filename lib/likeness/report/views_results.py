"""The tables and figure groups the notebooks display about the results and reproducibility."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.case import Case
from likeness.report.layout import ANALYSIS_DIR, INPUTS_FILE
from likeness.report.manifest import collect_inputs
from likeness.report.render import figure_grid_html, figure_path, show_table
from likeness.report.scale import verbal_equivalent
from likeness.report.views_evidence import read_csv, track_summary_table


def episodes_results(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``episodes.csv`` as written by the analysis (the contract's columns)."""
    return read_csv(Path(run_dir) / "episodes.csv", dtype={"episode": str})


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
            "median log10 LR": format_log10_lr(r.median_log10_lr) if r.n_faces else "–",
            "lineup rank": f"{r.best_track_lineup_rank}\u00a0of\u00a0{r.lineup_n}"
            if r.best_track_lineup_rank else "–",
            "strongest evidence": verbal_equivalent(r.max_log10_lr) if r.n_faces else "no face",
        })
    return pd.DataFrame(rows)


def tracks_table(run_dir: str | os.PathLike[str], *, top: int | None = None) -> pd.DataFrame:
    """``tracks.csv`` for the report, strongest tracks first (``top``: keep that many)."""
    t = read_csv(Path(run_dir) / "tracks.csv", dtype={"episode": str})
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


