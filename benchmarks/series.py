"""A whole series: how ``likeness analyze`` scales with episodes, and its memory with length.

1. Builds a series from the shared clips into the cache (``<LIKENESS_CACHE>/benchmarks/
   series``; never committed): short-drama vertical 1080x1920 episodes from the dancer clip of
   sber-swap and landscape 1920x1080 ones from the 720p film clip, H.264, 30 fps, each the clip
   looped (from a different start frame per episode, so that no two episodes share bytes and
   no faces table is reused from the cache) to ``--episode-seconds``.
2. Runs ``likeness analyze`` end to end (the CLI's own ``main``) in a fresh process per
   configuration, on 1, 2, 4 and 8 vertical episodes and on 1 and 2 landscape ones, and, at a
   low resolution (``--memory-height``), on one episode of 1, 5 and 20 minutes. Each run
   reports wall and CPU time, sampled frames/s, faces/s and peak RSS, and the time spent in
   decoding (its own thread, overlapped), detection, embedding and the rest (the main thread's
   wall time minus detection and embedding: cropping, tracking, tables, scores, results, and
   ``waiting_for_frames_s``, the main thread's waits for decoded frames).
3. Fits time = a + b * episodes and predicts the 44-episode series of ``--episode-seconds``
   episodes and of 90 s episodes at 5 fps; writes a JSON and a figure.

The population (LFW, 1 photo per identity, to keep the fixed part small) is embedded once in
a warm-up run and then comes from the cache; the faces tables' cache is emptied before every
run. Timings on a shared machine are noisy: the load average is recorded with every run.

    python benchmarks/series.py [--episode-seconds 10] [--episodes 1 2 4 8]
        [--memory-minutes 1 5 20] [--memory-height 180] [--population DIR] [--json OUT]
        [--figure OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import yaml

from likeness import models
from likeness.case import testdata_root

VERTICAL = (1080, 1920)  # width, height
LANDSCAPE = (1920, 1080)
FPS = 30
SAMPLE_FPS = 5


def source_clip(kind: str) -> Path:
    data = testdata_root()
    if kind == "vertical":
        return data / "sber-swap" / "examples" / "videos" / "dance.mp4"
    return data / "sber-swap" / "examples" / "videos" / "dirtydancing.mp4"


def read_clip(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` (width, height) and cut the centre, as a vertical re-frame."""
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    top = (resized.shape[0] - height) // 2
    left = (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def build_episode(
    path: Path, frames: list[np.ndarray], size: tuple[int, int], seconds: float, start: int
) -> Path:
    """The clip looped from frame ``start`` to ``seconds`` at 30 fps, H.264 (made once)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        resized = [cover(f, size) for f in frames]
        for i in range(round(seconds * FPS)):
            image = resized[(start + i) % len(resized)]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def write_case(folder: Path, episodes: list[Path], population: Path | None = None) -> Path:
    data = testdata_root()
    case = {
        "case_id": "series-benchmark",
        "title": "Series benchmark",
        "claimant": {
            "name": "Elon Musk",
            "references": [str(data / "sber-swap" / "examples" / "images" / "elon_musk.jpg")],
        },
        "footage": [{"id": f"ep{i + 1:02d}", "path": str(p)} for i, p in enumerate(episodes)],
        "population": {
            "path": str(population or data / "lfw" / "images_deepfunneled"),
            "exclude": ["Elon_Musk"],
        },
        "analysis": {"sample_fps": SAMPLE_FPS, "max_photos_per_identity": 1},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "case.yaml"
    path.write_text(yaml.safe_dump(case, sort_keys=False), "utf-8")
    return path


def run_one(case_file: Path, out: Path) -> dict:
    """In this process: ``likeness analyze`` with timers around decoding, detection and
    embedding (the real functions, called as usual); returns the figures."""
    import psutil
    import torch

    from likeness import analysis, cli, embeddings, faces, parallel_decoding

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from measure import PeakMemory

    spent = {"decode_s": 0.0, "detect_s": 0.0, "embed_s": 0.0, "waiting_for_frames_s": 0.0}
    iter_frames, detect_batch, embed_crops, prefetch_each = (
        parallel_decoding.iter_frames,
        faces.detect_batch,
        embeddings.embed_crops,
        analysis.prefetch_each,
    )

    def timed_items(name, items):
        """``items``, with the time each takes to come added to ``spent[name]``."""
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                spent[name] += time.perf_counter() - start
            yield item

    def timed_prefetch_each(*args, **kwargs):
        # The main thread's waits; the outer iterator waits too: it takes each episode's
        # first batch off the queue.
        for frames in timed_items("waiting_for_frames_s", prefetch_each(*args, **kwargs)):
            yield timed_items("waiting_for_frames_s", frames)

    def timed_frames(*args, **kwargs):  # in the decoding thread
        yield from timed_items("decode_s", iter_frames(*args, **kwargs))

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    parallel_decoding.iter_frames = timed_frames
    analysis.prefetch_each = timed_prefetch_each
    faces.detect_batch = timed("detect_s", detect_batch)
    embeddings.embed_crops = timed("embed_s", embed_crops)
    load_before = os.getloadavg()
    cpu0 = psutil.Process().cpu_times()
    start = time.perf_counter()
    with PeakMemory(torch.device("cpu")) as memory:
        code = cli.main(["analyze", str(case_file), "--out", str(out), "--quiet"])
    wall = time.perf_counter() - start
    cpu1 = psutil.Process().cpu_times()
    if code != 0:
        raise SystemExit(f"likeness analyze failed with exit code {code}")
    statuses = json.loads((out / "episode_status.json").read_text("utf-8"))
    n_frames = sum(s["n_frames"] for s in statuses.values())
    n_faces = sum(s["n_faces"] for s in statuses.values())
    return {
        "episodes": len(statuses),
        "wall_s": wall,
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "sampled_frames": n_frames,
        "faces": n_faces,
        "frames_per_s": n_frames / wall,
        "faces_per_s": n_faces / wall,
        "peak_rss_mib": memory.peak_rss / 2**20,
        **spent,
        "rest_s": wall - spent["detect_s"] - spent["embed_s"],
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def measure(case_file: Path, cache: Path) -> dict:
    """run_one in a fresh process (its own peak RSS), with the faces cache emptied first."""
    shutil.rmtree(cache / "faces", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="series-run-") as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, __file__, "--run-one", str(case_file), str(Path(tmp) / "run"),
             str(result)],
            check=True,
            env={**os.environ, "LIKENESS_CACHE": str(cache)},
        )
        figures = json.loads(result.read_text("utf-8"))
    print(json.dumps(figures), flush=True)
    return figures


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns a, b and R²."""
    b, a = np.polyfit(xs, ys, 1)
    pred = a + b * np.asarray(xs)
    ss = float(np.sum((np.asarray(ys) - np.mean(ys)) ** 2)) or 1.0
    return float(a), float(b), 1.0 - float(np.sum((np.asarray(ys) - pred) ** 2)) / ss


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    runs = result["scaling"]["vertical"]
    xs = [r["episodes"] for r in runs]
    parts = ("decode_s", "detect_s", "embed_s", "rest_s")
    bottom = np.zeros(len(xs))
    for part in parts[1:]:
        values = np.array([r[part] for r in runs])
        ax1.bar([str(x) for x in xs], values, bottom=bottom, label=part[:-2])
        bottom += values
    ax1.plot([str(x) for x in xs], [r["decode_s"] for r in runs], "k.--",
             label="decode (own thread)")
    ax1.set_xlabel("vertical 1080x1920 episodes")
    ax1.set_ylabel("wall seconds")
    ax1.set_title(f"likeness analyze, {result['episode_seconds']:g} s episodes, 5 fps")
    ax1.legend()
    mem = result["memory"]
    ax2.plot([r["minutes"] for r in mem], [r["peak_rss_mib"] for r in mem], "o-")
    ax2.set_xlabel("episode length (minutes)")
    ax2.set_ylabel("peak RSS (MiB)")
    ax2.set_ylim(bottom=0)
    ax2.set_title(f"memory, one episode at {result['memory_height']} px high")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episode-seconds", type=float, default=10.0)
    parser.add_argument("--episodes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--landscape-episodes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--memory-minutes", type=float, nargs="*", default=[1, 5, 20])
    parser.add_argument("--memory-height", type=int, default=180)
    parser.add_argument("--population", type=Path, default=None,
                        help="population folder (one sub-folder per identity; default: LFW)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--run-one", nargs=3, metavar=("CASE", "OUT", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        case_file, out, result = map(Path, args.run_one)
        result.write_text(json.dumps(run_one(case_file, out)), "utf-8")
        return

    home = models.cache_dir() / "benchmarks" / "series"
    cache = home / "cache"  # the analyses' own cache: weights, population photos, faces
    (cache / "models").mkdir(parents=True, exist_ok=True)
    weights = models.verify_weights(models.DEFAULT_MODEL)
    if not (cache / "models" / weights.name).exists():
        shutil.copy(weights, cache / "models" / weights.name)
    seconds = args.episode_seconds
    result: dict = {
        "episode_seconds": seconds,
        "sample_fps": SAMPLE_FPS,
        "memory_height": args.memory_height,
        "inference": os.environ.get("LIKENESS_INFERENCE", "default"),
        "cpu_count": os.cpu_count(),
        "scaling": {},
        "memory": [],
    }
    with tempfile.TemporaryDirectory(prefix="series-cases-") as tmp:
        work = Path(tmp)
        for kind, size, counts in (
            ("vertical", VERTICAL, args.episodes),
            ("landscape", LANDSCAPE, args.landscape_episodes),
        ):
            if not counts:
                continue
            frames = read_clip(source_clip(kind))
            episodes = [
                build_episode(
                    home / f"{kind}-{seconds:g}s-ep{i + 1:02d}.mp4", frames, size, seconds,
                    start=7 * i,
                )
                for i in range(max(counts))
            ]
            if not result["scaling"]:  # warm-up: embeds the population into the cache once
                measure(write_case(work / "warm-up", episodes[:1], args.population), cache)
            result["scaling"][kind] = []
            for n in counts:
                case_file = write_case(work / f"{kind}-{n}", episodes[:n], args.population)
                figures = measure(case_file, cache)
                result["scaling"][kind].append(figures)
        if args.memory_minutes:
            frames = read_clip(source_clip("landscape"))
            size = (round(args.memory_height * 16 / 9) // 2 * 2, args.memory_height)
            for minutes in args.memory_minutes:
                episode = build_episode(
                    home / f"memory-{args.memory_height}p-{minutes:g}min.mp4", frames, size,
                    minutes * 60, start=0,
                )
                case_file = write_case(work / f"memory-{minutes:g}", [episode], args.population)
                figures = measure(case_file, cache)
                result["memory"].append({"minutes": minutes, **figures})

    vertical = result["scaling"].get("vertical", [])
    if len(vertical) >= 2:
        a, b, r2 = fit_line([r["episodes"] for r in vertical], [r["wall_s"] for r in vertical])
        frames_per_episode = vertical[-1]["sampled_frames"] / vertical[-1]["episodes"]
        per_frame = b / frames_per_episode
        result["fit"] = {"fixed_s": a, "per_episode_s": b, "r2": r2,
                         "per_sampled_frame_s": per_frame}
        result["prediction"] = {
            f"44 episodes of {seconds:g} s": a + 44 * b,
            "44 episodes of 90 s at 5 fps (19,800 frames)": a + 44 * 90 * SAMPLE_FPS * per_frame,
            "sampled_frames_per_s": 1.0 / per_frame,
        }
    if len(result["memory"]) >= 2:
        first, last = result["memory"][0], result["memory"][-1]
        result["memory_growth"] = last["peak_rss_mib"] / first["peak_rss_mib"] - 1.0
    print(json.dumps({k: result.get(k) for k in ("fit", "prediction", "memory_growth")},
                     indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.figure and vertical and result["memory"]:
        figure(result, args.figure)


if __name__ == "__main__":
    main()
