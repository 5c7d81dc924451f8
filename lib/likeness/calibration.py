"""Likelihood ratios: calibration of scores against a population, and their validation.

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

Calibrator: lir's ``LogitCalibrator`` (logistic regression of the label on the score, classes
weighted equally, no regularisation: maximum likelihood), followed by lir's ``ELUBBounder``
(Vergeer et al. 2016, empirical lower and upper bounds). Why logistic rather than KDE: the
log-LR it gives is a monotone (linear) function of the score, so a higher similarity never
gives a lower LR, it has two parameters and is stable with few same-source scores, and it is
the standard calibration of biometric scores (Brümmer & du Preez 2006; Morrison 2013). KDE
ratios are non-monotone in the tails where one density vanishes faster than the other, which is
exactly where face-swap scores fall. Logistic regression extrapolates linearly beyond the
data, which is why the ELUB bounds follow: they cap the log10 LR at the strength the
calibration data can support (at most log10 of the number of different-source scores plus one),
so a small calibration set cannot claim absurd strength. ``method='kde'`` (Silverman bandwidth)
is available for comparison.

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lir.algorithms.bayeserror import ELUBBounder
from lir.algorithms.kde import KDECalibrator
from lir.algorithms.logistic_regression import LogitCalibrator
from lir.data.models import LLRData
from lir.metrics import cllr, cllr_min
from sklearn.metrics import roc_curve

from likeness import scores as sc
from likeness.files import write_csv_atomic, write_json_atomic

# Thresholds of the warnings (see the module docstring). 200 same-source scores put the
# standard error of a 1% error rate near 0.7%; 20 identities keep any one person from
# dominating the fitted slope.
MIN_SAME_SOURCE = 200
MIN_IDENTITIES = 20
MIN_REFERENCES = 3
DIFFERENT_PER_PHOTO = 8
METHODS = ("logistic", "kde")
SCORE_COLUMNS = ["score", "same_source", "identity", "reference_identity", "path"]


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
) -> pd.DataFrame:
    """Same-source and different-source scores of a population under the case's scoring rule.

    ``population``: an ``embed_population`` table (identity, path, status, embedding). Only
    usable photos count. An identity with at least ``n_refs`` photos gets a reference set of
    ``n_refs`` photos; its remaining photos are questioned photos (an identity with fewer
    photos contributes questioned photos only). Returns one row per score with
    ``SCORE_COLUMNS``: ``score``, ``same_source`` (bool), ``identity`` (of the questioned
    photo), ``reference_identity`` and ``path`` (of the questioned photo), sorted by path then
    reference identity. ``different_per_photo=None`` scores each photo against every other
    identity.
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
    if references.empty or questioned.empty:
        return pd.DataFrame({c: [] for c in SCORE_COLUMNS}).astype(
            {"score": float, "same_source": bool}
        )
    matrix, ref_ids = sc.identity_score_matrix(
        sc.embedding_matrix(questioned["embedding"]), references, top_k
    )
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
    out = pd.DataFrame({
        "score": matrix[q, r],
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


def fit_calibrator(scores_df: pd.DataFrame, method: str = "logistic") -> FittedCalibrator:
    """Fit lir's calibrator (``method``: 'logistic' or 'kde') and its ELUB bounds to scores.

    ``scores_df`` is :func:`calibration_scores` output. Raises ValueError when there are no
    same-source or no different-source scores (nothing to calibrate on).
    """
    x, y = _labels(scores_df)
    n_same = int(y.sum())
    n_diff = int(len(y) - n_same)
    if n_same == 0 or n_diff == 0:
        raise ValueError(
            f"cannot calibrate: {n_same} same-source and {n_diff} different-source scores; "
            "the population needs identities with at least n_refs + 1 usable photos"
        )
    if method == "logistic":
        # C=inf: plain maximum likelihood. lir's default (sklearn's C=1) shrinks the slope,
        # by an amount that depends on the number of scores, not on the evidence.
        calibrator = LogitCalibrator(C=np.inf, max_iter=1000)
    elif method == "kde":
        calibrator = KDECalibrator(bandwidth="silverman")
    else:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    calibrator.fit(x, y)
    raw = np.asarray(calibrator.transform(x), dtype=np.float64).reshape(-1)
    # elub() overwrites extreme values of its input in place: give it a copy.
    bounder = ELUBBounder().fit(LLRData(features=raw.copy(), labels=y))
    return FittedCalibrator(
        method=method,
        calibrator=calibrator,
        lower_log10_lr=float(bounder.lower_llr_bound),
        upper_log10_lr=float(bounder.upper_llr_bound),
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
    raw = np.asarray(calibrator.calibrator.transform(x[ok]), dtype=np.float64).reshape(-1)
    bounder = ELUBBounder(calibrator.lower_log10_lr, calibrator.upper_log10_lr)
    out[ok] = bounder.transform(LLRData(features=raw)).llrs
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
    return {
        "library": f"lir {version('lir')}",
        "calibrator": {"logistic": "lir.algorithms.logistic_regression.LogitCalibrator",
                       "kde": "lir.algorithms.kde.KDECalibrator"}[calibrator.method],
        "method": calibrator.method,
        "parameters": params,
        "bounder": "lir.algorithms.bayeserror.ELUBBounder (Vergeer et al. 2016)",
        "lower_log10_lr": round(calibrator.lower_log10_lr, 6),
        "upper_log10_lr": round(calibrator.upper_log10_lr, 6),
        "n_same_source": calibrator.n_same_source,
        "n_different_source": calibrator.n_different_source,
        "n_identities": calibrator.n_identities,
    }


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


def validate(calibrator: FittedCalibrator, scores_df: pd.DataFrame) -> dict[str, Any]:
    """Performance of a calibrator on validation scores (identity-disjoint from its data).

    Returns: ``n_same_source``, ``n_different_source``, ``n_identities``, ``eer`` (of the
    scores: discrimination, independent of calibration), ``cllr`` (of the bounded LRs:
    discrimination and calibration, 0 perfect, 1 = an uninformative system), ``cllr_min``
    (after PAV, the discrimination part), ``cllr_cal`` (their difference, the calibration
    loss), the rates of misleading evidence (same-source scores with LR < 1,
    different-source scores with LR > 1), the share of LRs at either bound, and the range of
    the LRs.
    """
    x, y = _labels(scores_df)
    llrs = log10_lr(calibrator, x)
    data = LLRData(features=llrs, labels=y)
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
        "misleading_same_source": round(float(np.mean(llrs[y == 1] < 0)), 6),
        "misleading_different_source": round(float(np.mean(llrs[y == 0] > 0)), 6),
        "share_at_bounds": round(float(np.mean(at_bound)), 6),
        "min_log10_lr": round(float(np.min(llrs)), 6),
        "max_log10_lr": round(float(np.max(llrs)), 6),
    }


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


def calibrate_population(
    population: pd.DataFrame,
    n_refs: int,
    top_k: int,
    seed: int,
    *,
    method: str = "logistic",
    different_per_photo: int | None = DIFFERENT_PER_PHOTO,
    for_claimant: bool = True,
) -> tuple[FittedCalibrator | None, dict[str, Any], pd.DataFrame]:
    """Split, score, calibrate on one half and validate on the other.

    ``for_claimant``: ``n_refs`` is the number of a claimant's references (warn when they are
    few); False when it is a protocol's choice, as in :func:`validate_lfw`.

    Returns the fitted calibrator (None when calibration is impossible, e.g. no population),
    a JSON-able summary (``calibrator``: description or None, ``validation``: metrics or None,
    ``split``: identities of each half, ``warnings``: list of str, the parameters), and all
    scores with a ``half`` column ('calibration'/'validation') and their ``log10_lr``.
    """
    usable = sc.usable_photos(population)
    cal_ids, val_ids = split_identities(usable["identity"].tolist(), seed)
    # With no usable reference the case has no scores; the population is still calibrated
    # for one reference so that the summary shows what the population could support.
    n_refs_cal = max(int(n_refs), 1)
    parts = []
    for half, names in (("calibration", cal_ids), ("validation", val_ids)):
        df = calibration_scores(
            usable[usable["identity"].isin(names)], n_refs_cal, top_k, seed,
            different_per_photo=different_per_photo,
        )
        df.insert(0, "half", half)
        parts.append(df)
    cal_df, val_df = parts
    warnings = calibration_warnings(int(n_refs) if for_claimant else MIN_REFERENCES, cal_df,
                                    val_df)
    calibrator = None
    try:
        calibrator = fit_calibrator(cal_df, method)
    except ValueError as exc:
        warnings.append(f"no likelihood ratios: {exc}")
    validation = None
    if calibrator is not None and val_df["same_source"].any() and (~val_df["same_source"]).any():
        validation = validate(calibrator, val_df)
    elif calibrator is not None:
        warnings.append("validation half has no same-source or no different-source scores")
    all_scores = pd.concat(parts, ignore_index=True)
    all_scores["log10_lr"] = log10_lr(calibrator, all_scores["score"])
    summary = {
        "propositions": {
            "H1": "the questioned face is rendered to be recognizable as the claimant",
            "H2": "the questioned face depicts another person of the relevant population",
        },
        "score_rule": {"similarity": "cosine of L2-normalised embeddings",
                       "set_score": f"mean of the top-{int(top_k)} similarities",
                       "n_refs": n_refs_cal, "top_k": int(top_k)},
        "seed": int(seed),
        "different_per_photo": different_per_photo,
        "split": {"calibration": cal_ids, "validation": val_ids},
        "calibrator": describe_calibrator(calibrator) if calibrator else None,
        "validation": validation,
        "warnings": warnings,
    }
    return calibrator, summary, all_scores


def validate_lfw(
    model_name: str | None = None,
    out_dir: Path | str = "validation",
    *,
    seed: int | None = None,
    n_refs: int = 1,
    top_k: int | None = None,
    method: str = "logistic",
    max_per_identity: int | None = None,
    population_root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate the LR method on LFW: what ``likeness validate`` runs.

    Embeds LFW (``testdata_root()/lfw/images_deepfunneled`` unless ``population_root`` is
    given; cached by the embeddings module), calibrates on one identity half and validates
    on the other, and writes into ``out_dir``: ``validation.json`` (calibrator, metrics,
    warnings), ``validation_scores.csv`` and the Tippett, ECE and score-distribution plots
    (PNG and SVG). ``n_refs=1`` mirrors LFW's own one-photo-against-one-photo protocol;
    ``max_per_identity`` and ``top_k`` default to the case defaults, so the photos (and their
    cached embeddings) are the ones a default case's population uses. Returns the summary
    with the paths written under ``files``.
    """
    from likeness import embeddings, figures, models
    from likeness.case import ANALYSIS_DEFAULTS, testdata_root

    model_name = model_name or models.DEFAULT_MODEL
    seed = int(ANALYSIS_DEFAULTS["seed"] if seed is None else seed)
    top_k = int(ANALYSIS_DEFAULTS["top_k"] if top_k is None else top_k)
    if max_per_identity is None:
        max_per_identity = int(ANALYSIS_DEFAULTS["max_photos_per_identity"])
    root = Path(population_root) if population_root else (
        testdata_root() / "lfw" / "images_deepfunneled"
    )
    population = embeddings.embed_population(
        root, (), model_name=model_name, max_per_identity=max_per_identity, progress=progress
    )
    calibrator, summary, all_scores = calibrate_population(
        population, n_refs, top_k, seed, method=method, for_claimant=False
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    val = all_scores[all_scores["half"] == "validation"]
    files: list[Path] = []
    if calibrator is not None and summary["validation"] is not None:
        title = f"LFW validation half, {model_name}"
        files += figures.tippett_plot(val, out / "tippett", title=title)
        files += figures.ece_plot(val, out / "ece", title=title)
        files += figures.score_distributions(
            {"same source (validation)": val.loc[val["same_source"], "score"],
             "different source (validation)": val.loc[~val["same_source"], "score"]},
            out / "score_distributions", title=title,
        )
    scores_csv = out / "validation_scores.csv"
    write_csv_atomic(all_scores, scores_csv)
    files.append(scores_csv)
    summary.update(
        # The weights' path differs per machine; the hash identifies them.
        model={k: v for k, v in models.model_record(model_name).items() if k != "weights_path"},
        population_root=str(root),
        max_per_identity=max_per_identity,
        n_photos=len(population),
        n_usable_photos=len(sc.usable_photos(population)),
    )
    summary["files"] = sorted(str(p.relative_to(out)) for p in [*files, out / "validation.json"])
    write_json_atomic(out / "validation.json", summary)
    return summary
