"""Validation of likelihood ratios: the metrics and the choice of calibrator.

Every number here is computed on validation scores that are identity-disjoint from the data
the calibrator was fitted on (Meuwly, Ramos & Haraksim 2017), so it describes exactly the LRs a
case reports.

The calibrator is chosen by validation, not by habit (:func:`compare_calibrators`,
:data:`CHOICE_RULE`): logistic regression, KDE and isotonic regression (PAV) are each fitted on
the calibration half and compared on the validation half by Cllr (discrimination and
calibration), Cllr_min, the empirical cross-entropy at prior odds 1:100 and 100:1, and their
behaviour in the *gap* between the two score masses, where face-swap scores fall: whether the
LR is monotone in the score there, and what it says at the gap's ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from lir.data.models import LLRData
from lir.metrics import cllr, cllr_min
from sklearn.metrics import roc_curve

from likeness import calibration as cal

CHOICE_RULE = (
    "the calibrator with the lowest validation Cllr among those whose LR never decreases as "
    "the score grows over the range of the calibration scores (a higher similarity must never "
    "give weaker evidence); ties go to the simpler model (logistic, then isotonic, then KDE)"
)
SIMPLICITY = ("logistic", "isotonic", "kde")
# Grid resolution of the monotonicity check, and the tolerance of a decrease (log10 units).
MONOTONE_GRID = 512
MONOTONE_TOLERANCE = 1e-6
# The protocol's reference counts: the default (the smallest count a case has without the
# "few references" warning, calibration.MIN_REFERENCES) and the two ends the issue asks for.
LFW_REFERENCE_COUNTS = (cal.MIN_REFERENCES, 1, 5)


def equal_error_rate(scores: np.ndarray, same_source: np.ndarray) -> float:
    """Equal error rate of a score: where false acceptance and false rejection rates meet.

    Computed from the ROC curve (sklearn) with linear interpolation between the two ROC
    points around the crossing of FPR and FNR.
    """
    fpr, tpr, _ = roc_curve(np.asarray(same_source, dtype=int), np.asarray(scores, float))
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(diff <= 0))
    if i == 0:
        return float(fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def empirical_cross_entropy(llrs: np.ndarray, y: np.ndarray, prior_log10_odds: float) -> float:
    """ECE (bits) of log10 LRs at the given prior log10 odds (Ramos et al. 2013)."""
    llrs = np.asarray(llrs, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    odds = prior_log10_odds
    p1 = 1.0 / (1.0 + 10.0 ** (-odds))
    ln10 = np.log(10.0)
    same = np.logaddexp(0.0, -(llrs[y] + odds) * ln10) / np.log(2.0)
    diff = np.logaddexp(0.0, (llrs[~y] + odds) * ln10) / np.log(2.0)
    return float(p1 * same.mean() + (1.0 - p1) * diff.mean())


def validate(calibrator: cal.FittedCalibrator, scores_df: pd.DataFrame) -> dict[str, Any]:
    """Performance of a calibrator on validation scores (identity-disjoint from its data).

    Returns: ``n_same_source``, ``n_different_source``, ``n_identities``, ``eer`` (of the
    scores: discrimination, independent of calibration), ``cllr`` (of the bounded LRs:
    discrimination and calibration, 0 perfect, 1 = an uninformative system), ``cllr_min``
    (after PAV, the discrimination part), ``cllr_cal`` (their difference, the calibration
    loss), ``ece_prior_minus2``/``ece_prior_plus2`` (empirical cross-entropy at prior odds
    1:100 and 100:1), the rates of misleading evidence (same-source scores with LR < 1,
    different-source scores with LR > 1), the share of LRs at either bound, and their range.
    """
    x = scores_df["score"].to_numpy(dtype=np.float64)
    y = scores_df["same_source"].to_numpy(dtype=bool)
    llrs = cal.log10_lr(calibrator, x)
    data = LLRData(features=llrs, labels=y.astype(np.int64))
    c, cmin = cllr(data), cllr_min(data)
    at_bound = np.isclose(llrs, calibrator.upper_log10_lr) | np.isclose(
        llrs, calibrator.lower_log10_lr
    )
    return {
        "n_same_source": int(y.sum()),
        "n_different_source": int(len(y) - y.sum()),
        "n_identities": int(scores_df["identity"].nunique()),
        "eer": round(equal_error_rate(x, y), 6),
        "cllr": round(float(c), 6),
        "cllr_min": round(float(cmin), 6),
        "cllr_cal": round(float(c - cmin), 6),
        "ece_prior_minus2": round(empirical_cross_entropy(llrs, y, -2.0), 6),
        "ece_prior_plus2": round(empirical_cross_entropy(llrs, y, 2.0), 6),
        "misleading_same_source": round(float(np.mean(llrs[y] < 0)), 6),
        "misleading_different_source": round(float(np.mean(llrs[~y] > 0)), 6),
        "share_at_bounds": round(float(np.mean(at_bound)), 6),
        "min_log10_lr": round(float(np.min(llrs)), 6),
        "max_log10_lr": round(float(np.max(llrs)), 6),
    }


def score_gap(scores_df: pd.DataFrame) -> tuple[float, float]:
    """The gap between the score masses: the different-source 99th percentile and the
    same-source 1st percentile (in that order; where the masses overlap, the two are
    swapped so the gap is the overlap)."""
    x = scores_df["score"].to_numpy(dtype=np.float64)
    y = scores_df["same_source"].to_numpy(dtype=bool)
    lo, hi = float(np.percentile(x[~y], 99)), float(np.percentile(x[y], 1))
    return (min(lo, hi), max(lo, hi))


def gap_behaviour(calibrator: cal.FittedCalibrator, scores_df: pd.DataFrame) -> dict[str, Any]:
    """Whether the (unbounded) LR is monotone over the scores' range, and its values across
    the gap between the masses."""
    x = scores_df["score"].to_numpy(dtype=np.float64)
    grid = np.linspace(x.min(), x.max(), MONOTONE_GRID)
    raw = calibrator.transform(grid)
    finite = np.nan_to_num(raw, nan=0.0, posinf=1e6, neginf=-1e6)
    decrease = float(np.max(np.maximum(-np.diff(finite), 0.0))) if len(finite) > 1 else 0.0
    lo, hi = score_gap(scores_df)
    at = cal.log10_lr(calibrator, np.array([lo, (lo + hi) / 2, hi]))
    return {
        "monotone": bool(decrease <= MONOTONE_TOLERANCE),
        "largest_decrease_log10": round(decrease, 6),
        "gap_low_score": round(lo, 6),
        "gap_high_score": round(hi, 6),
        "log10_lr_gap_low": round(float(at[0]), 6),
        "log10_lr_gap_mid": round(float(at[1]), 6),
        "log10_lr_gap_high": round(float(at[2]), 6),
    }


COMPARISON_COLUMNS = [
    "method", "cllr", "cllr_min", "cllr_cal", "ece_prior_minus2", "ece_prior_plus2", "eer",
    "lower_log10_lr", "upper_log10_lr", "monotone", "largest_decrease_log10",
    "log10_lr_gap_low", "log10_lr_gap_mid", "log10_lr_gap_high", "note",
]


def compare_calibrators(
    calibration: pd.DataFrame, validation: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, cal.FittedCalibrator]]:
    """Fit every method on ``calibration`` and validate it on ``validation``.

    Returns the comparison table (COMPARISON_COLUMNS, one row per method) and the fitted
    calibrators by method. A method that cannot be fitted gets a row with its reason in
    ``note``; without validation scores of both kinds the metrics are NaN.
    """
    rows, fitted = [], {}
    has_both = bool(validation["same_source"].any() and (~validation["same_source"]).any())
    for method in cal.METHODS:
        row: dict[str, Any] = {c: np.nan for c in COMPARISON_COLUMNS}
        row.update(method=method, note="", monotone=False)
        try:
            fit = cal.fit_calibrator(calibration, method)
        except ValueError as exc:
            row["note"] = str(exc)
            rows.append(row)
            continue
        fitted[method] = fit
        row.update(lower_log10_lr=fit.lower_log10_lr, upper_log10_lr=fit.upper_log10_lr)
        row.update(gap_behaviour(fit, calibration))
        if has_both:
            metrics = validate(fit, validation)
            row.update({k: metrics[k] for k in ("cllr", "cllr_min", "cllr_cal",
                                                "ece_prior_minus2", "ece_prior_plus2", "eer")})
        rows.append(row)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return table, fitted


def choose_calibrator(comparison: pd.DataFrame) -> str | None:
    """The method :data:`CHOICE_RULE` picks from a :func:`compare_calibrators` table."""
    ok = comparison[comparison["monotone"].astype(bool) & comparison["note"].eq("")]
    if ok.empty:
        return None
    rank = {m: i for i, m in enumerate(SIMPLICITY)}
    ok = ok.assign(_simple=ok["method"].map(rank), _cllr=ok["cllr"].round(4).fillna(np.inf))
    return str(ok.sort_values(["_cllr", "_simple"], kind="stable")["method"].iloc[0])
