"""Likelihood ratios: calibration of scores against a population.

Propositions (ENFSI Guideline for Evaluative Reporting in Forensic Science, 2015):

* H1: the questioned face is rendered to be recognizable as the claimant;
* H2: the questioned face depicts another person of the relevant population.

The evidence is the face's score against the claimant's reference photos (declared rule in
:mod:`likeness.scores`). The likelihood ratio LR = p(score | H1) / p(score | H2) is learnt from
scores whose truth is known, computed from the population photos (one folder per identity) in
exactly the way the case's scores are computed:

* every identity gets a *reference set* of ``n_refs`` of its photos (``n_refs`` = the number of
  the claimant's usable reference photos, drawn with a seeded RNG); its other photos are
  *questioned* photos;
* same-source score (H1 true): a questioned photo against its own identity's reference set;
* different-source score (H2 true): a questioned photo against the reference set of another
  identity, ``DIFFERENT_PER_PHOTO`` other identities per photo drawn with the seeded RNG.
  (Using every other identity would add little: the different-source scores of one photo are
  strongly dependent; it would also make lir's ELUB computation, whose memory grows with
  scores x thresholds, needlessly large.)

Calibration and validation data are identity-disjoint (Meuwly, Ramos & Haraksim 2017): the
population's identities are split in two halves by a seeded RNG; the calibrator is fitted on
the calibration half only, and it is *this* calibrator, not one refitted on everything, that is
applied to the case, so the validation metrics describe exactly the LRs that are reported.

Calibrators (``METHODS``): lir's ``LogitCalibrator`` (logistic regression of the label on the
score, classes weighted equally, no regularisation: maximum likelihood), ``KDECalibrator``
(Silverman bandwidth) and ``IsotonicCalibrator`` (pool adjacent violators), each followed by
lir's ``ELUBBounder`` (Vergeer et al. 2016, empirical lower and upper bounds: they cap the
log10 LR at the strength the calibration data can support, at most log10 of the number of
different-source scores plus one, so a small calibration set cannot claim absurd strength).
Which one a case uses is not a habit but the outcome of their comparison on the validation
half (:mod:`likeness.validation`); the scores they take are AS-norm normalised
(:mod:`likeness.cohort`), and :mod:`likeness.evidence` puts the two together.
:func:`bootstrap_calibrators` refits a calibrator on identity resamples, for intervals that
include the calibration's uncertainty.

Warnings (recorded in results, never raised): fewer than ``MIN_SAME_SOURCE`` same-source scores
or fewer than ``MIN_IDENTITIES`` identities in the calibration half (the fitted slope and the
ELUB bounds are then unstable), fewer than ``MIN_SAME_SOURCE`` same-source scores in the
validation half (the metrics are then imprecise), and fewer than ``MIN_REFERENCES`` usable
reference photos (the claimant's score rests on one or two photos; the top-k rule then reduces
to fewer photos than declared).
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd
from lir.algorithms.bayeserror import ELUBBounder
from lir.algorithms.isotonic_regression import IsotonicCalibrator
from lir.algorithms.kde import KDECalibrator
from lir.algorithms.logistic_regression import LogitCalibrator
from lir.data.models import LLRData

from likeness import cohort as coh
from likeness import scores as sc

# Thresholds of the warnings (see the module docstring). 200 same-source scores put the
# standard error of a 1% error rate near 0.7%; 20 identities keep any one person from
# dominating the fitted slope.
MIN_SAME_SOURCE = 200
MIN_IDENTITIES = 20
MIN_REFERENCES = 3
DIFFERENT_PER_PHOTO = 8
METHODS = ("logistic", "kde", "isotonic")
CALIBRATOR_CLASSES = {
    "logistic": "lir.algorithms.logistic_regression.LogitCalibrator",
    "kde": "lir.algorithms.kde.KDECalibrator",
    "isotonic": "lir.algorithms.isotonic_regression.IsotonicCalibrator",
}
SCORE_COLUMNS = ["score", "raw_score", "same_source", "identity", "reference_identity", "path"]


@dataclasses.dataclass(frozen=True)
class FittedCalibrator:
    """A fitted score-to-log10-LR calibrator: lir's calibrator followed by its ELUB bounds."""

    method: str
    calibrator: Any  # lir LogitCalibrator or KDECalibrator, fitted
    lower_log10_lr: float
    upper_log10_lr: float
    n_same_source: int
    n_different_source: int
    n_identities: int

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """lir's (unbounded) log10 LRs of 1-d scores."""
        # Pickling (Ray sends calibrators to other processes) breaks lir's isotonic regression
        # on both sides: scikit-learn's __getstate__ pops the interpolation f_ from the
        # object's own __dict__ (object.__getstate__ returns it uncopied on Python 3.11), and
        # its __setstate__ rebuilds f_ only from X_thresholds_, which lir does not set.
        # _build_f on lir's fitted points is how lir's own fit ends.
        regression = getattr(self.calibrator, "_ir", None)
        if (regression is not None and not hasattr(regression, "f_")
                and hasattr(regression, "_necessary_X_")):
            regression._build_f(regression._necessary_X_, regression._necessary_y_)
        return np.asarray(self.calibrator.transform(scores), dtype=np.float64).reshape(-1)


