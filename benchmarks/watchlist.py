"""Watchlist simulation on LFW: how often does screening flag someone who is not there?

A track screened against W watchlisted persons has about W chances of a misleading LR, so a
flag threshold validated for one comparison (a case) is not validated for a screening. This
benchmark measures the screening's flag rule (likeness.screen.worker.score_candidates: the
gallery's candidates, the calibrated track LR of the same evidence method as ``analyze``, the
lineup rank among watchlist + population) on LFW identities split, per seed, into four
identity-disjoint parts:

* watchlist: ``--watchlist-size`` identities with at least 2 usable photos; each keeps its
  first min(max_references, photos - 1) photos (sorted by path) as references, as a screening
  does;
* probes on the watchlist: the other photos of the watchlisted identities;
* probes not on the watchlist: every photo of ``--off-size`` further identities;
* population: the remaining identities (calibration, cohort and lineup).

Every probe photo is one single-face track (quality 1), screened exactly as a video track is.
For each log10 LR threshold t of a grid (with lineup rank 1 required), it reports the per-probe
false-flag rate (a probe not on the watchlist flagged for anyone), the hit rate (a watchlisted
probe flagged for its own identity) and the wrong-person rate (a watchlisted probe flagged for
someone else), pooled over the seeds, and t_W: the smallest t of the grid (step 0.05) whose
false-flag rate is at most ``--alpha`` (the wrong-person rate is reported beside it).

Photos are embedded as population photos (the centre face); a screening embeds watchlist
photos by their dominant face, which for LFW's centred photos is the same face.

    python benchmarks/watchlist.py [--watchlist-size 54] [--off-size 40] [--seeds 0,1,2]
        [--alpha 0.02] [--evidence analyze|raw-logistic] [--crop-margin PX] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from likeness import embeddings, face_crop, faces, inference
from likeness.case import testdata_root
from likeness.scores import usable_photos
from likeness.screen import default_params, scoring
from likeness.screen import gallery as gal
from likeness.screen.worker import ScreenParams, Watch, flags, score_candidates

LINEUP_COLUMNS = ["identity", "path", "sha256", "embedding"]
GRID = np.round(np.arange(0.0, 3.65, 0.05), 2)


def load_lfw(params: ScreenParams) -> pd.DataFrame:
    """Usable LFW photos (the population embeddings, from the shared cache when warm)."""
    a = params.analysis
    device = faces.resolve_device(a.device)
    detector = faces.load_detector(str(device), a.min_face_size)
    model = inference.load_embedder(a.model, str(device))  # as screening runs it
    table = embeddings.embed_population(
        testdata_root() / "lfw/images_deepfunneled", [], model_name=a.model, device=a.device,
        model=model, detector=detector, min_face_size=a.min_face_size,
        min_prob=a.min_detection_prob, max_per_identity=a.max_photos_per_identity,
        progress=False)
    return usable_photos(table).sort_values(["identity", "path"], kind="stable",
                                            ignore_index=True)


def split(photos: pd.DataFrame, n_watch: int, n_off: int, seed: int) -> dict[str, list[str]]:
    counts = photos.groupby("identity").size()
    rng = np.random.default_rng(seed)
    eligible = sorted(counts[counts >= 2].index)
    watch = sorted(rng.permutation(eligible)[:n_watch].tolist())
    rest = sorted(set(counts.index) - set(watch))
    off = sorted(rng.permutation(rest)[:n_off].tolist())
    return {"watchlist": watch, "off": off,
            "population": sorted(set(rest) - set(off))}


def simulate(photos: pd.DataFrame, params: ScreenParams, parts: dict[str, list[str]],
             seed: int, evidence: str) -> pd.DataFrame:
    """One split: per probe, its identity, whether on the watchlist, and its scored
    candidates' (person, log10 LR, lineup rank)."""
    a = params.analysis
    population = photos[photos["identity"].isin(parts["population"])]
    refs, on_probes = [], []
    for person in parts["watchlist"]:
        own = photos[photos["identity"] == person]
        n_refs = min(params.max_references, len(own) - 1)
        refs.append(own.iloc[:n_refs])
        on_probes.append(own.iloc[n_refs:])
    watch_refs = pd.concat(refs, ignore_index=True)
    references = {p: r.reset_index(drop=True) for p, r in watch_refs.groupby("identity")}
    calibrators = {}
    for n_refs in sorted({len(r) for r in references.values()}):
        calibrators[n_refs], _, _ = scoring.calibrate(population, n_refs, top_k=a.top_k,
                                                      seed=a.seed, evidence=evidence)
    watch = Watch(params=params,
                  gallery=gal.build_gallery(watch_refs, use_index=False,
                                            search_k=params.search_k),
                  references=references,
                  lineup=pd.concat([population[LINEUP_COLUMNS], watch_refs[LINEUP_COLUMNS]],
                                   ignore_index=True),
                  calibrators=calibrators, out=Path(tempfile.gettempdir()))
    probes = pd.concat([*on_probes, photos[photos["identity"].isin(parts["off"])]],
                       ignore_index=True)
    table = pd.DataFrame({"track_id": np.arange(len(probes), dtype=np.int64),
                          "frame_index": 0, "box_x1": 0.0, "quality": 1.0,
                          "embedding": probes["embedding"].to_numpy()})
    scored = score_candidates(watch, table)
    scored["identity"] = probes["identity"].to_numpy()[scored["track_id"].to_numpy()]
    scored["on_watchlist"] = scored["identity"].isin(parts["watchlist"])
    scored["seed"] = seed
    return scored


