"""Hardware decoding (NVDEC, through PyAV's CUDA hwaccel): are its frames likeness's frames, bit
for bit, and how fast is it?

A GPU analysis decodes on the CPU (``likeness.parallel_decoding``). One long GOP, like the
peer's 1080p video, goes to one single-threaded decoder, about 100-130 frames/s on session 6's
H200 host, while 20x the peer's batched pipeline needs about 320. NVDEC decodes on the GPU.
H.264 and HEVC decoding is exact by the standards, so NVDEC's YUV planes should equal
FFmpeg's for an intact stream. Its frames come out as NV12 (chroma interleaved), and
swscale's NV12-to-RGB conversion is not its YUV420P-to-RGB one: on this project's CPU the two
differ on every frame. So each NVDEC frame is deinterleaved into YUV420P planes (exact) and
converted by the same swscale path as :func:`likeness.footage.to_rgb`.

For each video this script compares, frame by frame (presentation time, BLAKE2b of the RGB
pixels), NVDEC + deinterleave + swscale against ``likeness.footage.iter_frames`` (one CPU
decoder), and NVDEC's NV12 converted directly, for the record; and it times NVDEC alone and
with the conversion. It changes nothing in likeness.

    python benchmarks/gpu/nvdec.py [--videos PATH ...] [--json OUT]
    python benchmarks/gpu/nvdec.py --software   # no GPU: the conversion checked on CPU frames
        made NV12 by swscale (what NVDEC's download gives)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available
from av.video.reformatter import VideoReformatter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import series
from likeness import footage, models, orientation
from likeness.case import testdata_root


def digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


def nv12_to_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """The NV12 frame's planes as a YUV420P frame, with its colour tags: the same samples."""
    width, height = frame.width, frame.height
    luma = np.frombuffer(frame.planes[0], np.uint8).reshape(-1, frame.planes[0].line_size)
    chroma = np.frombuffer(frame.planes[1], np.uint8).reshape(-1, frame.planes[1].line_size)
    luma = luma[:height, :width]
    chroma = chroma[: (height + 1) // 2, : 2 * ((width + 1) // 2)]
    planar = np.concatenate([luma.ravel(), chroma[:, 0::2].ravel(), chroma[:, 1::2].ravel()])
    out = av.VideoFrame.from_ndarray(planar.reshape(-1, width), format="yuv420p")
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def rgb_of(frame: av.VideoFrame, source: av.VideoFrame, reformatter: VideoReformatter):
    """likeness's RGB of ``frame``, turned upright by ``source``'s display matrix."""
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    return np.ascontiguousarray(orientation.upright(rgb, orientation.display_transform(source)))


def reference(video: Path) -> tuple[list[tuple[float, str]], float]:
    start = time.perf_counter()
    frames = [(float(t), digest(image))
              for batch in footage.iter_frames(video, None)
              for t, image in zip(batch.time_s, batch.images, strict=True)]
    return frames, time.perf_counter() - start


def hardware_frames(video: Path, software: bool):
    """Every decoded frame as NVDEC gives it (downloaded, NV12), in presentation order; with
    ``software``, the CPU decoder's frames made NV12 by swscale instead."""
    hwaccel = None if software else HWAccel("cuda", allow_software_fallback=False)
    to_nv12 = VideoReformatter()
    with av.open(str(video), hwaccel=hwaccel) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if software:
                nv12 = to_nv12.reformat(frame, format="nv12", threads=1)
                nv12.colorspace, nv12.color_range = frame.colorspace, frame.color_range
                yield nv12, frame
            else:
                yield frame, frame


def compare(video: Path, software: bool) -> dict:
    ref, ref_s = reference(video)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        origin, base = stream.start_time or 0, stream.time_base

    def seconds(pts: int) -> float:
        return float((pts - origin) * base)

    start = time.perf_counter()
    count = sum(1 for _ in hardware_frames(video, software))
    decode_s = time.perf_counter() - start
    exact, direct, formats, times = [], [], set(), []
    deinterleaved, nv12_direct = VideoReformatter(), VideoReformatter()
    start = time.perf_counter()
    for frame, source in hardware_frames(video, software):
        formats.add(frame.format.name)
        times.append(seconds(frame.pts))
        if frame.format.name == "nv12":
            planar = nv12_to_yuv420p(frame)
            exact.append(digest(rgb_of(planar, source, deinterleaved)))
        else:
            exact.append(digest(rgb_of(frame, source, deinterleaved)))
        direct.append(digest(rgb_of(frame, source, nv12_direct)))
    convert_s = time.perf_counter() - start
    ref_times, ref_digests = [t for t, _ in ref], [d for _, d in ref]
    # The counts may differ (a frame NVDEC drops): frames are compared in order up to the
    # shorter, and both counts are reported.
    def matching(digests: list[str]) -> int:
        return sum(a == b for a, b in zip(digests, ref_digests, strict=False))

    return {
        "video": str(video), "frames": len(ref), "hardware_frames": count,
        "hardware_formats": sorted(formats),
        "same_times": times == ref_times,
        "identical_rgb_deinterleaved": matching(exact),
        "identical_rgb_nv12_direct": matching(direct),
        "cpu_one_decoder_fps": round(len(ref) / ref_s, 1),
        "hardware_decode_fps": round(count / decode_s, 1),
        "hardware_decode_and_rgb_fps": round(count / convert_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, nargs="*", default=None)
    parser.add_argument("--software", action="store_true",
                        help="check the conversion on CPU-decoded frames (no GPU needed)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result: dict = {"hwdevices": hwdevices_available(), "software": args.software,
                    "videos": []}
    videos = args.videos
    if videos is None:
        data = testdata_root()
        home = models.cache_dir() / "benchmarks" / "series"
        # dev05 (High profile, B-frames, two GOPs) where the test data is whole; the GPU
        # machine gets only the clips benchmarks/gpu/carry.py carries.
        dev05 = data / "deepfacelive/series_keanu_dev/footage/dev05.mp4"
        videos = [
            data / "facenet-pytorch/examples/video.mp4",
            *([dev05] if dev05.exists() else []),
            series.build_episode(home / "vertical-20s-ep01.mp4",
                                 series.read_clip(series.source_clip("vertical")),
                                 series.VERTICAL, 20.0, start=0),
        ]
    for video in videos:
        try:
            row = compare(video, args.software)
        except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
            row = {"video": str(video), "error": f"{type(exc).__name__}: {exc}"}
        result["videos"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
