"""The population embedded from a cold cache: PyTorch against the default CPU runtime.

Runs :func:`likeness.embeddings.embed_population` on the LFW population of the demo (at most 20
photos per identity, Elon Musk excluded) with an empty cache, once per runtime, interleaved
(torch, default, torch, default, ... for ``--repeats`` rounds), each in a fresh temporary cache
folder that holds only the model weights. Reports wall and CPU seconds, photos/s, peak RSS and
the load average, and checks that both give the same faces (statuses, boxes) and embeddings.

    python benchmarks/population.py [--limit N] [--repeats 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from likeness import embeddings, inference, models
from likeness.case import testdata_root

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import PeakMemory


def run_once(runtime: str, root: Path, limit: int | None, weights: Path) -> tuple[dict, object]:
    """One cold-cache embedding of the population with ``runtime``; returns figures, table."""
    with tempfile.TemporaryDirectory(prefix="likeness-cold-") as cold:
        (Path(cold) / "models").mkdir()
        shutil.copy(weights, Path(cold) / "models" / weights.name)
        os.environ["LIKENESS_CACHE"] = cold
        os.environ[inference.RUNTIME_ENV] = runtime
        load_before = os.getloadavg()
        cpu0 = psutil.Process().cpu_times()
        start = time.perf_counter()
        with PeakMemory(torch.device("cpu")) as memory:
            kwargs = {"max_per_identity": 20, "device": "cpu", "progress": False}
            if limit is not None:
                from likeness.case import population_photos

                listing = population_photos(root, ["Elon_Musk"], max_per_identity=20)
                paths = listing["path"].dropna().tolist()[:limit]
                del kwargs["max_per_identity"]
                table = embeddings.embed_photos(paths, selection="centre", **kwargs)
            else:
                table = embeddings.embed_population(root, ["Elon_Musk"], **kwargs)
        wall = time.perf_counter() - start
        cpu1 = psutil.Process().cpu_times()
        n = int(table["path"].notna().sum())
        return {
            "runtime": runtime,
            "photos": n,
            "wall_s": wall,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "photos_per_s": n / wall,
            "peak_rss_gib": memory.peak_rss / 2**30,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        }, table


def compare(a, b) -> dict:
    ok = (a["status"] == "ok") & (b["status"] == "ok")
    boxes = ["box_x1", "box_y1", "box_x2", "box_y2"]
    return {
        "same_status": bool((a["status"].to_numpy() == b["status"].to_numpy()).all()),
        "same_n_faces": bool((a["n_faces"].fillna(-1) == b["n_faces"].fillna(-1)).all()),
        "max_abs_box_diff": float(
            np.abs(a.loc[ok, boxes].to_numpy(float) - b.loc[ok, boxes].to_numpy(float)).max()
        ),
        "max_abs_prob_diff": float(np.abs(a.loc[ok, "prob"] - b.loc[ok, "prob"]).max()),
        "max_abs_embedding_diff": float(
            np.abs(np.stack(a.loc[ok, "embedding"]) - np.stack(b.loc[ok, "embedding"])).max()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N photos")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runtimes", nargs="+", default=None,
                        help="default: torch and the default CPU runtime, interleaved")
    args = parser.parse_args()
    root = testdata_root() / "lfw" / "images_deepfunneled"
    weights = models.verify_weights(models.DEFAULT_MODEL)
    default = inference.DEFAULT_CPU_RUNTIME
    runs, tables = [], {}
    runtimes = args.runtimes or ["torch", default]
    for _ in range(args.repeats):
        for runtime in runtimes:
            figures, tables[runtime] = run_once(runtime, root, args.limit, weights)
            runs.append(figures)
            print(json.dumps(figures), flush=True)
    best = {
        r: min((x for x in runs if x["runtime"] == r), key=lambda x: x["wall_s"])
        for r in runtimes
    }
    result = {"runs": runs, "best": best, "cpu_count": os.cpu_count()}
    if {"torch", default} <= set(runtimes):
        result["speedup_wall"] = best["torch"]["wall_s"] / best[default]["wall_s"]
        result["speedup_cpu"] = best["torch"]["cpu_s"] / best[default]["cpu_s"]
        result["equivalence"] = compare(tables[default], tables["torch"])
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
