"""Where decoding the peer's 1080p video goes, on a machine with many cores: likeness's
decoder (one thread, see ``likeness.footage.decoded_frames``) against PyAV alone with one
thread or frame threads, with and without the RGB conversion; frames/s, median of 3.

    python benchmarks/gpu/decoding.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import av

from likeness import footage
from likeness.case import testdata_root


def rate(count_frames) -> float:
    times, count = [], 0
    for _ in range(3):
        start = time.perf_counter()
        count = count_frames()
        times.append(time.perf_counter() - start)
    return round(count / statistics.median(times), 1)


def pyav(video: str, thread_type: str, threads: int, convert: bool):
    def count_frames() -> int:
        count = 0
        with av.open(video) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = thread_type, threads
            for frame in container.decode(stream):
                if convert:
                    frame.to_ndarray(format="rgb24")
                count += 1
        return count

    return count_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    video = str(testdata_root() / "facenet-pytorch" / "examples" / "video.mp4")
    result = {
        "likeness_iter_frames_fps": rate(lambda: sum(
            len(b.frame_index) for b in footage.iter_frames(video, None, batch_size=16))),
        "pyav_slice1_decode_only_fps": rate(pyav(video, "SLICE", 1, False)),
        "pyav_frame_auto_decode_only_fps": rate(pyav(video, "FRAME", 0, False)),
        "pyav_slice1_with_rgb_fps": rate(pyav(video, "SLICE", 1, True)),
        "pyav_frame_auto_with_rgb_fps": rate(pyav(video, "FRAME", 0, True)),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
