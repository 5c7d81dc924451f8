"""PyTorch, ONNX Runtime and OpenVINO on the CPU for MTCNN's three networks and the embedder.

Each network runs on an input of the size it meets in practice (P-Net: the largest pyramid
level of a 1080p frame and of a batch of 32 LFW photos; R-Net: 512 crops; O-Net: 128 crops;
the embedder: 64 crops). The three runtimes are timed interleaved, round after round, and the
best of ``--repeats`` is kept, because the machine is shared; the load average is recorded
before and after. The largest difference of each runtime's outputs from PyTorch's is reported.

    python benchmarks/runtimes.py [--repeats 3] [--json benchmarks/results/runtimes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from likeness import faces, inference, models

RUNTIMES = inference.RUNTIMES


def inputs() -> dict[str, tuple[str, torch.Tensor]]:
    """Network name -> (which loaded module, an input of a realistic size)."""
    gen = torch.Generator().manual_seed(0)

    def x(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen) * 2 - 1

    # MTCNN's first scale at min_face_size 20 is 12/20: 1080p -> 649x1153, 250 px -> 151x151.
    return {
        "pnet_1080p": ("pnet", x(1, 3, 649, 1153)),
        "pnet_lfw32": ("pnet", x(32, 3, 151, 151)),
        "rnet_512": ("rnet", x(512, 3, 24, 24)),
        "onet_128": ("onet", x(128, 3, 48, 48)),
        "embedder_64": ("embedder", x(64, 3, 160, 160)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    nets = {}
    for runtime in RUNTIMES:
        detector = faces.load_detector("cpu", runtime=runtime)
        nets[runtime] = {
            "pnet": detector.pnet,
            "rnet": detector.rnet,
            "onet": detector.onet,
            "embedder": inference.load_embedder(device="cpu", runtime=runtime),
        }
    result: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "gpu": torch.cuda.is_available(),
        },
        "versions": {r: inference.runtime_versions(r)["version"] for r in RUNTIMES},
        "loadavg_before": os.getloadavg(),
        "networks": {},
    }
    with torch.inference_mode():
        for name, (which, x) in inputs().items():
            outs = {}
            for runtime in RUNTIMES:  # warm-up, and the outputs to compare
                out = nets[runtime][which](x)
                outs[runtime] = out if isinstance(out, tuple) else (out,)
            times: dict[str, list[float]] = {r: [] for r in RUNTIMES}
            for _ in range(args.repeats):
                for runtime in RUNTIMES:
                    start = time.perf_counter()
                    nets[runtime][which](x)
                    times[runtime].append(time.perf_counter() - start)
            best = {r: min(t) for r, t in times.items()}
            entry = {
                "input": list(x.shape),
                "best_s": best,
                "all_s": times,
                "speedup_vs_torch": {r: best["torch"] / best[r] for r in RUNTIMES},
                "max_abs_diff_vs_torch": {
                    r: max(
                        float((a.float() - b.float()).abs().max())
                        for a, b in zip(outs[r], outs["torch"], strict=True)
                    )
                    for r in RUNTIMES
                },
                "loadavg": os.getloadavg(),
            }
            result["networks"][name] = entry
            line = "  ".join(
                f"{r} {best[r] * 1e3:7.1f} ms (x{entry['speedup_vs_torch'][r]:.2f}, "
                f"diff {entry['max_abs_diff_vs_torch'][r]:.1e})"
                for r in RUNTIMES
            )
            print(f"{name:12s} {line}  load {entry['loadavg'][0]:.1f}", flush=True)
    result["loadavg_after"] = os.getloadavg()
    result["model_sha256"] = models.model_spec(models.DEFAULT_MODEL).sha256
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
