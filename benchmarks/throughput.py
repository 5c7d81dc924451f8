"""Throughput of ``likeness analyze`` against the facenet-pytorch way of doing the same work.

Measures, on one video (default: facenet-pytorch's own 1080p example, every frame):

1. likeness: :func:`likeness.analysis.analyze_episode` itself on a temporary run folder, i.e.
   threaded PyAV decoding overlapped with batched MTCNN detection, aligned crops, batched
   embedding, tracking and the Parquet faces table: frames/s, faces/s, peak memory.
2. the peer (``peer.py``): the same frames done as facenet-pytorch's examples do them:
   OpenCV decoding (what their ``mmcv.VideoReader`` wraps), a PIL image per frame,
   ``mtcnn(frame)`` per frame with ``keep_all=True`` (detection and 160 px crops), then
   InceptionResnetV1 on each face alone; or, with ``--peer-batch N``, its batched pipeline
   (N frames per ``mtcnn`` call, each batch's faces embedded together), the baseline on a GPU.
3. stages, on the first ``--stage-frames`` frames: decoding alone, detection alone (likeness
   batched vs MTCNN.detect per frame) and embedding alone at batch 1, 64 and 256.

Times are wall-clock (``time.perf_counter``), after a warm-up frame on each path; on a GPU each
reading is taken after ``torch.cuda.synchronize()``. Peak memory is the process's resident set
by its kernel high-water mark, reset at the start of each phase (``measure.PeakMemory``; and
``torch.cuda.max_memory_allocated`` on a GPU).

``--frames`` and ``--resolution`` are applied by wrapping ``likeness.parallel_decoding.iter_frames``
(what ``analyze_episode`` reads through, with one decoder or several; the
first N frames, resized with OpenCV's area filter, timed as part of decoding); without them,
``analyze_episode`` runs untouched.

    python benchmarks/throughput.py [--video PATH] [--device auto] [--sample-fps N]
        [--frames N] [--resolution 1080p|720p|540p] [--peer-batch N] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from likeness import (
    analysis,
    embeddings,
    face_crop,
    faces,
    faces_table,
    footage,
    inference,
    models,
    parallel_decoding,
)
from likeness.case import ANALYSIS_DEFAULTS, AnalysisParams, Case, Episode, testdata_root
from measure import RESOLUTIONS, PeakMemory, clock, rate, resize_to
from peer import compare_faces, opencv_frames, peer_detector, run_peer

# Batch size -> crops embedded at that size (batch 1 is slow on a CPU).
EMBED_BATCHES = {1: 16, 64: 128, 256: 256}
# The real decoder, kept before frames_limited() swaps in its wrapper.
ITER_FRAMES = parallel_decoding.iter_frames


def default_video() -> Path:
    return testdata_root() / "facenet-pytorch" / "examples" / "video.mp4"


def limited_frames(
    path: Path, sample_fps: float | None, batch_size: int, max_frames: int | None,
    height: int | None, decoders: int = 1,
) -> Iterator[footage.FrameBatch]:
    """The frames analyze_episode reads, cut after ``max_frames`` frames and resized to
    ``height`` rows."""
    remaining = max_frames if max_frames is not None else sys.maxsize
    for batch in ITER_FRAMES(path, sample_fps, batch_size=batch_size, decoders=decoders):
        keep = min(remaining, len(batch.frame_index))
        yield footage.FrameBatch(
            batch.frame_index[:keep],
            batch.time_s[:keep],
            [resize_to(img, height) for img in batch.images[:keep]],
        )
        remaining -= keep
        if remaining <= 0:
            return


@contextlib.contextmanager
def frames_limited(max_frames: int | None, height: int | None) -> Iterator[None]:
    """Make analyze_episode read through :func:`limited_frames` (when a limit is asked)."""
    if max_frames is None and height is None:
        yield
        return
    def patched(path, sample_fps, *, batch_size=16, decoders=1):
        return limited_frames(Path(path), sample_fps, batch_size, max_frames, height, decoders)

    parallel_decoding.iter_frames = patched
    try:
        yield
    finally:
        parallel_decoding.iter_frames = ITER_FRAMES


def benchmark_case(video: Path, params: AnalysisParams, folder: Path) -> Case:
    """A one-episode case over ``video`` (analyze_episode reads only its parameters)."""
    return Case(
        case_id="throughput",
        title="throughput benchmark",
        case_file=folder / "case.yaml",
        claimant_name="nobody",
        reference_paths=(),
        episodes=(Episode("bench", video),),
        population_root=None,
        population_exclude=(),
        analysis=params,
    )


def run_likeness(case: Case, run_dir: Path, detector, model, device, args) -> dict:
    """analyze_episode over the whole (limited) video: decode + detect + crop + embed + table."""
    with frames_limited(args.frames, RESOLUTIONS.get(args.resolution)), PeakMemory(device) as mem:
        start = clock(device)
        status = analysis.analyze_episode(
            case.episodes[0], case, run_dir, detector, model, progress=False
        )
        seconds = clock(device) - start
    return {
        "frames": status["n_frames"],
        "faces": status["n_faces"],
        "seconds": round(seconds, 3),
        "frames_per_s": rate(status["n_frames"], seconds),
        "faces_per_s": rate(status["n_faces"], seconds),
        **mem.record(),
    }


def stage_timings(
    video: Path, params: AnalysisParams, detector, mtcnn: MTCNN, model, device, args,
    wanted_order: list[int],
) -> dict:
    """Decoding alone, detection alone and embedding alone, on the first stage frames."""
    height = RESOLUTIONS.get(args.resolution)
    out: dict = {}
    # Decoding: the whole (limited) video, likeness (threaded PyAV) and OpenCV.
    start = time.perf_counter()
    n = sum(
        len(b.frame_index)
        for b in limited_frames(video, params.sample_fps, params.detect_batch_size, args.frames,
                                height)
    )
    seconds = time.perf_counter() - start
    out["decode_likeness"] = {"frames": n, "seconds": round(seconds, 3),
                              "frames_per_s": rate(n, seconds)}
    start = time.perf_counter()
    n = sum(1 for _ in opencv_frames(video, set(wanted_order), height))
    seconds = time.perf_counter() - start
    out["decode_opencv"] = {"frames": n, "seconds": round(seconds, 3),
                            "frames_per_s": rate(n, seconds)}

    # Detection alone, on frames already in memory.
    frames = []
    n_stage = min(args.stage_frames, args.frames or sys.maxsize)
    for batch in limited_frames(video, params.sample_fps, params.detect_batch_size, n_stage,
                                height):
        frames += batch.images
    # As many frames per MTCNN call as analyze_episode gives it on this device.
    size = faces.frames_per_detection(device, params.detect_batch_size)
    # Warm-up at this batch's shape: oneDNN (and cuDNN) plan each new input shape on first use,
    # which would otherwise be charged to the batched path alone.
    faces.detect_batch(detector, frames[:size])
    mtcnn.detect(Image.fromarray(frames[0]))
    start = clock(device)
    dets = []
    for i in range(0, len(frames), size):
        dets += faces.detect_batch(detector, frames[i : i + size])
    seconds = clock(device) - start
    out["detect_likeness_batched"] = {
        "frames": len(frames), "batch": size, "faces_found": sum(len(d) for d in dets),
        "seconds": round(seconds, 3), "frames_per_s": rate(len(frames), seconds),
    }
    images = [Image.fromarray(f) for f in frames]
    start = clock(device)
    found = 0
    for img in images:
        boxes, _ = mtcnn.detect(img)
        found += 0 if boxes is None else len(boxes)
    seconds = clock(device) - start
    out["detect_facenet_pytorch_per_frame"] = {
        "frames": len(frames), "batch": 1, "faces_found": found,
        "seconds": round(seconds, 3), "frames_per_s": rate(len(frames), seconds),
    }

    # Embedding alone: the crops of those frames, repeated as needed (deterministic).
    crops = np.concatenate(
        [face_crop.crop_faces(f, d.boxes, d.landmarks) for f, d in zip(frames, dets, strict=True)]
    )
    if len(crops) == 0:
        out["embed"] = "no faces found in the stage frames"
        return out
    crops = np.resize(crops, (max(EMBED_BATCHES.values()), *crops.shape[1:]))
    for batch, count in EMBED_BATCHES.items():
        subset = crops[:count]
        embeddings.embed_crops(model, subset[: min(batch, 16)], batch)  # warm-up
        start = clock(device)
        embeddings.embed_crops(model, subset, batch)
        seconds = clock(device) - start
        out[f"embed_batch_{batch}"] = {
            "faces": len(subset), "seconds": round(seconds, 3),
            "faces_per_s": rate(len(subset), seconds),
        }
    return out


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "inference_runtime": inference.runtime_name(device),
        "python": platform.python_version(),
    }
    return env


def print_report(result: dict) -> None:
    env, like, peer = result["environment"], result["likeness"], result["facenet_pytorch"]
    print(f"device {env['device']} ({env['device_name']}), torch {env['torch']}, "
          f"{env['torch_threads']} torch threads, {env['cpus_usable']}/{env['cpu_count']} CPUs, "
          f"load average {env['load_average_1m']}")
    print(f"video {result['video']}  resolution {result['resolution']}  "
          f"sample_fps {result['sample_fps']}  frames {like['frames']}")
    header = f"{'':34}{'frames':>7}{'faces':>7}{'s':>9}{'frames/s':>10}{'faces/s':>9}"
    print(header + f"{'peak RSS MiB':>14}{'CUDA MiB':>10}")
    peer_name = ("facenet-pytorch way" if peer["batch"] == 1
                 else f"facenet-pytorch, {peer['batch']} frames/call")
    for name, row in (("likeness analyze_episode", like), (peer_name, peer)):
        cuda = "" if row["cuda_peak_mib"] is None else f"{row['cuda_peak_mib']:.0f}"
        print(f"{name:34}{row['frames']:>7}{row['faces']:>7}{row['seconds']:>9.2f}"
              f"{row['frames_per_s']:>10.2f}{row['faces_per_s']:>9.2f}"
              f"{row['rss_peak_mib']:>14.0f}{cuda:>10}")
    print(f"ratio likeness / facenet-pytorch: {result['ratio_frames_per_s']:.2f}x frames/s "
          f"(likeness embeds faces with prob >= {result['min_detection_prob']}, "
          "the peer every face MTCNN returns)")
    same = result["same_faces"]
    print(f"same faces: {same['also_found_by_likeness']} of the peer's {same['peer_faces']} faces "
          f"(prob >= {result['min_detection_prob']}) found by likeness at min_face_size "
          f"{same['likeness_min_face_size']}; missed {len(same['missed'])} "
          f"({same['missed_below_min_face_size']} below it): {same['missed']}")
    for name, row in result.get("stages", {}).items():
        if isinstance(row, str):
            print(f"  {name}: {row}")
            continue
        per_s = (f"{row['frames_per_s']:.2f} frames/s" if "frames_per_s" in row
                 else f"{row['faces_per_s']:.2f} faces/s")
        extra = "".join(f", {k} {row[k]}" for k in ("batch", "faces_found") if k in row)
        count = row.get("frames", row.get("faces"))
        print(f"  {name:34} {per_s:>18}  ({count} in {row['seconds']:.2f} s{extra})")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=None, help="default: the peer's 1080p video")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda[:N]")
    parser.add_argument("--sample-fps", type=float, default=None,
                        help="frames per second to analyse (default: every frame)")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--resolution", choices=["native", *RESOLUTIONS], default="native",
                        help="downscale frames to this height before detection")
    parser.add_argument("--batch-size", type=int, default=ANALYSIS_DEFAULTS["detect_batch_size"],
                        help="frames per MTCNN call in likeness")
    parser.add_argument("--peer-batch", type=int, default=1,
                        help="frames per facenet-pytorch MTCNN call (1: its examples, frame by "
                        "frame; more: its batched pipeline, the GPU baseline)")
    parser.add_argument("--stage-frames", type=int, default=16,
                        help="frames for the detection-alone stage timings")
    parser.add_argument("--min-face-size", type=int, default=None,
                        help="likeness's detection scale (default: the case default); the peer "
                        "keeps facenet-pytorch's 20 px")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage timings")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    video = (args.video or default_video()).resolve()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = faces.resolve_device(args.device)
    params = AnalysisParams(**{
        **ANALYSIS_DEFAULTS,
        "sample_fps": args.sample_fps,
        "device": str(device),
        "detect_batch_size": args.batch_size,
        "min_face_size": args.min_face_size or ANALYSIS_DEFAULTS["min_face_size"],
    })
    height = RESOLUTIONS.get(args.resolution)
    detector = faces.load_detector(str(device), params.min_face_size)
    mtcnn = peer_detector(device)
    # likeness runs its networks in its default runtime (OpenVINO on a CPU); the peer in PyTorch.
    model = inference.load_embedder(params.model, str(device))
    peer_model = models.load_embedder(params.model, str(device))

    # The frames likeness analyses (the peer does the same ones), and a warm-up on each path.
    wanted = [int(i) for b in limited_frames(video, params.sample_fps, params.detect_batch_size,
                                               args.frames, height) for i in b.frame_index]
    first = next(limited_frames(video, None, 1, 1, height)).images[0]
    warm = faces.detect_batch(detector, [first])
    if device.type == "cuda":  # analyze_episode detects whole batches there: plan those shapes
        faces.detect_batch(detector, [first] * params.detect_batch_size)
    embeddings.embed_crops(model, face_crop.crop_faces(first, warm[0].boxes, warm[0].landmarks))
    with torch.no_grad():
        warm_faces = mtcnn(Image.fromarray(first))
        if warm_faces is not None:
            peer_model(warm_faces[:1].to(device))
        if args.peer_batch > 1:  # cuDNN plans each new input shape on first use
            warm_faces = mtcnn([Image.fromarray(first)] * args.peer_batch)
            stacked = [f for f in warm_faces if f is not None]
            if stacked:
                peer_model(torch.cat(stacked).to(device))

    result: dict = {
        "environment": environment(device),
        "video": str(video),
        "resolution": args.resolution if height else f"native {first.shape[1]}x{first.shape[0]}",
        "sample_fps": args.sample_fps,
        "detect_batch_size": params.detect_batch_size,
        "embed_batch_size": params.embed_batch_size,
        "min_detection_prob": params.min_detection_prob,
    }
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        case = benchmark_case(video, params, Path(tmp))
        result["likeness"] = run_likeness(case, Path(tmp) / "run", detector, model, device, args)
        ours = pd.read_parquet(faces_table.faces_path(Path(tmp) / "run", "bench"))
    result["facenet_pytorch"] = run_peer(video, set(wanted), mtcnn, peer_model, device,
                                         batch_size=args.peer_batch, height=height)
    result["same_faces"] = compare_faces(
        ours, result["facenet_pytorch"].pop("boxes"), params.min_detection_prob,
        params.min_face_size,
    )
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["ratio_frames_per_s"] = round(
        result["likeness"]["frames_per_s"] / result["facenet_pytorch"]["frames_per_s"], 3
    )
    if not args.no_stages:
        result["stages"] = stage_timings(
            video, params, detector, mtcnn, model, device, args, wanted
        )
    result["max_rss_mib_whole_run"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
