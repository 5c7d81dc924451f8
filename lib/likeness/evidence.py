"""The evidence model of a case: cohort-normalised scores and the LRs calibrated for them.

:func:`calibrate_population` turns a population into everything a case's LRs come from (the
identity split, the AS-norm cohort of :mod:`likeness.cohort`, the calibrators compared and
chosen by :mod:`likeness.validation`, bootstrap refits for the intervals);
:func:`claimant_scores` scores questioned faces against a reference set under exactly the rule
the calibration data were scored with. ``likeness analyze`` (via :mod:`likeness.episodes`) and
``likeness screen`` both go through these two functions, so a case and a screening give the
same number for the same face.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import cohort as coh
from likeness import scores as sc
from likeness import validation as val


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Everything a case's LRs come from: the split, the cohort, the chosen calibrator."""

    calibrator: cal.FittedCalibrator | None
    cohort: coh.Cohort | None
    scores: pd.DataFrame  # every calibration and validation score, with 'half' and 'log10_lr'
    summary: dict[str, Any]
    replicates: tuple[cal.FittedCalibrator, ...] = ()
    fitted: tuple[cal.FittedCalibrator, ...] = ()  # every method compared, for sensitivity


def calibrate_population(
    population: pd.DataFrame,
    n_refs: int,
    top_k: int,
    seed: int,
    *,
    method: str = "auto",
    normalisation: str | None = "as-norm",
    different_per_photo: int | None = cal.DIFFERENT_PER_PHOTO,
    for_claimant: bool = True,
    bootstrap_samples: int = 0,
    probe: str = "embedding",
) -> Calibration:
    """Split, normalise, score, fit every calibrator, choose one by validation.

    The population's identities are split into two halves (seeded). Calibration pairs of
    the first half are normalised with the second half as cohort and vice versa, so no score
    is normalised by its own identities; the case's faces are normalised with the same cohort
    as the calibration pairs (the validation half), so the calibrator sees exactly the kind
    of number it is applied to. Every method of METHODS is fitted on the calibration half and
    validated on the other (:func:`likeness.validation.compare_calibrators`); ``method='auto'``
    takes the choice that comparison makes, a named method overrides it.

    ``for_claimant``: ``n_refs`` is the number of a claimant's references (warn when they are
    few); False when it is a protocol's choice, as in :func:`likeness.validation.validate_lfw`.
    ``bootstrap_samples``: refits on identity resamples
    (:func:`likeness.calibration.bootstrap_calibrators`).
    ``probe``: the column of the questioned photos' embeddings
    (:func:`likeness.calibration.calibration_scores`); the references and the cohort keep
    ``embedding``.
    """
    usable = sc.usable_photos(population)
    cal_ids, val_ids = cal.split_identities(usable["identity"].tolist(), seed)
    # With no usable reference the case has no scores; the population is still calibrated
    # for one reference so that the summary shows what the population could support.
    n_refs_cal = max(int(n_refs), 1)
    halves = {"calibration": (cal_ids, val_ids), "validation": (val_ids, cal_ids)}
    parts, cohorts = [], {}
    for half, (names, cohort_names) in halves.items():
        cohort = None
        if normalisation == "as-norm" and cohort_names:
            cohort = coh.make_cohort(usable[usable["identity"].isin(cohort_names)],
                                     n_refs_cal, top_k, seed)
        cohorts[half] = cohort
        df = cal.calibration_scores(
            usable[usable["identity"].isin(names)], n_refs_cal, top_k, seed,
            different_per_photo=different_per_photo, cohort=cohort, probe=probe,
        )
        df.insert(0, "half", half)
        parts.append(df)
    cal_df, val_df = parts
    warnings = cal.calibration_warnings(int(n_refs) if for_claimant else cal.MIN_REFERENCES, cal_df,
                                    val_df)
    comparison, fitted = val.compare_calibrators(cal_df, val_df)
    chosen = val.choose_calibrator(comparison) if method == "auto" else method
    calibrator = fitted.get(chosen)
    if calibrator is None:
        reason = comparison["note"].iloc[0] if len(comparison) else "no population"
        warnings.append(f"no likelihood ratios: {reason}")
    validation = None
    if calibrator is not None and val_df["same_source"].any() and (~val_df["same_source"]).any():
        validation = val.validate(calibrator, val_df)
    elif calibrator is not None:
        warnings.append("validation half has no same-source or no different-source scores")
    all_scores = pd.concat(parts, ignore_index=True)
    all_scores["log10_lr"] = cal.log10_lr(calibrator, all_scores["score"])
    replicates = tuple(cal.bootstrap_calibrators(cal_df, calibrator, bootstrap_samples, seed)
                       ) if calibrator is not None else ()
    comparison["chosen"] = comparison["method"] == chosen
    summary = {
        "propositions": {
            "H1": "the questioned face is rendered to be recognizable as the claimant",
            "H2": "the questioned face depicts another person of the relevant population",
        },
        "score_rule": {"similarity": "cosine of L2-normalised embeddings",
                       "set_score": f"mean of the top-{int(top_k)} similarities",
                       "n_refs": n_refs_cal, "top_k": int(top_k)},
        "normalisation": (
            {"rule": "AS-norm (adaptive symmetric normalisation)",
             "cohort": "the validation half of the population (identity-disjoint from the "
                       "calibration pairs; the calibration half normalises the validation "
                       "pairs)",
             "cohort_size": coh.COHORT_SIZE,
             "n_cohort_identities": len(cohorts["calibration"].identities)
             if cohorts["calibration"] else 0}
            if normalisation == "as-norm" else {"rule": "none (raw set scores)"}
        ),
        "seed": int(seed),
        "different_per_photo": different_per_photo,
        "split": {"calibration": cal_ids, "validation": val_ids},
        "method_rule": val.CHOICE_RULE if method == "auto" else f"declared: {method}",
        "calibrator": cal.describe_calibrator(calibrator) if calibrator else None,
        "comparison": comparison.to_dict("records"),
        "validation": validation,
        "calibration_bootstrap_samples": len(replicates),
        "warnings": warnings,
    }
    return Calibration(calibrator=calibrator, cohort=cohorts["calibration"],
                       scores=all_scores, summary=summary, replicates=replicates,
                       fitted=tuple(fitted.values()))


