"""Decoding by runs of GOPs in parallel (``likeness.parallel_decoding``): the same frames as
one decoder, and how much faster with 2-16 decoders.

An analysis on a GPU reads with :func:`likeness.parallel_decoding.decoders_for` decoders (one
on a CPU). This script reads a real H.264 episode, built as ``series.py`` builds them, with
one decoder and with each number of decoders, and compares every delivered frame (index,
time, BLAKE2b digest of its RGB pixels) with the single decoder's. RGB conversion of the kept
frames is included, as in an analysis.

    python benchmarks/gpu/gop_decoding.py [--video PATH | --seconds 60] [--decoders 2 4 8]
        [--sample-fps 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import series
from likeness import models, parallel_decoding, probing


def read(video: Path, sample_fps: float | None, decoders: int):
    """Every delivered frame (index, time, digest), the seconds it took, and the record."""
    record = parallel_decoding.ParallelDecoding(decoders)
    start = time.perf_counter()
    frames = [
        (int(i), float(t), hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest())
        for batch in parallel_decoding.iter_frames(video, sample_fps, decoders=decoders,
                                                   record=record)
        for i, t, image in zip(batch.frame_index, batch.time_s, batch.images, strict=True)
    ]
    return frames, time.perf_counter() - start, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None,
                        help="default: a vertical 1080x1920 episode built as series.py does")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of that episode (x264 puts an IDR every 250 frames)")
    parser.add_argument("--decoders", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--sample-fps", type=float, default=5.0,
                        help="frames kept per second, as an analysis samples (0: every frame)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    video = args.video
    if video is None:
        home = models.cache_dir() / "benchmarks" / "series"
        video = series.build_episode(home / f"vertical-{args.seconds:g}s-ep01.mp4",
                                     series.read_clip(series.source_clip("vertical")),
                                     series.VERTICAL, args.seconds, start=0)
    sample_fps = args.sample_fps or None
    reference, seconds, _ = read(video, sample_fps, 1)
    decoded = probing.probe_video(video)["frame_count"]  # every frame is decoded, kept or not
    result: dict = {
        "video": str(video), "cpus": os.cpu_count(), "sample_fps": sample_fps,
        "frames_decoded": decoded, "frames_kept": len(reference),
        "one_decoder": {"seconds": round(seconds, 2),
                        "decoded_fps": round(decoded / seconds, 1),
                        "kept_fps": round(len(reference) / seconds, 1)},
        "parallel": [],
    }
    for decoders in args.decoders:
        frames, seconds, record = read(video, sample_fps, decoders)
        result["parallel"].append({
            "decoders": decoders, "runs": record.runs, "fallback": record.fallback,
            "seconds": round(seconds, 2), "decoded_fps": round(decoded / seconds, 1),
            "kept_fps": round(len(frames) / seconds, 1),
            "identical_to_one_decoder": frames == reference,
        })
        print(json.dumps(result["parallel"][-1]), flush=True)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
