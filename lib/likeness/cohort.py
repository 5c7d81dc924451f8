"""The cohort: population identities that normalise a score (adaptive symmetric normalisation).

Why: a face-swap renders the claimant's likeness onto another person's head, in video, and
keeps less raw similarity to the claimant's still photos than a genuine photo does (cosine
0.45-0.62 where genuine LFW stills give 0.7-0.9). The absolute level of a score moves with the
domain (video, synthesis, pose, light); its place relative to how the same face scores against
*other* people moves much less. Normalising each score by a cohort of other identities puts
the questioned faces and the calibration photos on the same footing.

The declared rule, AS-norm (adaptive symmetric normalisation; Cumani et al. 2011, Matejka et
al. 2017, standard in speaker recognition), with the set score of :mod:`likeness.scores`:

* test side: the questioned face is scored against every cohort identity (each represented by
  as many photos as the claimant has references, as in the lineup); ``mu_t`` and ``sd_t`` are
  the mean and standard deviation of its ``size`` highest cohort scores;
* enrolment side: every photo of the cohort is scored against the reference set; ``mu_e`` and
  ``sd_e`` are the mean and standard deviation of the ``size`` highest of these scores;
* normalised score = ((s - mu_t) / sd_t + (s - mu_e) / sd_e) / 2.

Taking only the top ``size`` scores ("adaptive") keeps the statistics about the look-alikes that
could be confused with the face, not the mass of obviously different people. The cohort is
identity-disjoint from the scores it normalises: calibration pairs of one half of the
population are normalised with the other half as cohort (see :mod:`likeness.calibration`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from likeness import scores as sc

# The number of top cohort scores whose mean and spread normalise a score. Chosen on LFW
# validation (identity-disjoint halves): 20, 50 and 100 give Cllr 0.0327, 0.0330, 0.0335 with 3
# references; 50 is the middle of that flat range and well within a half-population cohort.
COHORT_SIZE = 50
# A floor on the cohort's spread, so a degenerate cohort (all scores equal) cannot blow up a
# normalised score.
MIN_SPREAD = 1e-3


@dataclasses.dataclass(frozen=True)
class Cohort:
    """The identities that normalise scores: their lineup sets and all their photos."""

    identities: tuple[str, ...]
    sets: pd.DataFrame  # identity, path, embedding: the photos standing for each identity
    photos: np.ndarray  # (photos, d) every usable photo of the cohort (enrolment side)
    top_k: int
    size: int = COHORT_SIZE

    @property
    def effective_size(self) -> int:
        return min(self.size, len(self.identities))


def make_cohort(
    population: pd.DataFrame, n_refs: int, top_k: int, seed: int, *, size: int = COHORT_SIZE
) -> Cohort:
    """A cohort from population photos: each identity stands with ``n_refs`` seeded photos."""
    photos = sc.usable_photos(population)
    sets = sc.reference_sets(photos, max(int(n_refs), 1), seed)
    identities = tuple(sorted(sets["identity"].unique().tolist()))
    return Cohort(
        identities=identities,
        sets=sets[["identity", "path", "embedding"]].reset_index(drop=True),
        photos=sc.embedding_matrix(photos["embedding"]) if len(photos) else np.zeros((0, 0)),
        top_k=int(top_k),
        size=int(size),
    )


def top_stats(scores: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the ``size`` highest values of each row."""
    if scores.shape[1] == 0:
        n = scores.shape[0]
        return np.zeros(n), np.ones(n)
    top = -np.sort(-scores, axis=1)[:, : min(size, scores.shape[1])]
    return top.mean(axis=1), np.maximum(top.std(axis=1), MIN_SPREAD)


def test_side(cohort: Cohort, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu_t, sd_t) of each face (rows of an L2-normalised matrix) against the cohort, a
    block of faces at a time (a long episode's whole faces x cohort matrix is never held)."""
    mu, sd = np.zeros(len(faces)), np.ones(len(faces))
    _, blocks = sc.identity_score_blocks(faces, cohort.sets, cohort.top_k)
    for lo, block in blocks:
        mu[lo : lo + len(block)], sd[lo : lo + len(block)] = top_stats(
            block, cohort.effective_size)
    return mu, sd


def enrolment_side(
    cohort: Cohort, reference_sets: pd.DataFrame
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(identities, mu_e, sd_e) of each reference set (``identity``, ``embedding`` rows)."""
    matrix, identities = sc.identity_score_matrix(cohort.photos, reference_sets, cohort.top_k)
    mu, sd = top_stats(matrix.T, cohort.effective_size)
    return identities, mu, sd


def claimant_side(cohort: Cohort, references: np.ndarray) -> tuple[float, float]:
    """(mu_e, sd_e) of the claimant's reference set (rows of an L2-normalised matrix)."""
    refs = pd.DataFrame({"identity": "claimant", "path": range(len(references)),
                         "embedding": list(references)})
    _, mu, sd = enrolment_side(cohort, refs)
    return float(mu[0]), float(sd[0])


def as_norm(
    raw: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    enrolment: tuple[np.ndarray | float, np.ndarray | float],
) -> np.ndarray:
    """The AS-norm score of raw set scores, given their test- and enrolment-side statistics."""
    raw = np.asarray(raw, dtype=np.float64)
    (mu_t, sd_t), (mu_e, sd_e) = test, enrolment
    return 0.5 * ((raw - mu_t) / sd_t + (raw - mu_e) / sd_e)
