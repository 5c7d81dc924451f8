"""Per-episode, per-track and timeline results of a case: what ``likeness analyze`` ends with.

:func:`write_episode_results` reads the faces tables, the references and the population of a
run folder and writes, deterministically (fixed float formatting, stable sorting):

* ``episodes.csv``: one row per episode, in broadcast order (columns: ``EPISODE_COLUMNS``);
* ``tracks.csv``: one row per track (``TRACK_COLUMNS``);
* ``timeline/<episode>.csv``: one row per face (``time_s``, ``track_id``, ``log10_lr``,
  ``score``), sorted by time then track;
* ``face_scores.parquet``: the faces tables without embeddings, with each face's scores,
  LR and lineup rank (for figures and the report);
* ``calibration.json``: the calibrator, its validation on the held-out half of the population,
  the warnings; ``calibration_scores.csv``: the scores it was fitted and validated on.

Definitions (each is a declared choice):

* Sampling interval ``dt`` = ``1 / sample_fps`` (never shorter than one frame), or one frame
  (``1 / frame_rate``) when every frame is analysed. A sampled frame stands for ``dt``
  seconds of screen time, cut at the end of the episode (``duration_s`` from intake).
* ``face_seconds`` = ``dt`` x the number of sampled frames with at least one face.
* ``claimant_seconds`` = ``dt`` x the number of sampled frames with at least one face whose
  own log10 LR exceeds the case's ``operating_point_log10_lr``. Faces are judged one by one
  (not by their track) because the question is how long the claimant is recognizable on
  screen, and a track can pass through frames where the face is not.
* ``claimant_share`` = ``claimant_seconds / face_seconds`` (0 when there is no face).
* ``max_log10_lr`` = the highest track log10 LR (the strongest evidence in the episode); a
  track's LR is the LR of its quality-weighted mean score (see :mod:`likeness.scores`), not
  a product over its faces, which are not independent.
* ``median_log10_lr`` = the median of the faces' log10 LRs (the typical face on screen).
* Intervals: 95% percentile bootstrap intervals (``bootstrap_samples`` replicates, RNG seeded
  from the case's ``seed`` and the episode id; see :func:`bootstrap_episode`). Faces of a
  track are not independent, so they are never resampled one by one: tracks are the
  resampling unit of the time share (cluster bootstrap), and within a track faces are
  resampled in blocks of consecutive frames (moving-block bootstrap). They cover the sampling
  variability of the faces shown, given the calibration; they do not cover the uncertainty
  of the calibration itself, whose size is shown by the validation metrics and capped by the
  ELUB bounds.
* An episode with no face: every time and LR column is 0 (LR = 1: no evidence either way) and
  ``warning`` says so. Without a calibrator (no usable population or references), the LR
  columns are empty (NaN) and ``warning`` says why.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import scores as sc
from likeness.case import Case, claimant_identity_names
from likeness.errors import record_warning
from likeness.files import write_csv_atomic, write_json_atomic, write_parquet_atomic
from likeness.intake import INTAKE_FILE, load_intake

EPISODE_COLUMNS = [
    "episode", "n_faces", "n_tracks", "sample_interval_s", "face_seconds", "claimant_seconds",
    "claimant_share", "claimant_share_lo", "claimant_share_hi", "max_log10_lr",
    "max_log10_lr_lo", "max_log10_lr_hi", "median_log10_lr", "max_score", "best_track_id",
    "best_track_lineup_rank", "lineup_n", "warning",
]
TRACK_COLUMNS = [
    "episode", "track_id", "start_s", "end_s", "n_faces", "mean_quality", "score", "best",
    "log10_lr", "max_face_log10_lr", "lineup_rank", "lineup_n",
]
TIMELINE_COLUMNS = ["time_s", "track_id", "log10_lr", "score"]
INTERVAL = (2.5, 97.5)


def _probes(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The probe (frame_rate, duration_s, ...) of each episode from ``intake.json``."""
    if not (Path(run_dir) / INTAKE_FILE).exists():
        return {}
    record = load_intake(run_dir)
    return {
        str(e["id"]): e["probe"] for e in record.get("evidence", [])
        if e.get("role") == "footage" and isinstance(e.get("probe"), dict)
    }


