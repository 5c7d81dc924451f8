"""Bootstrap intervals of an episode's evidence: faces, tracks and the calibration together.

Two sources of uncertainty are resampled in every replicate:

* the faces shown: faces of a track are not independent, so they are never resampled one by
  one; each track's faces are rebuilt from blocks of consecutive frames (moving-block
  bootstrap, :func:`block_resample`), and the track's quality-weighted score recomputed;
* the calibration: replicate ``b`` is calibrated by the ``b mod R``-th of R calibrators refitted
  on population identities drawn with replacement
  (:func:`likeness.calibration.bootstrap_calibrators`), so the interval also says how much
  the LR depends on which people happened to be in the population.

Every track is kept in every replicate: the estimand is the strongest of the tracks that are
on screen, and dropping the strongest track in a replicate would only measure the chance of
not drawing it. The cohort normalisation of each face is held fixed (it is computed once from
the cohort; resampling it is a second-order effect the population half in the sensitivity
table shows instead).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from likeness import calibration as cal

INTERVAL = (2.5, 97.5)


def episode_seed(seed: int, episode: str) -> np.random.Generator:
    """The bootstrap RNG of an episode: from the case seed and the episode id, so adding or
    reordering episodes leaves each episode's interval unchanged."""
    return np.random.default_rng([int(seed), zlib.crc32(episode.encode("utf-8"))])


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


def union_seconds(starts: np.ndarray, ends: np.ndarray) -> float:
    """Length of the union of the intervals [start, end) (overlapping tracks count once)."""
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    s, e = np.asarray(starts, float)[order], np.asarray(ends, float)[order]
    reach = np.maximum.accumulate(e)
    # A new run of overlapping intervals starts where an interval begins after all earlier
    # ones ended.
    new_run = np.concatenate([[True], s[1:] > reach[:-1]])
    run_id = np.cumsum(new_run) - 1
    run_start = s[new_run]
    run_end = np.zeros(run_id[-1] + 1)
    np.maximum.at(run_end, run_id, e)
    return float((run_end - run_start).sum())


def bootstrap_episode(
    track_codes: np.ndarray,
    weights: np.ndarray,
    face_scores: np.ndarray,
    track_start: np.ndarray,
    track_end: np.ndarray,
    face_seconds: float,
    calibrators: Sequence[cal.FittedCalibrator],
    operating_point: float,
    n_samples: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray | float]:
    """Percentile intervals (INTERVAL) of the strongest track LR, each track's LR and the
    claimant share (time of tracks above the operating point over ``face_seconds``).

    ``track_codes`` (0..T-1, one per face row) must be sorted, rows in time order per track.
    ``calibrators``: the calibration replicates (or just the point calibrator).
    """
    sizes = np.bincount(track_codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tracks = len(sizes)
    every_track = np.arange(n_tracks)
    slot_scores = np.empty((n_samples, n_tracks))
    for b in range(n_samples):
        rows, slot = block_resample(sizes, starts, every_track, rng)
        w = weights[rows]
        slot_scores[b] = np.bincount(slot, weights=w * face_scores[rows], minlength=n_tracks) / (
            np.bincount(slot, weights=w, minlength=n_tracks)
        )
    llr = np.empty_like(slot_scores)
    n_cal = len(calibrators)
    for r, calibrator in enumerate(calibrators):
        idx = np.arange(r, n_samples, n_cal)
        if not len(idx):  # fewer replicates than calibrators: the rest are unused
            break
        llr[idx] = cal.log10_lr(calibrator, slot_scores[idx].reshape(-1)).reshape(len(idx), -1)
    shares = np.array([
        union_seconds(track_start[m], track_end[m]) / face_seconds if face_seconds else 0.0
        for m in (llr > operating_point)
    ])
    lo, hi = INTERVAL
    strongest = llr.max(axis=1)
    return {
        "max_log10_lr_lo": float(np.percentile(strongest, lo)),
        "max_log10_lr_hi": float(np.percentile(strongest, hi)),
        "claimant_share_lo": float(np.percentile(shares, lo)),
        "claimant_share_hi": float(np.percentile(shares, hi)),
        "track_log10_lr_lo": np.percentile(llr, lo, axis=0),
        "track_log10_lr_hi": np.percentile(llr, hi, axis=0),
    }
