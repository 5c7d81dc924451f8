"""Throughput of ``likeness screen``: in-process, and on a local Ray cluster of 1 and 2 workers.

Screens the same clips three times into fresh output folders with ``reuse_faces=False`` (every
faces table is recomputed: decoding, MTCNN, embedding, tracking; then gallery search, LRs,
thumbnails, labels), against a small watchlist (Elon Musk, Mark Zuckerberg, Barack Obama, Keanu
Reeves; population: the rest of LFW). Reports, per mode, the wall time of
the per-video work (the watchlist and calibration set-up, done once per screening, is reported
apart), videos/hour, hours of video/hour, sampled frames/s and, per clip, seconds per sampled
frame (the per-frame costs docs/scale.md models from). The load average of the machine is
recorded beside each reading: on a shared machine the numbers are lower bounds.

    python benchmarks/screen_throughput.py [--modes in-process,ray1,ray2] [--clips A,B]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd

from likeness.case import testdata_root
from likeness.screen import screen_catalogue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_screen import build_watchlist  # the tests' watchlist, not a second copy

CLIPS = ("sber-swap/derived/elon.mp4", "deepfacelive/series_keanu_dev/footage/dev02.mp4",
         "face_recognition/examples/short_hamilton_clip.mp4",
         "facenet-pytorch/examples/video.mp4")
MODES = {"in-process": ("in-process", None, None), "ray1": ("ray local, 1 worker", "local", 1),
         "ray2": ("ray local, 2 workers", "local", 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: "
                        + ", ".join(MODES))
    parser.add_argument("--clips", default=",".join(CLIPS),
                        help="comma-separated paths under the test data")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    data = testdata_root()
    readings = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        watchlist = build_watchlist(tmp / "watchlist", 0)
        manifest = tmp / "clips.csv"
        clips = args.clips.split(",")
        manifest.write_text("path\n" + "".join(f"{data / c}\n" for c in clips))
        for name, ray, workers in (MODES[m] for m in args.modes.split(",")):
            load_before = os.getloadavg()[0]
            summary = screen_catalogue(watchlist, manifest, tmp / name.replace(" ", "_"),
                                       population=data / "lfw/images_deepfunneled", ray=ray,
                                       workers=workers, reuse_faces=False, progress=False)
            timing = summary["timing"]
            per_video = []
            for path in sorted((tmp / name.replace(" ", "_") / "videos").glob("*.json")):
                result = json.loads(path.read_text())
                per_video.append({"video": result["video"], "n_frames": result["n_frames"],
                                  "n_faces": result["n_faces"], "seconds": result["seconds"],
                                  "s_per_frame": result["seconds"] / max(result["n_frames"], 1)})
            frames = sum(v["n_frames"] for v in per_video)
            readings.append({
                "mode": name, "prepare_s": round(timing["prepare_s"], 2),
                "videos_s": round(timing["videos_s"], 2), "n_videos": timing["n_videos"],
                "video_hours": timing["video_hours"],
                "videos_per_hour": round(timing["videos_per_hour"], 1),
                "video_hours_per_hour": round(timing["video_hours_per_hour"], 4),
                "sampled_frames": frames,
                "sampled_frames_per_s": round(frames / timing["videos_s"], 3),
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
                "per_video": per_video,
            })
            print(pd.DataFrame([{k: v for k, v in readings[-1].items() if k != "per_video"}])
                  .to_string(index=False), flush=True)
            print(pd.DataFrame(per_video).to_string(index=False), flush=True)
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "clips": clips, "readings": readings}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
