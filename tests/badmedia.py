"""Odd but real media, made by the tests in tmp folders from the shared test data.

Each writer remuxes real packets with PyAV (nothing is re-encoded unless said), so the files
are what a camera, an editor or a careless copy would produce.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from casedata import SWAP

ORIG = SWAP / "derived/orig.mp4"
ELON = SWAP / "derived/elon.mp4"
# A JPEG that carries EXIF (its first segment is APP1 "Exif").
EXIF_JPEG = SWAP / "examples/images/elon_musk.jpg"


def mjpeg_avi_with_exif(dst: Path, n_frames: int = 12, fps: int = 10) -> Path:
    """A Motion-JPEG AVI whose every frame is the EXIF-carrying JPEG (as some cameras write)."""
    data = EXIF_JPEG.read_bytes()
    with Image.open(EXIF_JPEG) as img:
        width, height = img.size
    with av.open(str(dst), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p"
        for i in range(n_frames):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, fps)
            packet.is_keyframe = True
            out.mux(packet)
    return dst


def two_video_streams(dst: Path, first: Path, second: Path, *, default: int | None) -> Path:
    """An MKV holding the video of ``first`` as stream 0 and of ``second`` as stream 1.

    ``default`` names the stream marked default (None: neither is marked).
    """
    sources = [av.open(str(first)), av.open(str(second))]
    try:
        with av.open(str(dst), "w", format="matroska") as out:
            streams = []
            for i, src in enumerate(sources):
                stream = out.add_stream_from_template(src.streams.video[0])
                flag = av.stream.Disposition.default if default == i else 0
                stream.disposition = av.stream.Disposition(flag)
                streams.append(stream)
            for src, stream in zip(sources, streams, strict=True):
                for packet in src.demux(src.streams.video[0]):
                    if packet.dts is None:
                        continue
                    packet.stream = stream
                    out.mux(packet)
    finally:
        for src in sources:
            src.close()
    return dst


def mpegts(dst: Path, clip: Path = ORIG) -> Path:
    """``clip``'s H.264 video remuxed into MPEG-TS (Annex B, as broadcast recorders write)."""
    with av.open(str(dst), "w", format="mpegts") as out, av.open(str(clip)) as src:
        vin = src.streams.video[0]
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", vin)
        stream = out.add_stream_from_template(vin)
        for packet in src.demux(vin):
            for filtered in bsf.filter(packet if packet.size else None):
                filtered.stream = stream
                out.mux(filtered)
    return dst


def ts_with_timestamp_reset(dst: Path, clip: Path = ORIG, copies: int = 2) -> Path:
    """``copies`` MPEG-TS recordings of ``clip`` joined byte-wise: each copy's timestamps start
    again from the same value (a recorder restart, files concatenated with cat)."""
    one = mpegts(dst.with_name(dst.name + ".one.ts"), clip)
    dst.write_bytes(one.read_bytes() * copies)
    one.unlink()
    return dst


def big_png(dst: Path, side: int) -> Path:
    """A ``side`` x ``side`` greyscale PNG: few bytes on disk, side**2 pixels once decoded."""
    Image.new("L", (side, side), 128).save(dst, optimize=True)
    return dst


def resized_photo(src: Path, dst: Path, size: tuple[int, int]) -> Path:
    """A real photo resized to ``size`` (e.g. 10 x 10: too small to hold a usable face)."""
    with Image.open(src) as img:
        img.convert("RGB").resize(size).save(dst)
    return dst


def jpeg_bytes(src: Path) -> bytes:
    buf = io.BytesIO()
    with Image.open(src) as img:
        img.convert("RGB").save(buf, "JPEG")
    return buf.getvalue()
