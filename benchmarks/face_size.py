"""How much evidence does a face carry as it shrinks? The detection scale decided by evidence.

The LFW population of the analysis (the test data's LFW subset, at most
``max_photos_per_identity`` photos per identity, identities with at least 2 usable photos) is
embedded at full size exactly as a case embeds it. Then every usable photo is shrunk (area
resampling, aspect kept) so that its face, as MTCNN boxed it on the original photo
(``face_px``: the side of the square of the box's area, the faces table's measure), is
``SIZES`` px, and it goes again through :func:`likeness.embeddings.embed_photos` (the
analysis's detection, centre-face selection, crop and embedder) with MTCNN at
``DETECT_MIN_FACE_SIZE`` px so that small faces can be found. A photo whose face is not found
at a size is counted in the detection rate and drops out of that size's scores.

Evidence at each size comes from :func:`likeness.evidence.calibrate_population`, the method of
``likeness analyze`` (identity-disjoint halves, AS-norm with the other half as cohort, 3
reference photos, top-3 set score, calibrator chosen by validation), with the questioned side
of every pair shrunk (``probe``): same-source and different-source pairs are both at that size,
the reference sets and the cohort stay at full resolution, as a case's references and
population are. Reported on the validation half: genuine median log10 LR and its 10th
percentile, share of genuine with LR > 1 and > 10, misleading different-source rate (LR > 1),
Cllr and EER; also the genuine LRs under the full-resolution calibration (what a shrunk face
gets from a case calibrated on full photos, as analyze calibrates).

Writes ``benchmarks/results/face_size.json``, the figure ``benchmarks/results/face_size.png``
(and ``.svg``) and the small summary the report quotes, ``lib/likeness/face_size_evidence.json``.

    python benchmarks/face_size.py [--per-identity N] [--sizes 20 30 ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from likeness import calibration as cal
from likeness import embeddings, evidence, face_crop, figures, inference, models, photo_file
from likeness.case import ANALYSIS_DEFAULTS, testdata_root
from likeness.files import write_json_atomic

SIZES = (20, 30, 40, 60, 80)  # face sides (px) the photos are shrunk to
# Low enough that MTCNN's smallest window (12 px) can find a 20 px face; the analysis's own
# min_face_size is what this benchmark decides.
DETECT_MIN_FACE_SIZE = 12
N_REFS = cal.MIN_REFERENCES
ROOT = Path(__file__).resolve().parents[1]
SUMMARY_FILE = ROOT / "lib" / "likeness" / "face_size_evidence.json"


def population(per_identity: int | None) -> pd.DataFrame:
    """The analysis's LFW population at full size: usable photos of identities with >= 2."""
    limit = int(ANALYSIS_DEFAULTS["max_photos_per_identity"])
    if per_identity is not None:
        limit = min(limit, per_identity)
    pop = embeddings.embed_population(testdata_root() / "lfw" / "images_deepfunneled", (),
                                      max_per_identity=limit, progress=False)
    pop = pop[pop["status"].eq("ok") & pop["embedding"].notna()]
    counts = pop.groupby("identity")["path"].transform("size")
    return pop[counts >= 2].reset_index(drop=True)


def shrink(image: np.ndarray, face_px: float, size: int) -> np.ndarray:
    """The photo scaled so that its face is ``size`` px (never enlarged)."""
    scale = min(1.0, size / face_px)
    h, w = image.shape[:2]
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA)


def shrunk_embeddings(photos: pd.DataFrame, size: int, folder: Path) -> pd.DataFrame:
    """Each photo shrunk to a ``size`` px face (lossless PNG) and embedded as a case embeds a
    photo; returns embed_photos' table (status, face_px, embedding) in ``photos``' order."""
    paths = []
    for i, row in enumerate(photos.itertuples()):
        small = shrink(photo_file.read_rgb(Path(row.path)), float(row.face_px), size)
        path = folder / f"{size}_{i:05d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return embeddings.embed_photos(paths, selection="centre", min_face_size=DETECT_MIN_FACE_SIZE,
                                   cache=False, progress=False)


