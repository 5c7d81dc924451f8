"""Where detection's time goes, stage by stage, on the device and on the host: a
``torch.profiler`` trace of :func:`likeness.mtcnn.detect` on the peer's 1080p video.

Session 6's H200 detected at 85-115 frames/s whatever the batch (16 to 128 frames per call),
so the cost is per frame, not per call, and cProfile cannot say whether a frame's time is the
device computing or the host preparing, launching and waiting. Here every stage of
``mtcnn.detect`` carries a label (``mtcnn.pyramid``, ``mtcnn.pnet``, ``mtcnn.pnet_candidates``,
``mtcnn.rnet_crops`` ...). For each batch size this writes, per label, the host's wall time
inside it and the device's kernel time it launched, and for the whole run: the wall time, the
device's busy time (all kernels), and how often the host waited for the device
(synchronisations, device-to-host copies, ``nonzero``, scalar reads, torchvision's NMS).

A device busy for a small part of the wall time means the host bounds detection: the next
change is then fewer, larger operations in the labels that dominate, not faster kernels.

    python benchmarks/gpu/detection_trace.py [--device cuda] [--frames 64] [--batch 16 64]
        [--json OUT] [--table OUT]

It runs on a CPU too (host times only), which is how it is checked here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from likeness import faces, footage, mtcnn
from likeness.case import testdata_root

# Host-side operations that wait for the device (or copy from it) on CUDA.
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync",
         "aten::nonzero", "aten::_local_scalar_dense", "torchvision::nms")


def first_frames(n: int) -> np.ndarray:
    """The first ``n`` frames of the peer's 1080p video, RGB, as likeness decodes them."""
    video = testdata_root() / "facenet-pytorch" / "examples" / "video.mp4"
    frames: list[np.ndarray] = []
    for batch in footage.iter_frames(video, None, batch_size=16):
        frames.extend(batch.images)
        if len(frames) >= n:
            break
    return np.stack(frames[:n])


def trace(detector, frames: np.ndarray, batch: int, cuda: bool) -> tuple[dict, str]:
    """One profiled pass of ``mtcnn.detect`` over ``frames`` in batches of ``batch``, after an
    unprofiled pass at the same shapes: (summary, the profiler's table)."""

    def run() -> int:
        found = 0
        for i in range(0, len(frames), batch):
            found += sum(len(boxes) for boxes, _ in mtcnn.detect(detector, frames[i:i + batch]))
        if cuda:
            torch.cuda.synchronize()
        return found

    run()  # warm-up: allocator, cuDNN plans, OpenVINO shapes
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        found = run()
        wall = time.perf_counter() - start
    averages = prof.key_averages()
    stages = {}
    for event in averages:
        if event.key.startswith("mtcnn."):
            stages[event.key] = {
                "calls": event.count,
                "host_ms": event.cpu_time_total / 1e3,
                "device_ms": event.device_time_total / 1e3,
            }
    waits = {e.key: {"calls": e.count, "host_ms": e.cpu_time_total / 1e3}
             for e in averages if e.key in WAITS}
    kernels_ms = sum(e.self_device_time_total for e in averages) / 1e3 if cuda else None
    summary = {
        "batch": batch,
        "frames": len(frames),
        "faces": found,
        "wall_s": wall,
        "frames_per_s": len(frames) / wall,
        "device_busy_ms": kernels_ms,
        "device_busy_fraction": kernels_ms / 1e3 / wall if cuda else None,
        "stages": dict(sorted(stages.items(), key=lambda kv: -kv[1]["host_ms"])),
        "host_waits": waits,
    }
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    table = averages.table(sort_by=sort, row_limit=30)
    return summary, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="the profiler's tables, as text")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    frames = first_frames(args.frames)
    detector = faces.load_detector(str(device), 20)
    result: dict = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "frame_shape": list(frames.shape[1:]),
        "runs": [],
    }
    tables = []
    for batch in args.batch:
        summary, table = trace(detector, frames, batch, cuda)
        result["runs"].append(summary)
        tables.append(f"== batch {batch}: {summary['frames_per_s']:.1f} frames/s\n{table}")
        print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.table:
        args.table.write_text("\n".join(tables), encoding="utf-8")
    else:
        print("\n".join(tables))


if __name__ == "__main__":
    main()