def split_identities(identities: list[str] | pd.Series, seed: int) -> tuple[list[str], list[str]]:
    """Split identities into a calibration half and a validation half with a seeded RNG.

    The identities are sorted first, so the split depends only on the names and the seed. The
    calibration half gets the extra identity when the count is odd.
    """
    names = sorted(set(identities))
    order = np.random.default_rng(seed).permutation(len(names))
    cut = (len(names) + 1) // 2
    calibration = sorted(names[i] for i in order[:cut])
    validation = sorted(names[i] for i in order[cut:])
    return calibration, validation


def calibration_scores(
    population: pd.DataFrame,
    n_refs: int,
    top_k: int,
    seed: int,
    *,
    different_per_photo: int | None = DIFFERENT_PER_PHOTO,
    cohort: coh.Cohort | None = None,
    probe: str = "embedding",
) -> pd.DataFrame:
    """Same-source and different-source scores of a population under the case's scoring rule.

    With a ``cohort`` (identity-disjoint from ``population``), ``score`` is the AS-norm score
    (:mod:`likeness.cohort`) and ``raw_score`` the set score it normalises; without, both are
    the raw set score.

    ``population``: an ``embed_population`` table (identity, path, status, embedding). Only
    usable photos count. An identity with at least ``n_refs`` photos gets a reference set of
    ``n_refs`` photos; its remaining photos are questioned photos (an identity with fewer
    photos contributes questioned photos only). Returns one row per score with
    ``SCORE_COLUMNS``: ``score``, ``same_source`` (bool), ``identity`` (of the questioned
    photo), ``reference_identity`` and ``path`` (of the questioned photo), sorted by path then
    reference identity. ``different_per_photo=None`` scores each photo against every other
    identity.

    ``probe``: the column that gives the questioned side's embeddings; reference sets always
    use ``embedding``. Another column holds the same photo seen differently (its face shrunk,
    ``benchmarks/face_size.py``); a questioned photo with no entry there (its face was not
    found) is left out, so the reference sets stay those of the full photos.
    """
    if n_refs < 1:
        raise ValueError("calibration_scores: n_refs must be at least 1")
    photos = sc.usable_photos(population).sort_values(["identity", "path"], kind="stable")
    photos = photos.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    is_reference = np.zeros(len(photos), dtype=bool)
    for _, idx in photos.groupby("identity", sort=True).indices.items():
        chosen = rng.permutation(idx)
        if len(idx) >= n_refs:
            is_reference[chosen[:n_refs]] = True
    references = photos.loc[is_reference]
    questioned = photos.loc[~is_reference].reset_index(drop=True)
    if probe != "embedding":
        questioned = questioned[questioned[probe].notna()].reset_index(drop=True)
    if references.empty or questioned.empty:
        return pd.DataFrame({c: [] for c in SCORE_COLUMNS}).astype(
            {"score": float, "raw_score": float, "same_source": bool}
        )
    questioned_emb = sc.embedding_matrix(questioned[probe])
    matrix, ref_ids = sc.identity_score_matrix(questioned_emb, references, top_k)
    ref_ids_arr = np.asarray(ref_ids, dtype=object)
    rows_q: list[np.ndarray] = []
    rows_r: list[np.ndarray] = []
    column_of = {name: j for j, name in enumerate(ref_ids)}
    for i, identity in enumerate(questioned["identity"]):
        own = column_of.get(identity)
        others = np.array([j for j in range(len(ref_ids)) if j != own], dtype=np.int64)
        if different_per_photo is not None and len(others) > different_per_photo:
            others = np.sort(rng.choice(others, size=different_per_photo, replace=False))
        cols = others if own is None else np.concatenate([[own], others])
        rows_q.append(np.full(len(cols), i, dtype=np.int64))
        rows_r.append(cols)
    q = np.concatenate(rows_q)
    r = np.concatenate(rows_r)
    raw = matrix[q, r]
    normalised = raw
    if cohort is not None:
        mu_t, sd_t = coh.test_side(cohort, questioned_emb)
        _, mu_e, sd_e = coh.enrolment_side(cohort, references)
        normalised = coh.as_norm(raw, (mu_t[q], sd_t[q]), (mu_e[r], sd_e[r]))
    out = pd.DataFrame({
        "score": normalised,
        "raw_score": raw,
        "same_source": questioned["identity"].to_numpy()[q] == ref_ids_arr[r],
        "identity": questioned["identity"].to_numpy()[q],
        "reference_identity": ref_ids_arr[r],
        "path": questioned["path"].astype(str).to_numpy()[q],
    })
    return out.sort_values(["path", "reference_identity"], kind="stable", ignore_index=True)