def sampling_interval(sample_fps: float | None, frame_rate: float | None) -> float:
    """Seconds of screen time one sampled frame stands for (see the module docstring)."""
    frame = 1.0 / frame_rate if frame_rate else 0.0
    if sample_fps is None:
        if not frame:
            raise ValueError("every frame is analysed but the frame rate is unknown")
        return frame
    return max(1.0 / float(sample_fps), frame)


def screen_time_weights(
    frame_index: np.ndarray, claimant: np.ndarray, dt: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-face shares of screen time, for the time totals and their bootstrap.

    ``dt`` is the sampling interval, or one value per face (see :func:`sample_durations`).
    Each sampled frame's ``dt`` is split equally among its faces (``face_w``); a face's
    ``claimant_w`` is its ``face_w`` when its frame shows the claimant (any face of the frame
    above the operating point), else 0. So ``face_w.sum()`` = face_seconds and
    ``claimant_w.sum()`` = claimant_seconds exactly, and for any resample of faces
    ``claimant_w <= face_w`` keeps the resampled share within [0, 1].
    """
    frames, codes = np.unique(np.asarray(frame_index), return_inverse=True)
    per_frame = np.bincount(codes, minlength=len(frames))
    face_w = np.asarray(dt, dtype=np.float64) / per_frame[codes]
    frame_has_claimant = np.bincount(
        codes, weights=np.asarray(claimant, dtype=float), minlength=len(frames)
    ) > 0
    claimant_w = np.where(frame_has_claimant[codes], face_w, 0.0)
    return face_w, claimant_w


def sample_durations(time_s: np.ndarray, dt: float, duration_s: float | None) -> np.ndarray:
    """Screen time each sampled frame stands for: ``dt``, cut at the end of the episode (the
    last sample of a 2.64 s clip sampled every 0.2 s at 2.6 s stands for 0.04 s)."""
    t = np.asarray(time_s, dtype=np.float64)
    if not duration_s:
        return np.full(t.shape, float(dt))
    return np.clip(float(duration_s) - t, 0.0, float(dt))


def block_resample(
    sizes: np.ndarray, starts: np.ndarray, drawn: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Moving-block resample of the faces of each drawn track (Kunsch 1989).

    A track of ``n`` faces (consecutive samples, in time order) is rebuilt from blocks of
    ``ceil(n ** (1/3))`` consecutive faces starting at uniformly drawn positions, cut to
    ``n`` faces (block length after Hall, Horowitz & Jing 1995). Blocks keep the serial
    dependence of neighbouring frames that resampling single faces would ignore.

    ``sizes``/``starts``: faces per track and first row of each track (rows sorted by track,
    then time); ``drawn``: track codes drawn (repeats allowed). Returns (rows, slot): the
    chosen face rows and, for each, the position in ``drawn`` it belongs to.
    """
    n = sizes[drawn]
    length = np.ceil(n ** (1.0 / 3.0)).astype(np.int64)
    n_blocks = -(-n // length)
    block_slot = np.repeat(np.arange(len(drawn)), n_blocks)
    block_len = length[block_slot]
    block_start = (rng.random(len(block_slot)) * (n[block_slot] - block_len + 1)).astype(np.int64)
    pos_slot = np.repeat(block_slot, block_len)
    first_of_block = np.repeat(np.cumsum(block_len) - block_len, block_len)
    offset = np.repeat(block_start, block_len) + np.arange(len(pos_slot)) - first_of_block
    per_slot = n_blocks * length
    first_of_slot = np.repeat(np.cumsum(per_slot) - per_slot, per_slot)
    keep = (np.arange(len(pos_slot)) - first_of_slot) < n[pos_slot]
    rows = starts[drawn][pos_slot] + offset
    return rows[keep], pos_slot[keep]


def bootstrap_episode(
    track_codes: np.ndarray,
    weights: np.ndarray,
    face_scores: np.ndarray,
    face_w: np.ndarray,
    claimant_w: np.ndarray,
    calibrator: cal.FittedCalibrator | None,
    n_samples: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Bootstrap intervals (2.5% and 97.5% percentiles) of the share and of the strongest LR.

    * Claimant share: a two-stage (cluster) bootstrap: the tracks are drawn with replacement,
      then the faces of each drawn track are block-resampled (:func:`block_resample`); the
      share of a replicate is its resampled claimant time over its resampled face time.
    * Strongest track LR: every track is kept (the estimand is the strongest of the tracks
      that are on screen, and dropping the strongest track in a replicate would only measure
      the chance of not drawing it), each track's faces are block-resampled, the track's
      quality-weighted score recomputed and calibrated, and the maximum taken.

    ``track_codes`` (0..T-1, one per face row) must be sorted, rows in time order per track.
    """
    sizes = np.bincount(track_codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tracks = len(sizes)
    every_track = np.arange(n_tracks)
    shares = np.empty(n_samples)
    slot_scores = np.empty((n_samples, n_tracks))
    for b in range(n_samples):
        rows, slot = block_resample(sizes, starts, every_track, rng)
        w = weights[rows]
        slot_scores[b] = np.bincount(slot, weights=w * face_scores[rows], minlength=n_tracks) / (
            np.bincount(slot, weights=w, minlength=n_tracks)
        )
        rows, _ = block_resample(sizes, starts, rng.integers(0, n_tracks, size=n_tracks), rng)
        shares[b] = claimant_w[rows].sum() / face_w[rows].sum()
    max_llr = cal.log10_lr(calibrator, slot_scores.reshape(-1)).reshape(slot_scores.shape)
    max_llr = max_llr.max(axis=1)
    lo, hi = INTERVAL
    return {
        "claimant_share_lo": float(np.percentile(shares, lo)),
        "claimant_share_hi": float(np.percentile(shares, hi)),
        "max_log10_lr_lo": float(np.percentile(max_llr, lo)),
        "max_log10_lr_hi": float(np.percentile(max_llr, hi)),
    }


def episode_seed(seed: int, episode: str) -> np.random.Generator:
    """The bootstrap RNG of an episode: from the case seed and the episode id, so adding or
    reordering episodes leaves each episode's interval unchanged."""
    return np.random.default_rng([int(seed), zlib.crc32(episode.encode("utf-8"))])


def score_episode(
    faces: pd.DataFrame,
    references: pd.DataFrame,
    population: pd.DataFrame,
    calibrator: cal.FittedCalibrator | None,
    *,
    episode: str,
    dt: float,
    duration_s: float | None = None,
    top_k: int,
    operating_point: float,
    seed: int,
    bootstrap_samples: int,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Score one episode's faces. Returns (episode row, tracks table, face table with scores)."""
    faces = faces.sort_values(["track_id", "frame_index", "box_x1"], kind="stable")
    scored, matrix, identities = sc.face_scores(faces, references, population, top_k, seed=seed)
    scored["log10_lr"] = cal.log10_lr(calibrator, scored["score"])
    row: dict[str, Any] = {c: 0.0 for c in EPISODE_COLUMNS}
    row.update(episode=episode, sample_interval_s=dt, warning="", lineup_n=len(identities) + 1,
               best_track_id=-1, best_track_lineup_rank=0)
    n = len(scored)
    row.update(n_faces=n, n_tracks=int(scored["track_id"].nunique()) if n else 0)
    if n == 0:
        row["warning"] = "no face detected in the sampled frames"
        scored["track_log10_lr"] = np.zeros(0)
        return row, pd.DataFrame(columns=TRACK_COLUMNS), scored

    weights = sc.quality_weights(scored["quality"])
    tracks, track_scores = sc.track_weighted_mean(scored["track_id"], weights, scored["score"])
    _, track_matrix = sc.track_weighted_mean(scored["track_id"], weights, matrix)
    track_llr = cal.log10_lr(calibrator, track_scores)
    codes = np.searchsorted(tracks, scored["track_id"].to_numpy())
    scored["track_log10_lr"] = track_llr[codes]

    face_llr = scored["log10_lr"].to_numpy()
    claimant = np.nan_to_num(face_llr, nan=-np.inf) > operating_point
    durations = sample_durations(scored["time_s"].to_numpy(), dt, duration_s)
    face_w, claimant_w = screen_time_weights(scored["frame_index"].to_numpy(), claimant,
                                             durations)
    scored["_end_s"] = scored["time_s"].to_numpy() + durations
    grouped = scored.groupby("track_id", sort=True)
    track_table = pd.DataFrame({
        "episode": episode,
        "track_id": tracks.astype(np.int64),
        "start_s": grouped["time_s"].min().to_numpy(),
        "end_s": grouped["_end_s"].max().to_numpy(),
        "n_faces": grouped.size().to_numpy().astype(np.int64),
        "mean_quality": grouped["quality"].mean().to_numpy(dtype=np.float64),
        "score": track_scores,
        "best": grouped["best"].max().to_numpy(),
        "log10_lr": track_llr,
        "max_face_log10_lr": grouped["log10_lr"].max().to_numpy(),
        "lineup_rank": sc.lineup_rank(track_scores, track_matrix),
        "lineup_n": np.int64(len(identities) + 1),
    })[TRACK_COLUMNS]
    scored = scored.drop(columns="_end_s")

    best = int(np.argmax(np.nan_to_num(track_llr, nan=-np.inf) + 1e-9 * track_scores))
    face_seconds = float(face_w.sum())
    claimant_seconds = float(claimant_w.sum())
    row.update(
        face_seconds=face_seconds,
        claimant_seconds=claimant_seconds if calibrator else np.nan,
        claimant_share=claimant_seconds / face_seconds if calibrator else np.nan,
        max_log10_lr=float(track_llr[best]),
        median_log10_lr=float(np.median(face_llr)),
        max_score=float(track_scores.max()),
        best_track_id=int(tracks[best]),
        best_track_lineup_rank=int(track_table["lineup_rank"].iloc[best]),
    )
    row.update(bootstrap_episode(
        codes, weights, scored["score"].to_numpy(), face_w, claimant_w, calibrator,
        bootstrap_samples, episode_seed(seed, episode),
    ))
    if calibrator is None:
        row.update(claimant_share_lo=np.nan, claimant_share_hi=np.nan)
        row["warning"] = "no likelihood ratios (see calibration.json)"
    return row, track_table, scored


def clean_population(
    case: Case, population: pd.DataFrame, references: pd.DataFrame, run_dir: Path
) -> pd.DataFrame:
    """The population without the claimant: excluded identities, identities named like the
    claimant, and photos identical (SHA-256) to a reference photo are dropped and the drop is
    recorded as a warning (the population must never include the claimant)."""
    if population.empty:
        return population
    banned = {n.lower() for n in case.population_exclude}
    banned |= {n.lower() for n in claimant_identity_names(case.claimant_name)}
    by_name = population["identity"].astype(str).str.lower().isin(banned)
    ref_hashes = set(references.get("sha256", pd.Series(dtype=str)).dropna()) - {""}
    by_hash = population.get("sha256", pd.Series(index=population.index, dtype=str)).isin(
        ref_hashes
    )
    for mask, why in ((by_name, "is excluded or named like the claimant"),
                      (by_hash, "is identical to a reference photo")):
        if mask.any():
            names = ", ".join(sorted(population.loc[mask, "identity"].astype(str).unique()))
            record_warning(run_dir, "episodes",
                           f"population: {int(mask.sum())} photo(s) of {names} dropped: {why}")
    return population.loc[~(by_name | by_hash)].reset_index(drop=True)


def write_episode_results(case: Case, run_dir: Path | str) -> pd.DataFrame:
    """Score, calibrate and summarise every episode of a case; write the run folder's results.

    Reads ``faces/<episode>.parquet``, ``references.parquet``, ``population.parquet`` (and
    ``intake.json`` for frame rates) from ``run_dir``; writes the files listed in the module
    docstring; returns the episodes table.
    """
    run_dir = Path(run_dir)
    params = case.analysis
    references = pd.read_parquet(run_dir / "references.parquet")
    pop_path = run_dir / "population.parquet"
    population = pd.read_parquet(pop_path) if pop_path.exists() else pd.DataFrame()
    population = clean_population(case, population, references, run_dir)
    n_refs = len(sc.usable_photos(references))

    calibrator, summary, cal_scores = cal.calibrate_population(
        population, n_refs, params.top_k, params.seed
    )
    if n_refs == 0:
        summary["warnings"].append("no usable reference photo of the claimant: no scores")
        calibrator = None
    summary.update(
        operating_point_log10_lr=params.operating_point_log10_lr,
        n_reference_photos=n_refs,
        n_population_identities=int(sc.usable_photos(population)["identity"].nunique()),
        n_population_photos=len(sc.usable_photos(population)),
    )
    for message in summary["warnings"]:
        record_warning(run_dir, "calibration", message)
    write_json_atomic(run_dir / "calibration.json", summary)
    write_csv_atomic(cal_scores, run_dir / "calibration_scores.csv")

    probes = _probes(run_dir)
    status_file = run_dir / "episode_status.json"
    statuses = json.loads(status_file.read_text("utf-8")) if status_file.exists() else {}
    rows, track_tables, face_tables = [], [], []
    for episode in case.episodes:
        status = statuses.get(episode.id, {})
        faces_file = run_dir / "faces" / f"{episode.id}.parquet"
        if not faces_file.exists():
            # A failed episode is unknown, not empty: NaN rather than zeros.
            row = {c: np.nan for c in EPISODE_COLUMNS}
            row.update(episode=episode.id, n_faces=0, n_tracks=0, best_track_id=-1,
                       best_track_lineup_rank=0, lineup_n=0,
                       warning=f"episode not analysed: {status.get('message', 'no faces table')}")
            rows.append(row)
            continue
        faces = pd.read_parquet(faces_file)
        probe = probes.get(episode.id)
        if probe is None:
            from likeness import footage

            probe = footage.probe_video(episode.path)
        dt = sampling_interval(params.sample_fps, probe.get("frame_rate"))
        row, tracks, scored = score_episode(
            faces, references, population, calibrator, episode=episode.id, dt=dt,
            duration_s=probe.get("duration_s"),
            top_k=params.top_k, operating_point=params.operating_point_log10_lr,
            seed=params.seed, bootstrap_samples=params.bootstrap_samples,
        )
        if status.get("status") == "truncated":
            row["warning"] = "; ".join(
                filter(None, [row["warning"], f"footage truncated: {status.get('message', '')}"])
            )
        rows.append(row)
        track_tables.append(tracks)
        face_tables.append(scored)
        timeline = scored.sort_values(["time_s", "track_id"], kind="stable")[TIMELINE_COLUMNS]
        write_csv_atomic(timeline, run_dir / "timeline" / f"{episode.id}.csv")

    episodes = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    for col in ("n_faces", "n_tracks", "best_track_id", "best_track_lineup_rank", "lineup_n"):
        episodes[col] = episodes[col].astype(np.int64)
    write_csv_atomic(episodes, run_dir / "episodes.csv")
    nonempty = [t for t in track_tables if len(t)]
    tracks_all = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(
        columns=TRACK_COLUMNS
    )
    write_csv_atomic(tracks_all, run_dir / "tracks.csv")
    nonempty = [t for t in face_tables if len(t)] or face_tables[:1]
    faces_all = pd.concat(nonempty, ignore_index=True).sort_values(
        ["episode", "frame_index", "box_x1"], kind="stable", ignore_index=True
    )
    write_parquet_atomic(faces_all, run_dir / "face_scores.parquet")
    return episodes
