"""The one place where a track is scored against a watchlisted person and calibrated.

Every LR of a screening comes from :func:`score_tracks` and :func:`calibrate`, which go
through :mod:`likeness.evidence` exactly as ``likeness analyze`` does
(:func:`likeness.episodes.score_episode`, :func:`likeness.evidence.calibrate_population`):

* a face's raw score against a person = mean of its top-k cosine similarities to the person's
  reference photos, AS-norm normalised against the population cohort
  (:func:`likeness.evidence.normalised_scores`); a track's score = the quality-weighted mean
  of its faces' normalised scores;
* the track's log10 LR = the evidence model for the person's number of usable reference
  photos (the calibrator chosen by validation, bounded by ELUB), applied to the track's score;
* the lineup = the person plus every other watchlisted person plus every population identity,
  each represented by as many photos as the person has references (seeded choice); the rank
  is 1 + the number of members whose raw track score is strictly higher.

Change the scoring method here and the whole screening follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import evidence as ev
from likeness import scores as sc

TRACK_SCORE_COLUMNS = ["track_id", "score", "log10_lr", "lineup_rank", "lineup_n"]


EVIDENCE_METHODS = {
    "analyze": {},  # AS-norm + the calibrator chosen by validation, as likeness analyze
    "raw-logistic": {"method": "logistic", "normalisation": None},  # for comparison only
}


def calibrate(
    population: pd.DataFrame, n_refs: int, *, top_k: int, seed: int,
    evidence: str = "analyze",
) -> tuple[ev.Calibration | None, dict[str, Any], pd.DataFrame]:
    """The evidence model for persons with ``n_refs`` references, its summary and its scores.

    The same split, cohort, calibrator choice and validation as a case with ``n_refs``
    reference photos (no bootstrap: screening reports point LRs); it depends only on
    ``n_refs``, so a screening computes it once per distinct count. The scores (with ``half``
    and ``log10_lr``) are those of :func:`likeness.evidence.calibrate_population`; the model is
    None when no calibrator could be fitted.
    """
    # The analyze method. Its LRs are valid per comparison, but a track compared with many
    # watchlisted persons takes its best of many chances: the flag threshold (worker.FLAG_RULE)
    # is validated across a watchlist, not per comparison. "raw-logistic" is kept for the
    # comparison in benchmarks/watchlist.py only.
    result = ev.calibrate_population(population, n_refs, top_k, seed,
                                     **EVIDENCE_METHODS[evidence])
    model = result if result.calibrator is not None else None
    return model, result.summary, result.scores


def score_tracks(
    faces: pd.DataFrame,
    references: pd.DataFrame,
    lineup: pd.DataFrame,
    calibration: ev.Calibration | None,
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
    faces = faces.iloc[sc.track_order(faces)]
    emb = sc.embedding_matrix(faces["embedding"])
    scored, _, track_matrix, identities = sc.face_scores(faces, emb, references, lineup,
                                                         top_k, seed=seed)
    weights = sc.quality_weights(scored["quality"])
    track_ids = scored["track_id"].to_numpy()
    tracks, raw_scores = sc.track_weighted_mean(track_ids, weights, scored["score"])
    if calibration is None:
        track_scores, llr = raw_scores, np.full(len(tracks), np.nan)
    else:
        normalised = ev.normalised_scores(
            calibration, emb,
            sc.embedding_matrix(sc.usable_photos(references)["embedding"]), scored["score"],
        )
        _, track_scores = sc.track_weighted_mean(track_ids, weights, normalised)
        llr = cal.log10_lr(calibration.calibrator, track_scores)
    return pd.DataFrame({
        "track_id": tracks.astype(np.int64),
        "score": track_scores,
        "log10_lr": llr,
        "lineup_rank": sc.lineup_rank(raw_scores, track_matrix),
        "lineup_n": np.int64(len(identities) + 1),
    })
