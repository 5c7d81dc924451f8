"""Sensitivity of a case's findings: how each episode's strongest evidence moves when one
declared choice is changed at a time.

The factors (each row of ``sensitivity.csv`` is one episode under one variant; the point
estimate only, no bootstrap):

* ``reference``: leave each usable reference photo out in turn (a calibration for one
  reference fewer is fitted once). One photo of unknown origin must not decide a case
  unseen: if one reference drives the evidence, this shows it.
* ``calibrator``: every calibrator that was compared (:mod:`likeness.validation`).
* ``population``: the full population, and each half of it (identities split by the case's
  seed) with its own calibration.
* ``model``: every model of ``compare_models`` that was run on the case (``models/<name>/``).

``sensitivity_summary.csv`` gives, per episode and factor, the lowest and highest strongest
log10 LR and their spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import evidence as ev
from likeness import scores as sc
from likeness.case import Case
from likeness.files import write_csv_atomic

COLUMNS = ["episode", "factor", "variant", "max_log10_lr"]
SUMMARY_COLUMNS = ["episode", "factor", "n_variants", "min_log10_lr", "max_log10_lr", "spread"]


def strongest_llr(
    faces: pd.DataFrame,
    emb: np.ndarray,
    references: np.ndarray,
    calibration: ev.Calibration,
    top_k: int,
    calibrator: cal.FittedCalibrator | None = None,
) -> float:
    """The strongest track log10 LR of one episode's faces (as :mod:`likeness.episodes`):
    ``faces`` holds ``track_id`` and ``quality``, ``emb`` their embeddings, row for row."""
    if faces.empty:
        return 0.0
    scores = ev.claimant_scores(calibration, emb, references, top_k)["score"]
    _, track = sc.track_weighted_mean(faces["track_id"].to_numpy(),
                                      sc.quality_weights(faces["quality"]), scores)
    llr = cal.log10_lr(calibrator or calibration.calibrator, track)
    return float(np.nanmax(llr)) if np.isfinite(llr).any() else np.nan


def _rows(faces_by_episode, refs, calibration, top_k, factor, variant, calibrator=None):
    return [
        {"episode": e, "factor": factor, "variant": variant,
         "max_log10_lr": strongest_llr(f, emb, refs, calibration, top_k, calibrator)}
        for e, (f, emb) in faces_by_episode.items()
    ]


def sensitivity_table(
    case: Case,
    run_dir: Path,
    faces_by_episode: dict[str, tuple[pd.DataFrame, np.ndarray]],
    references: pd.DataFrame,
    population: pd.DataFrame,
    calibration: ev.Calibration,
) -> pd.DataFrame:
    """Every variant of every factor (see the module docstring), one row per episode.

    ``faces_by_episode``: per episode, its faces table (``track_id``, ``quality``) and their
    embeddings row for row (:func:`likeness.faces_table.read_episode_faces`).
    """
    params = case.analysis
    norm = None if params.normalisation == "none" else "as-norm"
    usable = sc.usable_photos(references).reset_index(drop=True)
    refs = sc.embedding_matrix(usable["embedding"])
    rows = _rows(faces_by_episode, refs, calibration, params.top_k, "reference", "all")
    if len(usable) >= 2:
        fewer = ev.calibrate_population(population, len(usable) - 1, params.top_k,
                                        params.seed, method=params.calibration_method,
                                        normalisation=norm)
        for i, path in enumerate(usable["path"]):
            kept = np.delete(refs, i, axis=0)
            rows += _rows(faces_by_episode, kept, fewer, params.top_k, "reference",
                          f"without {Path(str(path)).name}")
    for fitted in calibration.fitted:
        rows += _rows(faces_by_episode, refs, calibration, params.top_k, "calibrator",
                      fitted.method, fitted)
    rows += _rows(faces_by_episode, refs, calibration, params.top_k, "population", "full")
    pop = sc.usable_photos(population)
    halves = cal.split_identities(pop["identity"].tolist(), params.seed + 1)
    for name, ids in zip(("half A", "half B"), halves, strict=True):
        part = ev.calibrate_population(pop[pop["identity"].isin(ids)], len(usable),
                                       params.top_k, params.seed,
                                       method=params.calibration_method, normalisation=norm)
        if part.calibrator is not None:
            rows += _rows(faces_by_episode, refs, part, params.top_k, "population",
                          f"{name} ({len(ids)} identities)")
    rows += [
        {"episode": e, "factor": "model", "variant": params.model, "max_log10_lr": v}
        for e, v in ((r["episode"], r["max_log10_lr"]) for r in rows[: len(faces_by_episode)])
    ]
    for model_dir in sorted((Path(run_dir) / "models").glob("*/episodes.csv")):
        other = pd.read_csv(model_dir)
        rows += [{"episode": e, "factor": "model", "variant": model_dir.parent.name,
                  "max_log10_lr": v}
                 for e, v in zip(other["episode"], other["max_log10_lr"], strict=True)
                 if e in faces_by_episode]
    return pd.DataFrame(rows, columns=COLUMNS)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per episode and factor: the range of the strongest evidence over the variants."""
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = table.groupby(["episode", "factor"], sort=False)["max_log10_lr"]
    out = grouped.agg(n_variants="size", min_log10_lr="min", max_log10_lr="max").reset_index()
    out["spread"] = out["max_log10_lr"] - out["min_log10_lr"]
    return out[SUMMARY_COLUMNS]


def write_sensitivity(
    case: Case,
    run_dir: Path,
    faces_by_episode: dict[str, tuple[pd.DataFrame, np.ndarray]],
    references: pd.DataFrame,
    population: pd.DataFrame,
    calibration: ev.Calibration,
    episodes: pd.DataFrame,
) -> pd.DataFrame:
    """Write ``sensitivity.csv`` and ``sensitivity_summary.csv``; return the table."""
    table = sensitivity_table(case, run_dir, faces_by_episode, references, population,
                              calibration)
    order = {e: i for i, e in enumerate(episodes["episode"])}
    table = table.sort_values(["episode"], key=lambda s: s.map(order), kind="stable",
                              ignore_index=True)
    write_csv_atomic(table, Path(run_dir) / "sensitivity.csv")
    write_csv_atomic(summarise(table), Path(run_dir) / "sensitivity_summary.csv")
    return table
