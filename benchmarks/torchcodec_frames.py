"""Is torchcodec exact enough to decode evidence? Its frames against likeness's, and what the
difference does to the faces found and their embeddings.

Issue 9 names torchcodec for hardware decoding "where it is exact enough". likeness decodes
with PyAV, one single-threaded decoder per run of GOPs, and converts each frame to RGB with
swscale under the frame's own colour tags (:func:`likeness.footage.to_rgb`); every figure
downstream is computed from those pixels, so a decoder that changes them changes the numbers.
H.264 and HEVC decoding is exact by specification (a conforming decoder's YUV output is
fixed), so what can differ is the conversion to RGB. This script measures, per clip:

- the frames: how many are identical, the largest and mean absolute difference of a channel
  value, the share of values that differ;
- on the first ``--faces-frames`` frames of each clip, what that does to the evidence: the
  faces likeness's detector finds in both (matched at IoU >= 0.5), the largest change of a
  box corner (px), of a probability, and of an embedding component (max abs, the issue's
  equivalence tolerance is 1e-4), and the faces found in one set only;
- decoding speed (frames/s, every frame, RGB out) of both.

With ``--device cuda`` torchcodec decodes on the GPU (NVDEC, with its own conversion to RGB
on the device); otherwise on the CPU. torchcodec is not one of likeness's dependencies
(``pip install torchcodec``; ``benchmarks/gpu/carry.py`` carries it to a lent GPU). It loads
FFmpeg's shared libraries at run time; this script gives it those bundled in PyAV's wheel,
linked under the names torchcodec looks for and put on ``LD_LIBRARY_PATH`` (the script starts
itself again to do so), so that both decode with the very same FFmpeg and no system FFmpeg
is needed.

    python benchmarks/torchcodec_frames.py [--device cpu] [--faces-frames 16] [--json OUT]
        [CLIP ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from likeness import embeddings, face_crop, faces, footage, inference
from likeness.case import testdata_root


def pyav_ffmpeg_folder() -> Path:
    """A folder of links to the FFmpeg libraries in PyAV's wheel, under the names torchcodec's
    build for that FFmpeg needs (``libavcodec.so.62`` -> ``av.libs/libavcodec-<hash>.so.62...``)."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    folder = Path(tempfile.gettempdir()) / f"likeness-pyav-ffmpeg-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    for lib in libs.glob("lib*.so*"):
        named = re.match(r"lib(av[a-z]+|sw[a-z]+)-[0-9a-f]{8}\.so\.(\d+)\.", lib.name)
        if named:
            link = folder / f"lib{named[1]}.so.{named[2]}"
            link.unlink(missing_ok=True)
            link.symlink_to(lib)
    return folder


def with_pyav_ffmpeg() -> None:
    """Start this script again with PyAV's FFmpeg first on ``LD_LIBRARY_PATH`` (the dynamic
    loader reads it only when a process starts), unless that was done. (Not "unless it is
    first": importing OpenCV puts its own folder first in this process's environment.)"""
    folder = str(pyav_ffmpeg_folder())
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    if folder not in paths:
        env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join([folder, *filter(None, paths)])}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def libavcodec_files() -> list[str]:
    """The libavcodec files this process has loaded: PyAV's, which torchcodec then shares, and
    OpenCV's own (likeness imports OpenCV), which neither decoder here uses."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if "libavcodec" in line})


def default_clips() -> list[Path]:
    root = testdata_root()
    # The clips benchmarks/gpu/carry.py carries to a lent GPU.
    return [root / "facenet-pytorch" / "examples" / "video.mp4",
            root / "sber-swap" / "examples" / "videos" / "dance.mp4"]


def likeness_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame as likeness decodes it, and the seconds that took."""
    frames: list[np.ndarray] = []
    start = time.perf_counter()
    for batch in footage.iter_frames(path, None, batch_size=16):
        frames.extend(batch.images)
    return frames, time.perf_counter() - start


def torchcodec_frames(path: Path, device: str) -> tuple[list[np.ndarray], float]:
    """Every frame as torchcodec decodes it (HWC RGB uint8, on the host), and the seconds
    that took (the copy to the host included)."""
    from torchcodec.decoders import VideoDecoder

    start = time.perf_counter()
    decoder = VideoDecoder(str(path), device=device, dimension_order="NHWC", seek_mode="exact")
    frames: list[np.ndarray] = []
    n = decoder.metadata.num_frames
    for first in range(0, n, 16):
        batch = decoder.get_frames_in_range(first, min(first + 16, n)).data
        frames.extend(batch.cpu().numpy())
    return frames, time.perf_counter() - start


