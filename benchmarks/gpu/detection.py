"""Detection alone on a GPU: likeness's batched MTCNN against facenet-pytorch's, and the GPU's
boxes against the CPU's (PyTorch) on the same frames.

On the peer's 1080p video (every frame, decoded once and held in memory): frames/s of
:func:`likeness.faces.detect_batch` at batch 16, 32, 64 and 128 with cuDNN's TF32 off (the
default here) and on; facenet-pytorch's ``MTCNN.detect`` frame by frame and 32 frames per
call; then the first 16 frames' detections on the GPU against those of the CPU's PyTorch
path. Each rate is the median of 3 runs after a warm-up at the same shape. Also: how fast
likeness's decoder delivers the frames (median of 3).

    python benchmarks/gpu/detection.py [--device cuda] [--frames N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from likeness import faces, footage
from likeness.case import testdata_root

REPEATS = 3


def elapsed(device: torch.device, work) -> float:
    """Median wall seconds of ``work()`` over REPEATS runs, the GPU synchronised."""
    times = []
    for _ in range(REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    video = testdata_root() / "facenet-pytorch" / "examples" / "video.mp4"
    frames: list[np.ndarray] = []
    decoded = [0]

    def decode() -> None:
        frames.clear()
        for batch in footage.iter_frames(video, None, batch_size=16):
            frames.extend(batch.images)
        decoded[0] = len(frames)
        del frames[args.frames or len(frames) :]

    decode()
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "frames": len(frames),
        "decode_fps": decoded[0] / elapsed(torch.device("cpu"), decode),
    }
    images = [Image.fromarray(f) for f in frames]

    detector = faces.load_detector(str(device), 20)
    result["likeness_detect_fps"] = {}
    found_gpu = []
    for tf32, sizes in ((False, (16, 32, 64, 128)), (True, (16, 64))):
        torch.backends.cudnn.allow_tf32 = tf32
        for size in sizes:
            faces.detect_batch(detector, frames[:size])  # plan this shape

            def run(size: int = size) -> None:
                found_gpu[:] = [d for i in range(0, len(frames), size)
                                for d in faces.detect_batch(detector, frames[i : i + size])]

            fps = len(frames) / elapsed(device, run)
            result["likeness_detect_fps"][f"tf32={tf32} batch={size}"] = fps
            if not tf32 and size == 16:
                reference = list(found_gpu)
    torch.backends.cudnn.allow_tf32 = False

    peer = MTCNN(keep_all=True, device=device).eval()
    result["peer_detect_fps"] = {}
    for size in (1, 32):
        peer.detect(images[:size] if size > 1 else images[0])

        def run_peer(size: int = size) -> None:
            for i in range(0, len(images), size):
                peer.detect(images[i : i + size] if size > 1 else images[i])

        result["peer_detect_fps"][f"batch={size}"] = len(frames) / elapsed(device, run_peer)

    # The GPU's detections (TF32 off, batch 16) against the CPU's PyTorch path.
    cpu = faces.load_detector("cpu", 20, runtime="torch")
    diffs = {"n_gpu": 0, "n_cpu": 0, "max_box_abs": 0.0, "max_prob_abs": 0.0,
             "max_landmark_abs": 0.0}
    for gpu_faces, cpu_faces in zip(reference[:16], faces.detect_batch(cpu, frames[:16]),
                                    strict=True):
        diffs["n_gpu"] += len(gpu_faces)
        diffs["n_cpu"] += len(cpu_faces)
        if len(gpu_faces) == len(cpu_faces) and len(gpu_faces):
            for key, a, b in (("max_box_abs", gpu_faces.boxes, cpu_faces.boxes),
                              ("max_prob_abs", gpu_faces.probs, cpu_faces.probs),
                              ("max_landmark_abs", gpu_faces.landmarks, cpu_faces.landmarks)):
                diffs[key] = max(diffs[key], float(np.abs(a - b).max()))
    result["gpu_vs_cpu_detections_16_frames"] = diffs
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
