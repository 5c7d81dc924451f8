"""The embedder on a GPU in fp32 (TF32 off and on), fp16 and bf16, against the CPU's fp32
PyTorch embeddings of the same real face crops; faces/s at batch 64 and 256.

The crops are those likeness cuts from the peer's 1080p video (every frame); 256 of them are
compared (max absolute difference of the L2-normalised embeddings, lowest cosine), and 2,048
(the crops repeated) are timed, median of 3 runs after a warm-up. The issue's bar for a
reduced precision is embeddings within 1e-3 of fp32.

    python benchmarks/gpu/embedder_precision.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from likeness import embeddings, face_crop, faces, footage, models
from likeness.case import testdata_root

COMPARED, TIMED = 256, 2048
VARIANTS = (
    ("fp32", torch.float32, False),
    ("fp32+tf32", torch.float32, True),
    ("fp16", torch.float16, False),
    ("bf16", torch.bfloat16, False),
)


def embed(model: torch.nn.Module, dtype: torch.dtype, crops: np.ndarray, size: int) -> np.ndarray:
    rows = []
    with torch.inference_mode():
        for start in range(0, len(crops), size):
            batch = embeddings.standardise(crops[start : start + size]).to("cuda", dtype)
            rows.append(torch.nn.functional.normalize(model(batch).float(), dim=1).cpu().numpy())
    return np.concatenate(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    video = testdata_root() / "facenet-pytorch" / "examples" / "video.mp4"
    frames = [img for b in footage.iter_frames(video, None, batch_size=16) for img in b.images]
    detector = faces.load_detector("cuda", 20)
    found = faces.detect_batch(detector, frames)
    crops = np.concatenate([face_crop.crop_faces(f, d.boxes, d.landmarks)
                            for f, d in zip(frames, found, strict=True)])
    reference = embeddings.embed_crops(
        models.load_embedder(models.DEFAULT_MODEL, "cpu"), crops[:COMPARED], 64
    )
    gpu = models.load_embedder(models.DEFAULT_MODEL, "cuda")
    timed = np.resize(crops, (TIMED, *crops.shape[1:]))
    result: dict = {"device": torch.cuda.get_device_name(), "n_crops": len(crops)}
    for name, dtype, tf32 in VARIANTS:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        model = gpu.to(dtype)
        rows = embed(model, dtype, crops[:COMPARED], 64)
        row = {"max_abs_vs_cpu": float(np.abs(rows - reference).max()),
               "min_cosine_vs_cpu": float((rows * reference).sum(1).min())}
        for size in (64, 256):
            embed(model, dtype, timed[:size], size)
            times = []
            for _ in range(3):
                torch.cuda.synchronize()
                start = time.perf_counter()
                embed(model, dtype, timed, size)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            row[f"faces_per_s_batch{size}"] = TIMED / statistics.median(times)
        result[name] = row
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
