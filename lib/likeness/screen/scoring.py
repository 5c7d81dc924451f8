"""The one place where a track is scored against a watchlisted person and calibrated.

Every LR of a screening comes from :func:`score_tracks` and :func:`calibrate`, which call
:mod:`likeness.scores` and :mod:`likeness.calibration` exactly as ``likeness analyze`` does
(:func:`likeness.episodes.score_episode`, :func:`likeness.calibration.calibrate_population`):

* a face's score against a person = mean of its top-k cosine similarities to the person's
  reference photos; a track's score = the quality-weighted mean of its faces' scores;
* the track's log10 LR = the population calibrator for the person's number of usable
  reference photos, applied to the track's score (bounded by ELUB);
* the lineup = the person plus every other watchlisted person plus every population identity,
  each represented by as many photos as the person has references (seeded choice); the rank
  is 1 + the number of members whose track score is strictly higher.

Change the scoring method here and the whole screening follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import scores as sc

TRACK_SCORE_COLUMNS = ["track_id", "score", "log10_lr", "lineup_rank", "lineup_n"]


def calibrate(
    population: pd.DataFrame, n_refs: int, *, top_k: int, seed: int
) -> tuple[cal.FittedCalibrator | None, dict[str, Any], pd.DataFrame]:
    """The calibrator for persons with ``n_refs`` references, its summary and its scores.

    The same split, scores, calibrator and validation as a case with ``n_refs`` reference
    photos; it depends only on ``n_refs``, so a screening computes it once per distinct count.
    The scores (with ``half`` and ``log10_lr``) are those of
    :func:`likeness.calibration.calibrate_population`.
    """
    return cal.calibrate_population(population, n_refs, top_k, seed)


def score_tracks(
    faces: pd.DataFrame,
    references: pd.DataFrame,
    lineup: pd.DataFrame,
    calibrator: cal.FittedCalibrator | None,
    *,
    top_k: int,
    seed: int,
) -> pd.DataFrame:
    """Score every track of ``faces`` (a faces table) against one person.

    ``references``: the person's embedded photos; ``lineup``: the other lineup members'
    embedded photos (``identity`` column). Returns one row per track (TRACK_SCORE_COLUMNS),
    sorted by track id.
    """
    if faces.empty:
        return pd.DataFrame({c: [] for c in TRACK_SCORE_COLUMNS})
    faces = faces.sort_values(["track_id", "frame_index", "box_x1"], kind="stable")
    scored, matrix, identities = sc.face_scores(faces, references, lineup, top_k, seed=seed)
    weights = sc.quality_weights(scored["quality"])
    tracks, track_scores = sc.track_weighted_mean(scored["track_id"], weights, scored["score"])
    _, track_matrix = sc.track_weighted_mean(scored["track_id"], weights, matrix)
    return pd.DataFrame({
        "track_id": tracks.astype(np.int64),
        "score": track_scores,
        "log10_lr": cal.log10_lr(calibrator, track_scores),
        "lineup_rank": sc.lineup_rank(track_scores, track_matrix),
        "lineup_n": np.int64(len(identities) + 1),
    })
