"""Per-episode, per-track and timeline results of a case: what ``likeness analyze`` ends with.

:func:`write_episode_results` reads the faces tables, the references and the population of a
run folder and writes, deterministically (fixed float formatting, stable sorting):

* ``episodes.csv``: one row per episode, in broadcast order (columns: ``EPISODE_COLUMNS``);
* ``tracks.csv``: one row per track (``TRACK_COLUMNS``);
* ``timeline/<episode>.csv``: one row per face (``TIMELINE_COLUMNS``), by time then track;
* ``face_scores.parquet``: the faces tables without embeddings, with each face's scores,
  LR and lineup rank (for figures and the report);
* ``series.csv``: the totals over the series;
* ``personas.csv``: tracks linked across episodes (:mod:`likeness.personas`);
* ``calibration.json``: the evidence model (normalisation, the calibrators compared and the
  one chosen, its validation on the held-out half, the lineup model, the warnings);
  ``calibrators.csv``: the comparison; ``calibration_scores.csv``: the scores it used;
* ``sensitivity.csv`` and ``sensitivity_summary.csv`` (:mod:`likeness.sensitivity`).

Definitions (each is a declared choice):

* A face's ``raw_score`` is its set score against the references (:mod:`likeness.scores`);
  its ``score`` the AS-norm score (:mod:`likeness.cohort`) the calibrator takes; its
  ``log10_lr`` the calibrated, ELUB-bounded LR of that score (:mod:`likeness.evidence`).
* A track's score is the quality-weighted mean of its faces' scores, and its LR the LR of that
  mean, not a product over its faces, which are not independent. ``max_log10_lr`` = the
  strongest track's LR: *the* strength of an episode's evidence everywhere.
* Sampling interval ``dt`` = ``1 / sample_fps`` (never shorter than one frame), or one frame
  when every frame is analysed. A sampled face stands for ``dt`` seconds, cut at the end of
  the episode (``duration_s`` from intake). A track spans from its first face to the end of
  its last face's interval; profile turns and blinks inside it (frames where the detector
  loses the face but the tracker keeps it) do not make the person vanish.
* ``face_seconds`` = the time covered by at least one track.
* ``claimant_seconds`` = the time covered by at least one track whose LR exceeds the declared
  screen-time parameter ``operating_point_log10_lr``; ``claimant_share`` = their ratio.
  ``claimant_seconds_faces`` = the older per-face count (sampled frames with a face whose
  own LR exceeds it, times ``dt``), kept as a second figure.
* ``lineup_rank`` of a track: the claimant's rank among the population for the track's raw
  score; ``lineup_log10_lr``: that rank as an LR (:mod:`likeness.lineup`).
* Intervals: 95% percentile bootstrap over faces, tracks and calibration identities
  (:mod:`likeness.bootstrap`), RNG seeded from the case's ``seed`` and the episode id.
* An episode with no face: every time and LR column is 0 (LR = 1: no evidence either way) and
  ``warning`` says so. Without a calibrator (no usable population or references), the LR
  columns are empty (NaN) and ``warning`` says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import bootstrap as bs
from likeness import calibration as cal
from likeness import evidence as ev
from likeness import lineup as lu
from likeness import personas as pe
from likeness import scores as sc
from likeness.case import Case, claimant_identity_names
from likeness.errors import record_warning
from likeness.faces_table import faces_path, read_episode_faces
from likeness.files import write_csv_atomic, write_json_atomic, write_parquet_atomic
from likeness.intake import INTAKE_FILE, load_intake

EPISODE_COLUMNS = [
    "episode", "n_faces", "n_tracks", "sample_interval_s", "face_seconds", "claimant_seconds",
    "claimant_share", "claimant_share_lo", "claimant_share_hi", "max_log10_lr",
    "max_log10_lr_lo", "max_log10_lr_hi", "median_log10_lr", "max_score", "best_track_id",
    "best_track_lineup_rank", "lineup_n", "warning",
    # Issue 7: the raw score beside the normalised one, the per-face screen time, the lineup
    # as an LR, the persona and the performer of the strongest track.
    "max_raw_score", "claimant_seconds_faces", "lineup_log10_lr", "best_track_persona",
    "best_track_performer_log10_lr",
]
TRACK_COLUMNS = [
    "episode", "track_id", "start_s", "end_s", "n_faces", "mean_quality", "raw_score", "score",
    "best", "log10_lr", "log10_lr_lo", "log10_lr_hi", "max_face_log10_lr", "lineup_rank",
    "lineup_n", "lineup_log10_lr", "claimant_seconds", "persona", "performer",
    "performer_score", "performer_log10_lr",
]
TIMELINE_COLUMNS = ["time_s", "track_id", "log10_lr", "score", "raw_score"]
SERIES_COLUMNS = [
    "n_episodes", "n_episodes_analysed", "face_seconds", "claimant_seconds",
    "claimant_seconds_faces", "max_log10_lr", "strongest_episode", "n_personas",
]


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


def sample_durations(time_s: np.ndarray, dt: float, duration_s: float | None) -> np.ndarray:
    """Screen time each sampled frame stands for: ``dt``, cut at the end of the episode (the
    last sample of a 2.64 s clip sampled every 0.2 s at 2.6 s stands for 0.04 s)."""
    t = np.asarray(time_s, dtype=np.float64)
    if not duration_s:
        return np.full(t.shape, float(dt))
    return np.clip(float(duration_s) - t, 0.0, float(dt))


def face_claimant_seconds(
    frame_index: np.ndarray, claimant: np.ndarray, durations: np.ndarray
) -> float:
    """Seconds of sampled frames with at least one face above the operating point."""
    frames, codes = np.unique(np.asarray(frame_index), return_inverse=True)
    has = np.bincount(codes, weights=np.asarray(claimant, dtype=float), minlength=len(frames))
    frame_dt = np.zeros(len(frames))
    frame_dt[codes] = durations
    return float(frame_dt[has > 0].sum())


def performer_track_scores(
    performers: list[tuple[str, np.ndarray, ev.Calibration]],
    emb: np.ndarray, track_ids: np.ndarray, weights: np.ndarray, top_k: int,
) -> pd.DataFrame:
    """Per track: the best-matching performer, its normalised score and LR (NaN without)."""
    tracks = np.unique(track_ids)
    best = pd.DataFrame({"performer": "", "performer_score": np.full(len(tracks), np.nan),
                         "performer_log10_lr": np.full(len(tracks), np.nan)})
    for name, refs, calibration in performers:
        faces = ev.claimant_scores(calibration, emb, refs, top_k)
        _, score = sc.track_weighted_mean(track_ids, weights, faces["score"])
        llr = cal.log10_lr(calibration.calibrator, score)
        better = ~(np.nan_to_num(llr, nan=-np.inf) <= best["performer_log10_lr"].fillna(-np.inf))
        best.loc[better, "performer"] = name
        best.loc[better, "performer_score"] = score[better]
        best.loc[better, "performer_log10_lr"] = llr[better]
    return best


def score_episode(
    faces: pd.DataFrame,
    emb: np.ndarray,
    references: pd.DataFrame,
    population: pd.DataFrame,
    calibration: ev.Calibration,
    lineup: dict[str, Any],
    *,
    episode: str,
    dt: float,
    duration_s: float | None = None,
    top_k: int,
    operating_point: float,
    seed: int,
    bootstrap_samples: int,
    performers: list[tuple[str, np.ndarray, ev.Calibration]] = (),
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Score one episode's faces: a faces table (without embeddings) and ``emb``, its
    L2-normalised embeddings, one row per face in the same order (:mod:`likeness.faces_table`).

    Returns (episode row, tracks table, face table with scores, track mean embeddings): the
    last, one L2-normalised row per track in the tracks table's order, links personas.
    """
    order = sc.track_order(faces)
    faces, emb = faces.iloc[order], emb[order]
    scored, _, track_matrix, identities = sc.face_scores(faces, emb, references, population,
                                                         top_k, seed=seed)
    refs = sc.embedding_matrix(sc.usable_photos(references)["embedding"])
    scored = scored.rename(columns={"score": "raw_score"})
    scored["score"] = ev.normalised_scores(calibration, emb, refs, scored["raw_score"])
    calibrator = calibration.calibrator
    scored["log10_lr"] = cal.log10_lr(calibrator, scored["score"])
    lineup_n = len(identities) + 1
    row: dict[str, Any] = {c: 0.0 for c in EPISODE_COLUMNS}
    row.update(episode=episode, sample_interval_s=dt, warning="", lineup_n=lineup_n,
               best_track_id=-1, best_track_lineup_rank=0, best_track_persona="",
               best_track_performer_log10_lr=np.nan)
    n = len(scored)
    row.update(n_faces=n, n_tracks=int(scored["track_id"].nunique()) if n else 0)
    if n == 0:
        row["warning"] = "no face detected in the sampled frames"
        scored["track_log10_lr"] = np.zeros(0)
        return row, pd.DataFrame(columns=TRACK_COLUMNS), scored, np.zeros((0, emb.shape[1]))

    weights = sc.quality_weights(scored["quality"])
    track_ids = scored["track_id"].to_numpy()
    tracks, track_scores = sc.track_weighted_mean(track_ids, weights, scored["score"])
    _, track_raw = sc.track_weighted_mean(track_ids, weights, scored["raw_score"])
    _, track_emb = sc.track_weighted_mean(track_ids, weights, emb)
    track_emb = sc.embedding_matrix(track_emb)
    track_llr = cal.log10_lr(calibrator, track_scores)
    codes = np.searchsorted(tracks, track_ids)
    scored["track_log10_lr"] = track_llr[codes]

    durations = sample_durations(scored["time_s"].to_numpy(), dt, duration_s)
    scored["_end_s"] = scored["time_s"].to_numpy() + durations
    grouped = scored.groupby("track_id", sort=True)
    start = grouped["time_s"].min().to_numpy()
    end = grouped["_end_s"].max().to_numpy()
    supports = np.nan_to_num(track_llr, nan=-np.inf) > operating_point
    ranks = sc.lineup_rank(track_raw, track_matrix)
    track_table = pd.DataFrame({
        "episode": episode,
        "track_id": tracks.astype(np.int64),
        "start_s": start,
        "end_s": end,
        "n_faces": grouped.size().to_numpy().astype(np.int64),
        "mean_quality": grouped["quality"].mean().to_numpy(dtype=np.float64),
        "raw_score": track_raw,
        "score": track_scores,
        "best": grouped["best"].max().to_numpy(),
        "log10_lr": track_llr,
        "max_face_log10_lr": grouped["log10_lr"].max().to_numpy(),
        "lineup_rank": ranks,
        "lineup_n": np.int64(lineup_n),
        "lineup_log10_lr": lu.lineup_log10_lr(lineup, ranks, lineup_n),
        "claimant_seconds": np.where(supports, end - start, 0.0),
        "persona": "",
    })
    track_table = pd.concat(
        [track_table, performer_track_scores(list(performers), emb, track_ids, weights, top_k)],
        axis=1,
    )
    scored = scored.drop(columns="_end_s")

    face_seconds = bs.union_seconds(start, end)
    claimant_seconds = bs.union_seconds(start[supports], end[supports])
    face_claimant = np.nan_to_num(scored["log10_lr"].to_numpy(), nan=-np.inf) > operating_point
    replicates = list(calibration.replicates) or ([calibrator] if calibrator else [])
    if calibrator is not None:
        intervals = bs.bootstrap_episode(
            codes, weights, scored["score"].to_numpy(), start, end, face_seconds,
            replicates, operating_point, bootstrap_samples, bs.episode_seed(seed, episode),
        )
        track_table["log10_lr_lo"] = intervals.pop("track_log10_lr_lo")
        track_table["log10_lr_hi"] = intervals.pop("track_log10_lr_hi")
        row.update(intervals)
    else:
        track_table["log10_lr_lo"] = np.nan
        track_table["log10_lr_hi"] = np.nan
        row.update(claimant_share_lo=np.nan, claimant_share_hi=np.nan,
                   max_log10_lr_lo=np.nan, max_log10_lr_hi=np.nan)
        row["warning"] = "no likelihood ratios (see calibration.json)"
    track_table = track_table[TRACK_COLUMNS]

    best = int(np.argmax(np.nan_to_num(track_llr, nan=-np.inf) + 1e-9 * track_scores))
    row.update(
        face_seconds=face_seconds,
        claimant_seconds=claimant_seconds if calibrator else np.nan,
        claimant_share=claimant_seconds / face_seconds if calibrator and face_seconds else (
            0.0 if calibrator else np.nan),
        claimant_seconds_faces=face_claimant_seconds(
            scored["frame_index"].to_numpy(), face_claimant, durations
        ) if calibrator else np.nan,
        max_log10_lr=float(track_llr[best]),
        median_log10_lr=float(np.median(scored["log10_lr"])),
        max_score=float(track_scores.max()),
        max_raw_score=float(track_raw.max()),
        best_track_id=int(tracks[best]),
        best_track_lineup_rank=int(ranks[best]),
        lineup_log10_lr=float(track_table["lineup_log10_lr"].iloc[best]),
        best_track_performer_log10_lr=float(track_table["performer_log10_lr"].iloc[best]),
    )
    return row, track_table, scored, track_emb


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


