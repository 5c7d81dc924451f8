"""How wide should the face crop be? The embedder's crop margin decided by evidence.

The crop (:func:`likeness.face_crop.crop_faces`) widens MTCNN's box by ``CROP_MARGIN`` pixels of
the 160 px crop before the embedder sees it. likeness took 14 from facenet-pytorch's LFW
evaluation (a VGGFace2 model); the default embedder, FaceNet 20180408-102900 (CASIA-WebFace),
was trained by its author on wider crops (``align_dataset_mtcnn.py --margin 44`` at 182 px,
then a random 160 px crop). This benchmark measures, for each margin:

* calibration data, LFW (the analysis's population, at most ``max_photos_per_identity``
  photos per identity): the evidence method of ``likeness analyze``
  (:func:`likeness.evidence.calibrate_population`: identity-disjoint halves, AS-norm, 3
  references, the calibrator chosen by validation), reported on the validation half (Cllr,
  Cllr_min, EER, misleading rates);
* development data, the DeepFaceLive series (``deepfacelive/series_keanu_dev``, truth.tsv):
  the whole case run (:func:`likeness.analysis.analyze_case`), per episode the highest track
  log10 LR, and the gap between the lowest normalised score of a swap track that supports the
  claimant and the highest score of every other track.

A margin is chosen on LFW and only checked on the series. The screening's flag rule is measured
apart, per margin, by ``python benchmarks/watchlist.py --crop-margin PX`` (results for 32 in
``benchmarks/results/watchlist_margin32.json``; ``watchlist.json`` is the default's). Every
margin embeds the population and the series again (cached per margin: every cache key holds
the margin).

    python benchmarks/crop_margin.py [--margins 14 24 32 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from likeness import embeddings, evidence, face_crop, inference
from likeness.analysis import analyze_case
from likeness.calibration import MIN_REFERENCES
from likeness.case import ANALYSIS_DEFAULTS, load_case, testdata_root
from likeness.files import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
VALIDATION_KEYS = ("cllr", "cllr_min", "eer", "misleading_same_source",
                   "misleading_different_source", "n_same_source", "n_different_source")


def lfw_evidence() -> dict:
    """The analysis's evidence method on LFW at the current margin: validation-half figures."""
    pop = embeddings.embed_population(
        testdata_root() / "lfw" / "images_deepfunneled",
        max_per_identity=int(ANALYSIS_DEFAULTS["max_photos_per_identity"]), progress=False)
    result = evidence.calibrate_population(pop, MIN_REFERENCES, int(ANALYSIS_DEFAULTS["top_k"]),
                                           int(ANALYSIS_DEFAULTS["seed"]))
    validation = result.summary["validation"] or {}
    return {"method": result.summary["calibrator"],
            **{k: validation.get(k) for k in VALIDATION_KEYS}}


def series_evidence(folder: Path) -> dict:
    """The development series analysed as a case at the current margin."""
    series = testdata_root() / "deepfacelive" / "series_keanu_dev"
    truth = pd.read_csv(series / "truth.tsv", sep="\t")
    swaps = set(truth.loc[truth["claimant_swap"] == "yes", "episode"])
    run_dir = folder / f"run-{face_crop.CROP_MARGIN}"
    analyze_case(load_case(series / "case.yaml"), run_dir, progress=False)
    episodes = pd.read_csv(run_dir / "episodes.csv").set_index("episode")
    tracks = pd.read_csv(run_dir / "tracks.csv")
    swap = episodes.index.isin(sorted(swaps))
    supporting = tracks["episode"].isin(swaps) & (tracks["log10_lr"] > 1.0)
    return {
        "max_log10_lr": {str(e): round(float(v), 3) for e, v in episodes["max_log10_lr"].items()},
        "swap_min_of_max_log10_lr": round(float(episodes.loc[swap, "max_log10_lr"].min()), 3),
        "other_max_of_max_log10_lr": round(float(episodes.loc[~swap, "max_log10_lr"].max()), 3),
        "swap_episodes_rank_1": int((episodes.loc[swap, "best_track_lineup_rank"] == 1).sum()),
        "n_swap_episodes": int(swap.sum()),
        "score_gap": round(float(tracks.loc[supporting, "score"].min()
                                 - tracks.loc[~supporting, "score"].max()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--margins", type=int, nargs="+", default=[14, 24, 32, 40])
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/crop_margin.json"))
    args = parser.parse_args()
    default = face_crop.CROP_MARGIN
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for margin in args.margins:
            face_crop.CROP_MARGIN = margin
            t0 = time.perf_counter()
            row = {"margin": margin, "lfw": lfw_evidence(), "series": series_evidence(Path(tmp))}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            lfw, ser = row["lfw"], row["series"]
            print(f"margin {margin}: LFW Cllr {lfw['cllr']} Cllr_min {lfw['cllr_min']} "
                  f"EER {lfw['eer']}; series swap min {ser['swap_min_of_max_log10_lr']} "
                  f"other max {ser['other_max_of_max_log10_lr']} gap {ser['score_gap']} "
                  f"({row['seconds']} s)", flush=True)
    face_crop.CROP_MARGIN = default
    result = {
        "what": __doc__.split("\n\n")[0],
        "default_margin": default,
        "margins": rows,
        "method": {"model": ANALYSIS_DEFAULTS["model"], "n_refs": MIN_REFERENCES,
                   "runtime": inference.runtime_name("cpu")},
        "versions": {"python": platform.python_version(), "torch": version("torch"),
                     "facenet-pytorch": version("facenet-pytorch")},
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(Path(args.json), result)
    print(f"wrote {args.json} in {result['seconds']} s")


if __name__ == "__main__":
    main()