def rates(scored: pd.DataFrame, params: ScreenParams, n_probes: dict[str, int]) -> pd.DataFrame:
    """Per-probe rates at every threshold of GRID (lineup rank rule as declared)."""
    rows = []
    for t in GRID:
        hit = flags(scored["log10_lr"], scored["lineup_rank"],
                    dataclasses.replace(params, flag_log10_lr=float(t)))
        f = scored[hit]
        key = ["seed", "track_id"]
        off = f[~f["on_watchlist"]].drop_duplicates(key)
        right = f[f["on_watchlist"] & (f["person"] == f["identity"])].drop_duplicates(key)
        wrong = f[f["on_watchlist"] & (f["person"] != f["identity"])].drop_duplicates(key)
        rows.append({"log10_lr_threshold": float(t),
                     "false_flag_rate_off": len(off) / n_probes["off"],
                     "wrong_person_rate_on": len(wrong) / n_probes["on"],
                     "hit_rate_on": len(right) / n_probes["on"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchlist-size", type=int, default=54)
    parser.add_argument("--off-size", type=int, default=40)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--alpha", type=float, default=0.02)
    parser.add_argument("--evidence", default="analyze", choices=sorted(scoring.EVIDENCE_METHODS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--crop-margin", type=int, default=face_crop.CROP_MARGIN,
                        help="the embedder's crop margin (benchmarks/crop_margin.py's study)")
    args = parser.parse_args(argv)
    face_crop.CROP_MARGIN = args.crop_margin
    params = default_params()
    start = time.perf_counter()
    photos = load_lfw(params)
    all_scored, n_probes = [], {"on": 0, "off": 0}
    for seed in (int(s) for s in args.seeds.split(",")):
        parts = split(photos, args.watchlist_size, args.off_size, seed)
        scored = simulate(photos, params, parts, seed, args.evidence)
        probes = scored.drop_duplicates("track_id")
        n_probes["on"] += int(probes["on_watchlist"].sum())
        n_probes["off"] += int((~probes["on_watchlist"]).sum())
        all_scored.append(scored)
        print(f"seed {seed}: {len(parts['watchlist'])} watchlisted, {len(parts['off'])} off, "
              f"{len(parts['population'])} population identities", file=sys.stderr)
    scored = pd.concat(all_scored, ignore_index=True)
    table = rates(scored, params, n_probes)
    ok = table[table["false_flag_rate_off"] <= args.alpha]
    t_w = float(ok["log10_lr_threshold"].min()) if len(ok) else None

    def at(t: float) -> dict:
        return table[np.isclose(table["log10_lr_threshold"], t)].iloc[0].round(6).to_dict()

    result = {
        "rule": "flag = lineup rank 1 among watchlist + population and track log10 LR >= t_W",
        "alpha": args.alpha, "t_W": t_w,
        "watchlist_size": args.watchlist_size, "off_watchlist_identities": args.off_size,
        "seeds": args.seeds, "n_probes": n_probes,
        "at_t_W": at(t_w) if t_w is not None else None,
        "at_1.0": at(1.0), "at_2.0": at(2.0), "at_3.0": at(3.0),
        "evidence_method": args.evidence,
        "crop_margin": face_crop.CROP_MARGIN,
        "seconds": round(time.perf_counter() - start, 1),
        "curve": table.round(6).to_dict("records"),
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