def evidence_at(pop: pd.DataFrame, probe: str, full: evidence.Calibration | None) -> tuple:
    """The analysis's calibration with ``probe`` as the questioned side; its figures."""
    top_k, seed = int(ANALYSIS_DEFAULTS["top_k"]), int(ANALYSIS_DEFAULTS["seed"])
    result = evidence.calibrate_population(pop, N_REFS, top_k, seed, for_claimant=False,
                                           probe=probe)
    val = result.scores[result.scores["half"] == "validation"]
    genuine = val.loc[val["same_source"], "log10_lr"].to_numpy()
    impostor = val.loc[~val["same_source"], "log10_lr"].to_numpy()
    metrics = result.summary["validation"] or {}
    out = {
        "calibrator": result.summary["calibrator"]["method"] if result.calibrator else None,
        "upper_log10_lr": result.calibrator.upper_log10_lr if result.calibrator else None,
        "n_genuine": len(genuine),
        "n_different_source": len(impostor),
        "genuine_median_log10_lr": float(np.median(genuine)),
        "genuine_p10_log10_lr": float(np.percentile(genuine, 10)),
        "genuine_share_lr_over_1": float(np.mean(genuine > 0)),
        "genuine_share_lr_over_10": float(np.mean(genuine > 1)),
        "misleading_different_source": float(np.mean(impostor > 0)),
        "cllr": metrics.get("cllr"),
        "cllr_min": metrics.get("cllr_min"),
        "eer": metrics.get("eer"),
    }
    if full is not None:
        # The same normalised scores (same split, cohort and references) under the calibrator
        # fitted on full photos: what a case calibrated on its full-size population gives.
        under_full = cal.log10_lr(full.calibrator, val.loc[val["same_source"], "score"])
        wrong = cal.log10_lr(full.calibrator, val.loc[~val["same_source"], "score"])
        out["full_calibration"] = {
            "genuine_median_log10_lr": float(np.median(under_full)),
            "genuine_p10_log10_lr": float(np.percentile(under_full, 10)),
            "misleading_different_source": float(np.mean(wrong > 0)),
        }
    return result, out, genuine


def figure(rows: list[dict], genuine: dict[str, np.ndarray], stem: Path) -> list[Path]:
    """Genuine log10 LR (validation half) against face size: box per size, medians joined."""
    labels = [str(r["face_px"]) for r in rows]
    with figures.style():
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.boxplot([genuine[k] for k in labels], positions=range(len(labels)), whis=(10, 90),
                   showfliers=False)
        ax.plot(range(len(labels)), [r["genuine_median_log10_lr"] for r in rows], marker="o",
                label="median, calibrated at that size")
        full = [r.get("full_calibration", {}).get("genuine_median_log10_lr") for r in rows]
        ax.plot(range(len(labels)), [np.nan if v is None else v for v in full], marker="s",
                linestyle="--", label="median, full-size calibration")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("face size (px, side of the MTCNN box); 'original' = full LFW photo")
        ax.set_ylabel("log10 LR of genuine faces")
        ax.set_title("LFW validation half: genuine evidence vs face size (whiskers 10-90%)")
        ax.legend(loc="lower right")
        return figures.save(fig, stem)


