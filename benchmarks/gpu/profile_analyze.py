"""cProfile of ``analyze_episode`` on the peer's 1080p video (every frame), after a first,
unprofiled run at the same batch shapes; the top functions by own and by cumulative time.

From Python 3.12, cProfile sees every thread, so the decoding thread is in the profile too.

    python benchmarks/gpu/profile_analyze.py [--device cuda] [--out profile.txt]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import throughput
from likeness import analysis, faces, inference
from likeness.case import ANALYSIS_DEFAULTS, AnalysisParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    params = AnalysisParams(**{**ANALYSIS_DEFAULTS, "sample_fps": None, "device": args.device})
    detector = faces.load_detector(args.device, params.min_face_size)
    model = inference.load_embedder(params.model, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        case = throughput.benchmark_case(throughput.default_video(), params, Path(tmp))
        episode = case.episodes[0]
        analysis.analyze_episode(episode, case, Path(tmp) / "warm", detector, model,
                                 progress=False)
        profile = cProfile.Profile()
        profile.enable()
        status = analysis.analyze_episode(episode, case, Path(tmp) / "run", detector, model,
                                          progress=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        profile.disable()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)
    print(status)
    print(text.getvalue())
    if args.out:
        args.out.write_text(text.getvalue(), encoding="utf-8")


if __name__ == "__main__":
    main()