def _labels(scores_df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = scores_df["score"].to_numpy(dtype=np.float64)
    y = scores_df["same_source"].to_numpy(dtype=bool).astype(np.int64)
    return x, y


def _new_calibrator(method: str) -> Any:
    if method == "logistic":
        # C=inf: plain maximum likelihood. lir's default (sklearn's C=1) shrinks the slope,
        # by an amount that depends on the number of scores, not on the evidence.
        return LogitCalibrator(C=np.inf, max_iter=1000)
    if method == "kde":
        return KDECalibrator(bandwidth="silverman")
    if method == "isotonic":
        # PAV with one misleading score added at each end (lir's guard against infinite LRs
        # where the data are all of one class); ELUB bounds it further.
        return IsotonicCalibrator(add_misleading=1)
    raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")


def fit_calibrator(
    scores_df: pd.DataFrame,
    method: str = "logistic",
    *,
    bounds: tuple[float, float] | None = None,
) -> FittedCalibrator:
    """Fit lir's calibrator (``method`` in METHODS) and its ELUB bounds to scores.

    ``scores_df`` is :func:`calibration_scores` output. ``bounds`` reuses given ELUB bounds
    instead of computing them (the bootstrap replicates keep the bounds of the full fit).
    Raises ValueError when there are no same-source or no different-source scores.
    """
    x, y = _labels(scores_df)
    n_same = int(y.sum())
    n_diff = int(len(y) - n_same)
    if n_same == 0 or n_diff == 0:
        raise ValueError(
            f"cannot calibrate: {n_same} same-source and {n_diff} different-source scores; "
            "the population needs identities with at least n_refs + 1 usable photos"
        )
    calibrator = _new_calibrator(method)
    calibrator.fit(x, y)
    if bounds is None:
        raw = np.asarray(calibrator.transform(x), dtype=np.float64).reshape(-1)
        # elub() overwrites extreme values of its input in place: give it a copy.
        bounder = ELUBBounder().fit(LLRData(features=raw.copy(), labels=y))
        bounds = (float(bounder.lower_llr_bound), float(bounder.upper_llr_bound))
    return FittedCalibrator(
        method=method,
        calibrator=calibrator,
        lower_log10_lr=float(bounds[0]),
        upper_log10_lr=float(bounds[1]),
        n_same_source=n_same,
        n_different_source=n_diff,
        n_identities=int(scores_df["identity"].nunique()),
    )


def log10_lr(calibrator: FittedCalibrator | None, scores: np.ndarray | pd.Series) -> np.ndarray:
    """Bounded log10 LRs of scores; NaN where a score is NaN or there is no calibrator."""
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    if calibrator is None or not ok.any():
        return out
    raw = calibrator.transform(x[ok])
    out[ok] = np.clip(np.nan_to_num(raw, nan=0.0, posinf=np.inf, neginf=-np.inf),
                      calibrator.lower_log10_lr, calibrator.upper_log10_lr)
    return out


def describe_calibrator(calibrator: FittedCalibrator) -> dict[str, Any]:
    """A JSON-able description of a fitted calibrator, for manifests and the report."""
    params: dict[str, Any] = {}
    c = calibrator.calibrator
    if calibrator.method == "logistic":
        # ln LR = intercept + slope * score; in log10 units divide by ln 10.
        params = {
            "log10_lr_intercept": float(c._logit.intercept_[0] / np.log(10)),
            "log10_lr_slope_per_unit_score": float(c._logit.coef_[0][0] / np.log(10)),
            "class_weight": "balanced", "regularisation": "none (maximum likelihood)",
        }
    elif calibrator.method == "kde":
        params = {
            "kernel": "gaussian", "bandwidth_rule": "silverman",
            "bandwidth_different_source": float(c._kde0.bandwidth),
            "bandwidth_same_source": float(c._kde1.bandwidth),
        }
    elif calibrator.method == "isotonic":
        params = {"algorithm": "pool adjacent violators", "add_misleading": 1,
                  "class_weight": "balanced"}
    return {
        "library": f"lir {version('lir')}",
        "calibrator": CALIBRATOR_CLASSES[calibrator.method],
        "method": calibrator.method,
        "parameters": params,
        "bounder": "lir.algorithms.bayeserror.ELUBBounder (Vergeer et al. 2016)",
        "lower_log10_lr": round(calibrator.lower_log10_lr, 6),
        "upper_log10_lr": round(calibrator.upper_log10_lr, 6),
        "n_same_source": calibrator.n_same_source,
        "n_different_source": calibrator.n_different_source,
        "n_identities": calibrator.n_identities,
    }


def bootstrap_calibrators(
    scores_df: pd.DataFrame, fitted: FittedCalibrator, n_samples: int, seed: int
) -> list[FittedCalibrator]:
    """Refits of ``fitted``'s method on calibration data resampled by identity.

    The identities of the questioned photos are drawn with replacement (a cluster bootstrap:
    the scores of one person are not independent), every score of a drawn identity comes
    along, and the calibrator is refitted; the ELUB bounds of the full fit are kept (the
    bounds are a property of the amount of data, which the resample keeps). The replicates
    carry the calibration's uncertainty into the intervals of :mod:`likeness.episodes`.
    """
    if n_samples <= 0:
        return []
    rng = np.random.default_rng([int(seed), 7])
    groups = scores_df.groupby("identity", sort=True).indices
    names = list(groups)
    out: list[FittedCalibrator] = []
    while len(out) < n_samples:
        drawn = rng.integers(0, len(names), size=len(names))
        rows = np.concatenate([groups[names[i]] for i in drawn])
        sample = scores_df.iloc[rows]
        if sample["same_source"].all() or not sample["same_source"].any():
            continue
        out.append(fit_calibrator(sample, fitted.method,
                                  bounds=(fitted.lower_log10_lr, fitted.upper_log10_lr)))
    return out


def calibration_warnings(
    n_refs: int, calibration: pd.DataFrame | None, validation: pd.DataFrame | None
) -> list[str]:
    """The warnings a calibration deserves (see the module docstring for the thresholds)."""
    out: list[str] = []
    if n_refs < MIN_REFERENCES:
        out.append(
            f"only {n_refs} usable reference photo(s) of the claimant (fewer than "
            f"{MIN_REFERENCES}): each score rests on {n_refs} photo(s); add references"
        )
    for name, df, minimum_ids in (("calibration", calibration, MIN_IDENTITIES),
                                  ("validation", validation, 0)):
        if df is None:
            continue
        n_same = int(df["same_source"].sum()) if len(df) else 0
        n_ids = int(df["identity"].nunique()) if len(df) else 0
        if n_same < MIN_SAME_SOURCE:
            out.append(
                f"{name} set has {n_same} same-source scores (fewer than {MIN_SAME_SOURCE}): "
                f"the {'LRs and their bounds are' if name == 'calibration' else 'metrics are'} "
                "unstable; use a larger population (identities with several photos each)"
            )
        if n_ids < minimum_ids:
            out.append(
                f"{name} set has {n_ids} identities (fewer than {minimum_ids}): the "
                "calibration may reflect a few people; use a larger population"
            )
    return out