def pixel_differences(ours: list[np.ndarray], theirs: list[np.ndarray]) -> dict:
    same_shapes = len(ours) == len(theirs) and all(
        a.shape == b.shape for a, b in zip(ours, theirs, strict=True))
    if not same_shapes:
        return {"comparable": False, "frames_likeness": len(ours),
                "frames_torchcodec": len(theirs),
                "shapes": sorted({str(a.shape) for a in ours} | {str(b.shape) for b in theirs})}
    identical, largest, total, differing, values = 0, 0, 0.0, 0, 0
    for a, b in zip(ours, theirs, strict=True):
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        identical += int(not d.any())
        largest = max(largest, int(d.max()))
        total += float(d.sum())
        differing += int(np.count_nonzero(d))
        values += d.size
    return {"comparable": True, "frames": len(ours), "identical_frames": identical,
            "max_abs_difference": largest, "mean_abs_difference": total / values,
            "share_of_values_differing": differing / values}


def evidence_differences(ours: list[np.ndarray], theirs: list[np.ndarray], detector,
                         model) -> dict:
    """What torchcodec's frames change in the faces found and their embeddings."""
    matched, only_ours, only_theirs = 0, 0, 0
    box, prob, emb = 0.0, 0.0, 0.0
    for a, b in zip(ours, theirs, strict=True):
        da, db = faces.detect_batch(detector, [a, b])
        if len(da) and len(db):
            iou = faces.box_iou(da.boxes, db.boxes)
            pairs = [(i, int(iou[i].argmax())) for i in range(len(da)) if iou[i].max() >= 0.5]
        else:
            pairs = []
        matched += len(pairs)
        only_ours += len(da) - len(pairs)
        only_theirs += len(db) - len(pairs)
        if not pairs:
            continue
        ia, ib = (np.array(p) for p in zip(*pairs, strict=True))
        box = max(box, float(np.abs(da.boxes[ia] - db.boxes[ib]).max()))
        prob = max(prob, float(np.abs(da.probs[ia] - db.probs[ib]).max()))
        ea = embeddings.embed_crops(model, face_crop.crop_faces(a, da.boxes[ia],
                                                                da.landmarks[ia]))
        eb = embeddings.embed_crops(model, face_crop.crop_faces(b, db.boxes[ib],
                                                                db.landmarks[ib]))
        emb = max(emb, float(np.abs(ea - eb).max()))
    return {"frames": len(ours), "faces_matched": matched, "faces_only_likeness": only_ours,
            "faces_only_torchcodec": only_theirs, "max_box_abs_px": box,
            "max_prob_abs": prob, "max_embedding_abs": emb}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--device", default="cpu", help="where torchcodec decodes")
    parser.add_argument("--faces-frames", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if argv is None:
        with_pyav_ffmpeg()
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads FFmpeg's libraries)
    except (ImportError, RuntimeError, OSError) as exc:
        sys.exit(f"torchcodec cannot be loaded ({str(exc).splitlines()[0]}): pip install "
                 "torchcodec (0.16 or later)")
    device = faces.resolve_device("cuda" if args.device.startswith("cuda") else "cpu")
    detector = faces.load_detector(str(device), 20)
    model = inference.load_embedder(device=str(device))
    result: dict = {"torchcodec": torchcodec.__version__, "torch": torch.__version__,
                    "av": av.__version__, "libavcodec": av.library_versions["libavcodec"],
                    "libavcodec_files_loaded": libavcodec_files(), "device": args.device,
                    "clips": {}}
    for clip in args.clips or default_clips():
        ours, ours_s = likeness_frames(clip)
        theirs, theirs_s = torchcodec_frames(clip, args.device)
        entry = {"pixels": pixel_differences(ours, theirs),
                 "frames_per_s": {"likeness": len(ours) / ours_s,
                                  "torchcodec": len(theirs) / theirs_s}}
        if entry["pixels"]["comparable"]:
            n = args.faces_frames
            entry["evidence"] = evidence_differences(ours[:n], theirs[:n], detector, model)
        result["clips"][clip.name] = entry
        print(clip.name, json.dumps(entry, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
