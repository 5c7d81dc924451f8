"""The faces the findings are about, shown: stills of an episode's strongest tracks beside the
claimant's reference photos (and the original performer's, when the case names one), and each
reference photo's own score against those tracks.

* :func:`track_stills` picks, for each track, its best-quality faces (ties: earlier first) and
  returns them in time order, so a strip shows the track's clearest looks with time stamps.
* :func:`reference_track_scores` scores each reference photo alone against a track with the
  track's own rule: the quality-weighted mean over the track's faces of the cosine similarity
  (see :mod:`likeness.scores`), so a reader sees which photos carry the match.
* :func:`episode_stills_figure` draws one episode: a row of references, then one row per track
  labelled with the track id and the track's log10 LR, the same numbers as the tables.

Frames are read from the evidence with :func:`likeness.footage.read_frames` (read only);
figures are written with :mod:`likeness.figures`' style, so they are byte-reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from likeness import scores as sc
from likeness.figures import TITLE_Y, crop_box, plt, save, style, timestamp_text

# Stills per track and tracks per episode in the figure: enough to see the face turn and to
# see a second person in a two-person episode, few enough to stay legible on an A4 page.
STILLS_PER_TRACK = 5
TRACKS_PER_EPISODE = 3
REFERENCES_SHOWN = 5
# The embedded photos of the original performer(s) a case names (issue 7's ``performers:``
# block; provisional name), shown beside the claimant's photos when the analysis wrote them.
PERFORMERS_FILE = "performers.parquet"


def track_stills(faces: pd.DataFrame, track_id: int, n: int = STILLS_PER_TRACK) -> pd.DataFrame:
    """The ``n`` best-quality faces of one track, in time order."""
    track = faces[faces["track_id"] == track_id]
    best = track.sort_values(["quality", "time_s"], ascending=[False, True], kind="stable").head(n)
    return best.sort_values("time_s", kind="stable")


def reference_track_scores(
    faces: pd.DataFrame, references: pd.DataFrame, track_ids: Sequence[int]
) -> pd.DataFrame:
    """Each usable reference photo's score against each track (rows: the photos' paths, in the
    order of ``references``; columns: track ids). ``faces`` needs ``embedding``, ``quality`` and
    ``track_id``; ``references`` ``embedding``, ``status`` and ``path``."""
    refs = sc.usable_photos(references)
    out = pd.DataFrame(index=pd.Index([str(p) for p in refs["path"]], name="path"))
    if refs.empty:
        return out
    ref_emb = sc.embedding_matrix(refs["embedding"])
    for track_id in track_ids:
        track = faces[faces["track_id"] == track_id]
        if track.empty:
            out[int(track_id)] = np.nan
            continue
        sims = sc.cosine_similarity(sc.embedding_matrix(track["embedding"]), ref_emb)
        weights = sc.quality_weights(track["quality"])
        out[int(track_id)] = (weights[:, None] * sims).sum(axis=0) / weights.sum()
    return out


def _photo_crop(row: pd.Series) -> np.ndarray:
    from likeness.photo_file import read_rgb

    image = read_rgb(Path(row["path"]))
    if pd.isna(row.get("box_x1")):
        return image
    return crop_box(image, (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"]))


def _llr_label(value: float, bounds: tuple[float | None, float | None]) -> str:
    lo, hi = bounds
    if pd.isna(value):
        return "no LR"
    sign = ""
    if hi is not None and np.isclose(value, hi):
        sign = "\u2265 "
    elif lo is not None and np.isclose(value, lo):
        sign = "\u2264 "
    return f"log$_{{10}}$ LR {sign}{value:+.2f}"


def episode_stills_figure(
    episode: str,
    faces: pd.DataFrame,
    tracks: pd.DataFrame,
    references: pd.DataFrame,
    footage_path: Path,
    stem: Path | str,
    *,
    performers: pd.DataFrame | None = None,
    bounds: tuple[float | None, float | None] = (None, None),
    n_tracks: int = TRACKS_PER_EPISODE,
    per_track: int = STILLS_PER_TRACK,
) -> list[Path]:
    """Stills of an episode's strongest tracks beside the references (and performers).

    ``faces``: the episode's faces (``face_scores.parquet`` rows: frame_index, time_s, box,
    quality, track_id); ``tracks``: its rows of ``tracks.csv``; ``references`` (and
    ``performers``): embedded photos with ``path``, ``status``, box and, when the reference
    scores are wanted, ``embedding`` and ``score`` columns (``score`` is shown under each
    photo: its score against the strongest track).
    """
    from likeness.footage import read_frames

    top = tracks.sort_values(["log10_lr", "track_id"], ascending=[False, True],
                             kind="stable").head(n_tracks)
    strips = [(r, track_stills(faces, int(r["track_id"]), per_track)) for _, r in top.iterrows()]
    wanted = sorted({int(i) for _, s in strips for i in s["frame_index"]})
    frames = read_frames(footage_path, wanted) if wanted else {}
    refs = references[references["status"].eq("ok")]
    if "score" in refs:
        refs = refs.sort_values(["score", "path"], ascending=[False, True], kind="stable")
    refs = refs.head(REFERENCES_SHOWN)
    perf = (performers[performers["status"].eq("ok")].head(REFERENCES_SHOWN)
            if performers is not None else pd.DataFrame())
    cols = max(per_track, len(refs) + len(perf), 1)
    rows = 1 + max(len(strips), 1)
    with style():
        height = 2.1 * rows + 0.6
        fig = plt.figure(figsize=(1.75 * cols, height))
        grid = fig.add_gridspec(rows, cols, wspace=0.15, hspace=0.7, top=1 - 0.95 / height)
        photos = [(r, "claimant") for _, r in refs.iterrows()]
        photos += [(r, "performer") for _, r in perf.iterrows()]
        for j, (r, role) in enumerate(photos):
            ax = fig.add_subplot(grid[0, j])
            ax.imshow(_photo_crop(r))
            score = f"\nscore {r['score']:.2f}" if "score" in r and pd.notna(r["score"]) else ""
            name = Path(r["path"]).stem
            name = name if len(name) <= 17 else name[:8] + "\u2026" + name[-8:]
            ax.set_title(f"{role}\n{name}{score}", fontsize=7.5, y=TITLE_Y)
            ax.axis("off")
        for i, (track, stills) in enumerate(strips, start=1):
            for j, (_, face) in enumerate(stills.iterrows()):
                ax = fig.add_subplot(grid[i, j])
                box = (face["box_x1"], face["box_y1"], face["box_x2"], face["box_y2"])
                ax.imshow(crop_box(frames[int(face["frame_index"])], box))
                label = (f"track {int(track['track_id'])}, "
                         f"{_llr_label(track['log10_lr'], bounds)}\n" if j == 0 else "\n")
                ax.set_title(f"{label}{timestamp_text(face['time_s'])}  q {face['quality']:.2f}",
                             fontsize=7.5, loc="left", y=TITLE_Y)
                ax.axis("off")
        if not strips:
            fig.text(0.5, 0.3, f"no face in {episode}", ha="center")
        fig.suptitle(f"{episode}: the strongest tracks (best-quality stills; time mm:ss.s, "
                     "quality q)\nbelow the reference photos (score: against the strongest "
                     "track)", fontsize=9, y=1 - 0.05 / height, va="top")
        return save(fig, stem)


def write_episode_stills(case, run_dir: Path | str, out_dir: Path | str | None = None,
                         episodes: Sequence[str] | None = None) -> list[Path]:
    """``stills_<episode>.png/.svg`` for every episode with a face (or those of ``episodes``,
    ids), into ``out_dir`` (default ``run_dir/figures``); each reference photo is labelled
    with its score against the episode's strongest track."""
    from likeness.faces_table import faces_path, read_faces

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "figures"
    tracks = pd.read_csv(run_dir / "tracks.csv", dtype={"episode": str})
    references = pd.read_parquet(run_dir / "references.parquet")
    performers = (pd.read_parquet(run_dir / PERFORMERS_FILE)
                  if (run_dir / PERFORMERS_FILE).is_file() else None)
    calibrator = json.loads((run_dir / "calibration.json").read_text("utf-8")).get("calibrator")
    bounds = ((calibrator["lower_log10_lr"], calibrator["upper_log10_lr"]) if calibrator
              else (None, None))
    written: list[Path] = []
    for episode in case.episodes:
        if episodes is not None and episode.id not in episodes:
            continue
        ep_tracks = tracks[tracks["episode"] == episode.id]
        if ep_tracks.empty or not faces_path(run_dir, episode.id).is_file():
            continue
        faces = read_faces(run_dir, episode.id, embeddings=True)
        strongest = int(ep_tracks.sort_values(["log10_lr", "track_id"], ascending=[False, True],
                                              kind="stable")["track_id"].iloc[0])
        refs = references.copy()
        scores = reference_track_scores(faces, references, [strongest])[strongest]
        refs["score"] = [scores.get(str(p), np.nan) if s == "ok" else np.nan
                         for p, s in zip(refs["path"], refs["status"], strict=True)]
        perf = performers
        if performers is not None:
            perf = performers.copy()
            p_scores = reference_track_scores(faces, performers, [strongest])[strongest]
            perf["score"] = [p_scores.get(str(p), np.nan) for p in perf["path"]]
        written += episode_stills_figure(
            episode.id, faces, ep_tracks, refs, episode.path, out / f"stills_{episode.id}",
            performers=perf, bounds=bounds,
        )
    return written