def normalised_scores(
    calibration: Calibration, faces: np.ndarray, references: np.ndarray, raw: np.ndarray
) -> np.ndarray:
    """The scores the calibrator takes: AS-norm of the raw set scores of ``faces`` (rows of an
    L2-normalised matrix) against ``references``, or the raw scores when the calibration is
    unnormalised."""
    raw = np.asarray(raw, dtype=np.float64)
    if calibration.cohort is None or not len(faces) or not len(references):
        return raw
    test = coh.test_side(calibration.cohort, faces)
    enrolment = coh.claimant_side(calibration.cohort, references)
    return coh.as_norm(raw, test, enrolment)


def claimant_scores(
    calibration: Calibration, faces: np.ndarray, references: np.ndarray, top_k: int
) -> pd.DataFrame:
    """Scores of faces (rows of an L2-normalised matrix) against one reference set.

    Columns: ``raw_score`` (the top-k set score of :mod:`likeness.scores`), ``best`` (the
    best single similarity), ``score`` (:func:`normalised_scores`), ``log10_lr`` (bounded).
    """
    raw = sc.set_scores(faces, references, top_k)
    out = pd.DataFrame({"raw_score": raw["score"].to_numpy(), "best": raw["best"].to_numpy()})
    out["score"] = normalised_scores(calibration, faces, references, out["raw_score"])
    out["log10_lr"] = cal.log10_lr(calibration.calibrator, out["score"])
    return out
