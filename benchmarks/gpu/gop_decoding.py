"""Decoding by GOPs in parallel: is it exact, and how fast is it on many cores?

likeness decodes with one thread (``likeness.footage.decoded_frames`` says why: with FFmpeg's
frame threads, what a damaged stream yields depends on thread timing). On a GPU machine that
one thread is the bottleneck. Another way to use the cores: cut the stream at its keyframes
into runs of packets, give each run to its own single-threaded decoder, and put the frames
back in order. For closed GOPs (IDR keyframes, x264's default), each run decodes on its own.

This script checks that claim on a real H.264 episode: every frame (presentation time and a
BLAKE2b digest of its RGB pixels) from N parallel decoders against one decoder, and times
both, RGB conversion included. It changes nothing in likeness.

    python benchmarks/gpu/gop_decoding.py [--video PATH | --seconds 60] [--workers 2 4 8]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import series
from likeness import models


def packet_keyframes(video: Path) -> list[bool]:
    """For every packet of the video stream, in file order: is it a keyframe."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return [bool(p.is_keyframe) for p in container.demux(stream) if p.size]


def decode_run(video: Path, first: int, stop: int) -> list[tuple[int, str]]:
    """Packets ``first`` to ``stop - 1`` through one single-threaded decoder, then flushed:
    (pts, digest of the RGB pixels) of every frame out."""
    frames = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "SLICE", 1
        index = 0
        packets = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if index >= stop:
                break
            if index >= first:
                packets.append(packet)
            index += 1
        for packet in [*packets, None]:
            for frame in stream.decode(packet):
                rgb = frame.to_ndarray(format="rgb24")
                frames.append((frame.pts, hashlib.blake2b(rgb.tobytes(), digest_size=16)
                               .hexdigest()))
    return frames


def runs(keyframes: list[bool], workers: int) -> list[tuple[int, int]]:
    """The packets cut at keyframes into about ``workers`` runs of similar length."""
    starts = [i for i, key in enumerate(keyframes) if key]
    if not starts or starts[0] != 0:
        raise SystemExit("the stream does not start with a keyframe")
    per_run = len(keyframes) / workers
    cuts = [0]
    for start in starts[1:]:
        if start - cuts[-1] >= per_run and len(cuts) < workers:
            cuts.append(start)
    return list(zip(cuts, [*cuts[1:], len(keyframes)], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None,
                        help="default: a vertical 1080x1920 episode built as series.py does")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of that episode (x264 puts a keyframe every 250 frames)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    video = args.video
    if video is None:
        home = models.cache_dir() / "benchmarks" / "series"
        video = series.build_episode(home / f"vertical-{args.seconds:g}s-ep01.mp4",
                                     series.read_clip(series.source_clip("vertical")),
                                     series.VERTICAL, args.seconds, start=0)
    keyframes = packet_keyframes(video)
    start = time.perf_counter()
    reference = decode_run(video, 0, len(keyframes))
    one = time.perf_counter() - start
    result: dict = {"video": str(video), "packets": len(keyframes),
                    "keyframes": sum(keyframes), "cpus": os.cpu_count(),
                    "one_decoder_fps": round(len(reference) / one, 1), "parallel": []}
    for workers in args.workers:
        cut = runs(keyframes, workers)
        start = time.perf_counter()
        with ThreadPoolExecutor(len(cut)) as pool:
            parts = list(pool.map(lambda r: decode_run(video, *r), cut))
        seconds = time.perf_counter() - start
        frames = [f for part in parts for f in part]
        result["parallel"].append({
            "workers": workers, "runs": len(cut), "fps": round(len(frames) / seconds, 1),
            "frames": len(frames), "identical_to_one_decoder": frames == reference,
        })
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
