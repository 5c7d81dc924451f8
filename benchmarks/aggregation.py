"""Which aggregation of a track's faces validates best? (issue 7, point 4)

A track is many looks at one face. Three ways to turn them into one score are compared on LFW,
identity-disjoint, with the case's own rule (AS-norm against the other half as cohort, 3
references, top-3 set score):

* ``mean_of_scores``: the quality-weighted mean of the faces' normalised scores (the current
  rule of :mod:`likeness.episodes`);
* ``score_of_mean``: the normalised score of the quality-weighted mean embedding (Ribeiro et
  al. 2023 aggregate embeddings);
* ``best_quarter``: the mean normalised score of the best-quality quarter of the faces
  (Macarulla Rodriguez et al. 2024).

"Tracks" are groups of 2 or 4 (``GROUPS``) photos of one identity that are not in its reference set;
each is scored against its own identity's reference set (same source) and against
``DIFFERENT`` other identities' sets (different source). Reported: EER and Cllr_min (the
discrimination each aggregation allows; calibration is refitted per rule in practice).

    python benchmarks/aggregation.py [--out benchmarks/results/aggregation.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from lir.data.models import LLRData
from lir.metrics import cllr_min

from likeness import calibration as cal
from likeness import cohort as coh
from likeness import scores as sc
from likeness import validation as va
from likeness.case import ANALYSIS_DEFAULTS, testdata_root
from likeness.embeddings import embed_population

GROUPS = (2, 4)  # photos per simulated track
DIFFERENT = 8
N_REFS = 3


def _groups(
    photos: pd.DataFrame, seed: int, group: int
) -> tuple[pd.DataFrame, list[tuple[str, np.ndarray]]]:
    """Reference sets (N_REFS photos per identity) and questioned groups of ``group`` photos."""
    rng = np.random.default_rng(seed)
    refs, groups = [], []
    for identity, g in photos.groupby("identity", sort=True):
        idx = rng.permutation(len(g))
        if len(g) < N_REFS + group:
            continue
        refs.append(g.iloc[idx[:N_REFS]])
        rest = idx[N_REFS:]
        for k in range(0, len(rest) - group + 1, group):
            groups.append((identity, g.index.to_numpy()[rest[k:k + group]]))
    return pd.concat(refs), groups


def evaluate(
    population: pd.DataFrame, seed: int, top_k: int, group: int
) -> dict[str, dict[str, float]]:
    photos = sc.usable_photos(population).reset_index(drop=True)
    cal_ids, val_ids = cal.split_identities(photos["identity"].tolist(), seed)
    cohort = coh.make_cohort(photos[photos["identity"].isin(cal_ids)], N_REFS, top_k, seed)
    half = photos[photos["identity"].isin(val_ids)]
    refs, groups = _groups(half, seed, group)
    ref_ids = sorted(refs["identity"].unique())
    emb = sc.embedding_matrix(photos["embedding"])
    quality = sc.quality_weights(photos["quality"])
    _, mu_e, sd_e = coh.enrolment_side(cohort, refs)
    enrol = dict(zip(ref_ids, zip(mu_e, sd_e, strict=True), strict=True))
    raw_all, _ = sc.identity_score_matrix(emb, refs, top_k)  # photos x ref identities
    test_mu, test_sd = coh.test_side(cohort, emb)
    rng = np.random.default_rng(seed + 1)
    out: dict[str, list] = {"mean_of_scores": [], "score_of_mean": [], "best_quarter": []}
    labels: list[bool] = []
    for identity, rows in groups:
        others = [r for r in ref_ids if r != identity]
        targets = [identity, *rng.choice(others, size=DIFFERENT, replace=False)]
        w = quality[rows]
        mean_emb = sc.embedding_matrix((w[:, None] * emb[rows]).sum(axis=0, keepdims=True))
        mean_raw, _ = sc.identity_score_matrix(mean_emb, refs, top_k)
        m_mu, m_sd = coh.test_side(cohort, mean_emb)
        best = rows[np.argsort(-w, kind="stable")[: max(1, len(rows) // 4)]]
        for target in targets:
            j = ref_ids.index(target)
            e = enrol[target]
            face_norm = coh.as_norm(raw_all[rows, j], (test_mu[rows], test_sd[rows]), e)
            out["mean_of_scores"].append(float(np.average(face_norm, weights=w)))
            out["score_of_mean"].append(float(coh.as_norm(mean_raw[:, j], (m_mu, m_sd), e)[0]))
            best_norm = coh.as_norm(raw_all[best, j], (test_mu[best], test_sd[best]), e)
            out["best_quarter"].append(float(best_norm.mean()))
            labels.append(target == identity)
    y = np.asarray(labels)
    result = {}
    for name, values in out.items():
        x = np.asarray(values)
        # Cllr_min of the scores themselves: PAV is invariant to any monotone map, so the
        # score can stand in for a log LR here.
        result[name] = {
            "eer": round(va.equal_error_rate(x, y), 6),
            "cllr_min": round(float(cllr_min(LLRData(features=x, labels=y.astype(int)))), 6),
            "n_same_source": int(y.sum()),
            "n_different_source": int((~y).sum()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/aggregation.json")
    args = parser.parse_args()
    seed, top_k = int(ANALYSIS_DEFAULTS["seed"]), int(ANALYSIS_DEFAULTS["top_k"])
    population = embed_population(
        testdata_root() / "lfw/images_deepfunneled", (),
        max_per_identity=int(ANALYSIS_DEFAULTS["max_photos_per_identity"]), progress=False,
    )
    result = {}
    for group in GROUPS:
        result[f"group_{group}"] = evaluate(population, seed, top_k, group)
        for name, m in result[f"group_{group}"].items():
            print(f"{group} photos {name:15s} EER {m['eer']:.4f}  Cllr_min {m['cllr_min']:.4f}"
                  f"  ({m['n_same_source']} same, {m['n_different_source']} different)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", "utf-8")


if __name__ == "__main__":
    main()