def write_summary(result: dict, path: Path | str) -> None:
    """The few figures the report quotes (:func:`likeness.report.detection_scale_markdown`)."""
    sizes = {}
    for r in result["sizes"]:
        if r["face_px"] == "original":
            continue
        full = r["full_calibration"]
        sizes[str(r["face_px"])] = {
            "detection_rate": round(r["detection_rate"], 3),
            "genuine_median_log10_lr": round(r["genuine_median_log10_lr"], 2),
            "genuine_p10_log10_lr": round(r["genuine_p10_log10_lr"], 2),
            "misleading_different_source": round(r["misleading_different_source"], 4),
            "full_calibration_genuine_median_log10_lr":
                round(full["genuine_median_log10_lr"], 2),
            "full_calibration_genuine_p10_log10_lr": round(full["genuine_p10_log10_lr"], 2),
        }
    write_json_atomic(path, {
        "source": "benchmarks/face_size.py (LFW validation half, the analysis's method; "
                  "calibrated at each face size, and with the calibrator of full-size photos)",
        "model": result["method"]["model"],
        "crop_margin": face_crop.CROP_MARGIN,
        "n_identities": result["population"]["n_identities"],
        "sizes": sizes,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-identity", type=int, default=None,
                        help="at most this many photos per identity (default: the analysis's)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/face_size.json"))
    parser.add_argument("--summary", default=str(SUMMARY_FILE))
    parser.add_argument("--summary-from", default=None,
                        help="only rewrite --summary from this benchmark JSON")
    args = parser.parse_args()
    if args.summary_from:
        write_summary(json.loads(Path(args.summary_from).read_text("utf-8")), args.summary)
        return
    start = time.perf_counter()
    pop = population(args.per_identity)
    base_result, base, base_genuine = evidence_at(pop, "embedding", None)
    rows = [{"face_px": "original", "detection_rate": 1.0,
             "median_original_face_px": float(pop["face_px"].median()), **base}]
    genuine = {"original": base_genuine}
    # Only questioned photos need shrinking: the reference sets (full size) are the photos that
    # are never questioned, and the probe column leaves them as they are.
    questioned = pop[pop["path"].isin(set(base_result.scores["path"]))]
    with tempfile.TemporaryDirectory(prefix="likeness-face-size-") as tmp:
        for size in args.sizes:
            t0 = time.perf_counter()
            table = shrunk_embeddings(questioned, size, Path(tmp))
            found = (table["status"].eq("ok") & table["embedding"].notna()).to_numpy()
            probe: list = [None] * len(pop)
            for i, emb, ok in zip(questioned.index, table["embedding"], found, strict=True):
                probe[i] = emb if ok else None
            pop["probe"] = probe
            _, figs, gen = evidence_at(pop, "probe", base_result)
            rows.append({"face_px": size, "detection_rate": float(found.mean()),
                         "n_questioned": len(questioned), "n_detected": int(found.sum()),
                         "median_detected_face_px": float(table.loc[found, "face_px"].median()),
                         "seconds": round(time.perf_counter() - t0, 1), **figs})
            genuine[str(size)] = gen
            print({k: rows[-1][k] for k in ("face_px", "detection_rate",
                                            "genuine_median_log10_lr", "genuine_p10_log10_lr",
                                            "misleading_different_source", "cllr", "eer")},
                  flush=True)
    out = Path(args.out)
    files = figure(rows, genuine, out.with_suffix(""))
    model = models.DEFAULT_MODEL
    result = {
        "what": "genuine evidence vs face size on LFW (benchmarks/face_size.py)",
        "population": {"root": "testdata lfw/images_deepfunneled",
                       "max_photos_per_identity": int(ANALYSIS_DEFAULTS["max_photos_per_identity"])
                       if args.per_identity is None else args.per_identity,
                       "n_photos": len(pop), "n_questioned": len(questioned),
                       "n_identities": int(pop["identity"].nunique())},
        "method": {"model": model, "runtime": inference.runtime_name("cpu"),
                   "n_refs": N_REFS, "top_k": int(ANALYSIS_DEFAULTS["top_k"]),
                   "seed": int(ANALYSIS_DEFAULTS["seed"]), "normalisation": "as-norm",
                   "calibration_method": "auto", "detect_min_face_size": DETECT_MIN_FACE_SIZE,
                   "shrink": "cv2.INTER_AREA, never enlarged; face_px = sqrt(box area) on the "
                             "original photo", "probe_side": "questioned photo shrunk; "
                   "references and cohort at full size"},
        "versions": {"python": platform.python_version(), "lir": version("lir"),
                     "torch": version("torch"), "opencv": cv2.__version__},
        "sizes": rows,
        "figure": [p.name for p in files],
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(out, result)
    write_summary(result, args.summary)
    print(f"wrote {out}, {args.summary} in {result['seconds']} s")


if __name__ == "__main__":
    main()
