"""What the report shows of the questioned faces: the stills of each episode's strongest tracks
beside the references, every reference photo once with its own score against each episode's
strongest track, the personas linked across episodes, and issue 7's further tables when the
analysis wrote them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from likeness import faces_table
from likeness.case import Case
from likeness.report import columns
from likeness.report.render import figure_grid_html, show_markdown, show_table
from likeness.report.views_evidence import read_csv
from likeness.report.views_results import read_tracks


def stills_figure_path(run_dir: str | os.PathLike[str], episode: str) -> Path | None:
    """``figures/stills_<episode>.png``, or None when the episode has no face (no figure)."""
    path = Path(run_dir) / "figures" / f"stills_{episode}.png"
    return path if path.is_file() else None


def show_episode_stills(case: Case, run_dir: str | os.PathLike[str], figure_number: int):
    """Display the stills figure of every episode with a face, in broadcast order, each with
    its caption naming the episode's strongest track (as in the tables)."""
    from IPython.display import HTML, display

    tracks = read_tracks(run_dir)
    for episode in case.episodes:
        path = stills_figure_path(run_dir, episode.id)
        if path is None:
            display(show_markdown(f"*{episode.id}: no face in the analysed frames; no stills.*"))
            continue
        best = tracks[tracks["episode"] == episode.id].iloc[0]
        caption = (
            f"Figure {figure_number} ({episode.id}). The best-quality stills of its "
            f"strongest tracks (track {int(best['track_id'])} carries the episode's strongest "
            "evidence), each labelled with its track id and log10 LR as in the tables, below "
            "the reference photos with each photo's score against that track."
        )
        # Two episodes to a page: the stills stay large enough to see the faces.
        display(HTML(figure_grid_html([path], [episode.id], caption, width_percent=62)))


def reference_scores_table(case: Case, run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every reference photo once: its score against each episode's strongest track (the
    track's own rule: quality-weighted mean cosine similarity of the track's faces to this one
    photo), unusable photos with their status."""
    from likeness.stills import reference_track_scores

    run_dir = Path(run_dir)
    references = pd.read_parquet(run_dir / "references.parquet")
    tracks = read_tracks(run_dir)
    table = pd.DataFrame({"photo": [Path(p).name for p in references["path"]],
                          "status": references["status"].to_numpy()})
    for episode in case.episodes:
        ep_tracks = tracks[tracks["episode"] == episode.id]
        if ep_tracks.empty or not faces_table.faces_path(run_dir, episode.id).is_file():
            continue
        best = int(ep_tracks["track_id"].iloc[0])
        faces = faces_table.read_faces(run_dir, episode.id, embeddings=True)
        scores = reference_track_scores(faces, references, [best])[best]
        table[f"{episode.id} t{best}"] = [scores.get(str(p), np.nan) for p in references["path"]]
    return table


def personas_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``personas.csv`` (issue 7), or None when the analysis did not link tracks."""
    path = Path(run_dir) / columns.PERSONAS_FILE
    return read_csv(path, dtype={"episode": str}) if path.is_file() else None


def show_persona_links(run_dir: str | os.PathLike[str]):
    """The personas linked across episodes (one block per persona, its tracks in broadcast
    order), or a sentence saying the analysis linked none."""
    table = personas_table(run_dir)
    if table is None or table.empty:
        return show_markdown("*Personas: this analysis did not link tracks across episodes "
                             "(no `personas.csv`); each episode's tracks stand alone.*")
    caption, meaning = columns.OPTIONAL_TABLES[columns.PERSONAS_FILE]
    return show_table(table, f"{caption}: {meaning}",
                      digits={"start_s": 1, "end_s": 1, "log10_lr": 2})


def show_optional_tables(run_dir: str | os.PathLike[str]):
    """Display each of issue 7's further tables the run folder holds (sensitivity, calibrators,
    models; the personas are shown with the faces), each with its caption and what it is; a
    sentence when there is none."""
    from IPython.display import display

    shown = 0
    for name, (caption, meaning) in columns.OPTIONAL_TABLES.items():
        path = Path(run_dir) / name
        if name == columns.PERSONAS_FILE or not path.is_file():
            continue
        display(show_markdown(f"**{caption}**: {meaning}."))
        display(show_table(read_csv(path), caption, digits=3))
        shown += 1
    if not shown:
        return show_markdown("*This analysis wrote no persona, sensitivity, calibrator or model "
                             "comparison tables.*")
    return None
