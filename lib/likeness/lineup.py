"""Lineup evidence: the claimant's rank among the population as a likelihood ratio.

A face-recognition system can say how recognizable a face is *as the claimant rather than
anyone else* in the sense of an identification lineup: the claimant's rank among the N
members (the claimant plus every population identity, each represented by as many photos as
the claimant has references; :mod:`likeness.scores`). The rank is turned into an LR:

* P(rank | H1), the face shows the claimant: estimated on the population itself. Each
  identity's lineup set stands for it, each of its other photos is a questioned photo, and
  its rank is counted among all the population's sets (a lineup of P = population identities
  members, one fewer than a case's N = P + 1: the difference shifts P(rank 1 | H1) by about
  1/P of its miss rate, far below its sampling error).
* P(rank | H2), the face shows another member of the relevant population: if the claimant is
  just one of N exchangeable members none of whom is the source, every rank is equally likely,
  P(rank = r | H2) = 1/N (leaving each identity out in turn gives exactly this).
* Ranks are pooled into bands (RANK_BANDS) so that each has data; P(band | H1) is smoothed by
  adding one half to every band's count (Jeffreys), so no band has probability 0.

So LR(rank 1) = N x P(rank 1 | H1): the lineup LR grows linearly with the number of members N,
and is capped by N itself: a lineup of 172 can never give more than log10 172 = 2.24.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from likeness import scores as sc

# Rank bands (inclusive lower, inclusive upper; None = up to N).
RANK_BANDS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 3), (4, 10), (11, None))


def band_of(ranks: np.ndarray) -> np.ndarray:
    """The band index (0..len(RANK_BANDS)-1) of each rank."""
    ranks = np.asarray(ranks, dtype=np.int64)
    out = np.full(ranks.shape, len(RANK_BANDS) - 1, dtype=np.int64)
    for i, (lo, hi) in reversed(list(enumerate(RANK_BANDS))):
        inside = (ranks >= lo) & ((ranks <= hi) if hi is not None else True)
        out[inside] = i
    return out


def band_sizes(n_members: int) -> np.ndarray:
    """How many ranks of a lineup of ``n_members`` fall in each band."""
    sizes = []
    for lo, hi in RANK_BANDS:
        top = n_members if hi is None else min(hi, n_members)
        sizes.append(max(0, top - lo + 1))
    return np.asarray(sizes, dtype=np.float64)


def same_source_ranks(population: pd.DataFrame, n_refs: int, top_k: int, seed: int) -> np.ndarray:
    """Ranks of every questioned population photo's own identity among all identities' sets."""
    sets = sc.reference_sets(population, max(int(n_refs), 1), seed)
    photos = sc.usable_photos(population)
    questioned = photos[~photos["path"].isin(set(sets["path"]))]
    questioned = questioned[questioned["identity"].isin(set(sets["identity"]))]
    if questioned.empty:
        return np.zeros(0, dtype=np.int64)
    matrix, identities = sc.identity_score_matrix(
        sc.embedding_matrix(questioned["embedding"]), sets, top_k
    )
    own = pd.Categorical(questioned["identity"], categories=identities).codes
    own_scores = matrix[np.arange(len(own)), own]
    return 1 + (matrix > own_scores[:, None]).sum(axis=1).astype(np.int64)


def lineup_model(
    population: pd.DataFrame, n_refs: int, top_k: int, seed: int
) -> dict[str, Any]:
    """P(band | H1) from the population, as a JSON-able record (see the module docstring)."""
    ranks = same_source_ranks(population, n_refs, top_k, seed)
    counts = np.bincount(band_of(ranks), minlength=len(RANK_BANDS)).astype(np.float64)
    p_h1 = (counts + 0.5) / (counts.sum() + 0.5 * len(RANK_BANDS))
    return {
        "bands": [[lo, hi] for lo, hi in RANK_BANDS],
        "n_same_source": len(ranks),
        "same_source_band_counts": counts.astype(int).tolist(),
        "p_band_given_h1": [round(float(p), 6) for p in p_h1],
        "population_lineup_members": int(population["identity"].nunique())
        if len(population) else 0,
        "rule": "LR(band) = P(band | H1) / P(band | H2), P(band | H2) = ranks in band / N",
    }


def lineup_log10_lr(model: dict[str, Any], ranks: np.ndarray, n_members: int) -> np.ndarray:
    """log10 LR of each lineup rank in a lineup of ``n_members`` (NaN for rank 0 = none)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    p_h1 = np.asarray(model["p_band_given_h1"], dtype=np.float64)
    p_h2 = band_sizes(int(n_members)) / max(int(n_members), 1)
    with np.errstate(divide="ignore"):
        per_band = np.where(p_h2 > 0, np.log10(p_h1) - np.log10(np.where(p_h2 > 0, p_h2, 1)),
                            np.nan)
    out = per_band[band_of(np.maximum(ranks, 1))]
    return np.where(ranks >= 1, out, np.nan)