def _performer_sets(
    case: Case, run_dir: Path, population: pd.DataFrame, calibration: ev.Calibration,
    n_refs: int,
) -> list[tuple[str, np.ndarray, ev.Calibration]]:
    """(name, reference matrix, calibration) of each performer the case names; a performer
    with another number of usable photos than the claimant gets a calibration of its own."""
    path = run_dir / "performers.parquet"
    if not case.performers or not path.exists():
        return []
    photos = sc.usable_photos(pd.read_parquet(path))
    params = case.analysis
    out = []
    for name, group in photos.groupby("identity", sort=True):
        n = len(group)
        own = calibration if n == n_refs else ev.calibrate_population(
            population, n, params.top_k, params.seed, method=params.calibration_method,
            normalisation=None if params.normalisation == "none" else "as-norm",
        )
        out.append((str(name), sc.embedding_matrix(group["embedding"]), own))
    return out


def _series_row(episodes: pd.DataFrame, tracks: pd.DataFrame) -> dict[str, Any]:
    analysed = episodes[episodes["n_faces"].notna() & episodes["max_log10_lr"].notna()]
    strongest = (analysed.loc[analysed["max_log10_lr"].idxmax(), "episode"]
                 if len(analysed) else "")
    personas = tracks["persona"].replace("", np.nan).dropna() if len(tracks) else []
    return {
        "n_episodes": len(episodes),
        "n_episodes_analysed": len(analysed),
        "face_seconds": float(episodes["face_seconds"].sum(skipna=True)),
        "claimant_seconds": float(episodes["claimant_seconds"].sum(skipna=True)),
        "claimant_seconds_faces": float(episodes["claimant_seconds_faces"].sum(skipna=True)),
        "max_log10_lr": float(analysed["max_log10_lr"].max()) if len(analysed) else np.nan,
        "strongest_episode": strongest,
        "n_personas": int(pd.Series(personas).nunique()),
    }


def write_episode_results(case: Case, run_dir: Path | str) -> pd.DataFrame:
    """Score, calibrate and summarise every episode of a case; write the run folder's results.

    Reads ``faces/<episode>.parquet``, ``references.parquet``, ``population.parquet`` (and
    ``intake.json`` for frame rates, ``performers.parquet`` when the case names performers)
    from ``run_dir``; writes the files listed in the module docstring; returns the episodes
    table.
    """
    from likeness import sensitivity

    run_dir = Path(run_dir)
    params = case.analysis
    references = pd.read_parquet(run_dir / "references.parquet")
    pop_path = run_dir / "population.parquet"
    population = pd.read_parquet(pop_path) if pop_path.exists() else pd.DataFrame()
    population = clean_population(case, population, references, run_dir)
    n_refs = len(sc.usable_photos(references))

    calibration = ev.calibrate_population(
        population, n_refs, params.top_k, params.seed, method=params.calibration_method,
        normalisation=None if params.normalisation == "none" else "as-norm",
        bootstrap_samples=params.calibration_bootstrap_samples,
    )
    summary = dict(calibration.summary)
    if n_refs == 0:
        summary["warnings"].append("no usable reference photo of the claimant: no scores")
        calibration = ev.Calibration(None, calibration.cohort, calibration.scores, summary)
    lineup = lu.lineup_model(population, max(n_refs, 1), params.top_k, params.seed)
    usable_pop = sc.usable_photos(population)
    summary.update(
        operating_point_log10_lr=params.operating_point_log10_lr,
        n_reference_photos=n_refs,
        n_population_identities=int(usable_pop["identity"].nunique()) if len(usable_pop) else 0,
        n_population_photos=len(usable_pop),
        lineup=lineup,
    )
    for message in summary["warnings"]:
        record_warning(run_dir, "calibration", message)
    write_json_atomic(run_dir / "calibration.json", summary)
    write_csv_atomic(calibration.scores, run_dir / "calibration_scores.csv")
    write_csv_atomic(pd.DataFrame(summary["comparison"]), run_dir / "calibrators.csv")
    performers = _performer_sets(case, run_dir, population, calibration, n_refs)

    probes = _probes(run_dir)
    status_file = run_dir / "episode_status.json"
    statuses = json.loads(status_file.read_text("utf-8")) if status_file.exists() else {}
    rows, track_tables, face_tables, track_embs, faces_by_episode = [], [], [], [], {}
    for episode in case.episodes:
        status = statuses.get(episode.id, {})
        faces_file = faces_path(run_dir, episode.id)
        if not faces_file.exists():
            # A failed episode is unknown, not empty: NaN rather than zeros.
            row = {c: np.nan for c in EPISODE_COLUMNS}
            row.update(episode=episode.id, n_faces=0, n_tracks=0, best_track_id=-1,
                       best_track_lineup_rank=0, lineup_n=0, best_track_persona="",
                       warning=f"episode not analysed: {status.get('message', 'no faces table')}")
            rows.append(row)
            continue
        faces, emb = read_episode_faces(faces_file)
        faces_by_episode[episode.id] = (faces, emb)
        probe = probes.get(episode.id)
        if probe is None:
            from likeness import probing

            probe = probing.probe_video(episode.path)
        dt = sampling_interval(params.sample_fps, probe.get("frame_rate"))
        row, tracks, scored, embs = score_episode(
            faces, emb, references, population, calibration, lineup, episode=episode.id, dt=dt,
            duration_s=probe.get("duration_s"),
            top_k=params.top_k, operating_point=params.operating_point_log10_lr,
            seed=params.seed, bootstrap_samples=params.bootstrap_samples,
            performers=performers,
        )
        if status.get("status") == "truncated":
            row["warning"] = "; ".join(
                filter(None, [row["warning"], f"footage truncated: {status.get('message', '')}"])
            )
        rows.append(row)
        track_tables.append(tracks)
        track_embs.append(embs)
        face_tables.append(scored)
        timeline = scored.sort_values(["time_s", "track_id"], kind="stable")[TIMELINE_COLUMNS]
        write_csv_atomic(timeline, run_dir / "timeline" / f"{episode.id}.csv")

    nonempty = [t for t in track_tables if len(t)]
    tracks_all = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(
        columns=TRACK_COLUMNS
    )
    if len(tracks_all):
        threshold = pe.link_threshold(population, params.seed)
        tracks_all["persona"] = pe.link_personas(
            tracks_all, np.concatenate([e for e in track_embs if len(e)]), threshold,
            [e.id for e in case.episodes],
        )
        summary["persona_link_threshold"] = round(threshold, 6)
        write_json_atomic(run_dir / "calibration.json", summary)
    episodes = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    persona_of = {(t.episode, t.track_id): t.persona for t in tracks_all.itertuples()}
    episodes["best_track_persona"] = [
        persona_of.get((e, t), "") for e, t in zip(episodes["episode"],
                                                   episodes["best_track_id"], strict=True)
    ]
    for col in ("n_faces", "n_tracks", "best_track_id", "best_track_lineup_rank", "lineup_n"):
        episodes[col] = episodes[col].astype(np.int64)
    write_csv_atomic(episodes, run_dir / "episodes.csv")
    write_csv_atomic(tracks_all, run_dir / "tracks.csv")
    write_csv_atomic(pe.personas_table(tracks_all), run_dir / "personas.csv")
    write_csv_atomic(pd.DataFrame([_series_row(episodes, tracks_all)], columns=SERIES_COLUMNS),
                     run_dir / "series.csv")
    nonempty = [t for t in face_tables if len(t)] or face_tables[:1]
    if nonempty:
        faces_all = pd.concat(nonempty, ignore_index=True).sort_values(
            ["episode", "frame_index", "box_x1"], kind="stable", ignore_index=True
        )
        write_parquet_atomic(faces_all, run_dir / "face_scores.parquet")
    if params.sensitivity and calibration.calibrator is not None:
        sensitivity.write_sensitivity(case, run_dir, faces_by_episode, references, population,
                                      calibration, episodes)
    return episodes
