"""Footage: decode videos into upright RGB frames with exact times.

Built on PyAV (FFmpeg). Files are checked and opened, and their video stream chosen, by
:mod:`likeness.containers`. Describing a video without decoding it (metadata, timestamp
resets, truncation) is :mod:`likeness.probing`, built on that and on the first-frame decoding
here. Decoding streams: :func:`iter_frames` yields small batches of RGB frames, so memory
stays bounded whatever the length of the video.

Conventions used throughout:

- ``frame_index`` counts every frame the decoder delivers, 0-based, in the order it delivers
  them, which is presentation order (the decoder reorders B-frames). Sampling never changes
  the numbering: frame 120 is frame 120 whether every frame or 5 per second are read.
- ``time_s`` is the frame's presentation time in seconds relative to the start of the video
  stream: ``(pts - stream.start_time) * time_base``, computed in exact rational arithmetic
  and rounded once to float64. A frame without a pts takes its packet's dts; a frame with
  neither takes the previous frame's time plus one average frame interval (rare, broken
  streams). When the stream declares no start time, the first frame's timestamp is time 0.
- Images are ``(H, W, 3)`` uint8 RGB, C-contiguous, turned upright according to the display
  matrix that phones write (``rotation`` below), so faces are upright.
- ``rotation`` (in :func:`likeness.probing.probe_video`) is the clockwise turn, 0/90/180/270
  degrees, that displays the stored picture upright: the convention of the old ``rotate`` tag
  and of OpenCV's ``CAP_PROP_ORIENTATION_META`` (an iPhone portrait video reads 90).
  ``width`` and ``height`` are those of the stored picture, before that turn
  (:mod:`likeness.orientation`).

Damaged input never loses work already done: :func:`iter_frames` yields every frame that
decodes and only then raises :class:`~likeness.errors.FootageError` saying where the
footage stops (truncated file) or how many packets failed (damaged file).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from likeness import orientation
from likeness.containers import checked_path, open_container, video_stream
from likeness.errors import FootageError

__all__ = ["FootageError", "FrameBatch", "iter_frames", "read_frames"]



@dataclass(frozen=True)
class FrameBatch:
    """A batch of decoded frames, in presentation order.

    Attributes:
        frame_index: int64 ``(n,)``, index of each frame among ALL decoded frames (0-based).
        time_s: float64 ``(n,)``, exact presentation time in seconds from the stream start.
        images: ``n`` arrays ``(H, W, 3)`` uint8 RGB, already turned upright.
    """

    frame_index: np.ndarray
    time_s: np.ndarray
    images: list[np.ndarray] = field(repr=False)


@dataclass
class DecodeReport:
    """What went wrong while decoding; filled in as decoding goes."""

    header_frames: int = 0
    index_end: int | None = None
    packets: int = 0
    bad_packets: int = 0
    first_packet_error: str = ""
    demux_error: str = ""
    corrupt_frames: int = 0
    timestamp_resets: int = 0

    def read_header(self, stream: av.video.VideoStream) -> None:
        """What the container promises, against which truncation is judged: the frame count of
        the header and where the index places the last frame's data."""
        self.header_frames = stream.frames
        self.index_end = max((e.pos + e.size for e in stream.index_entries), default=None)


# Errors of PyAV/FFmpeg on inputs they do not expect; a file that raises one of these cannot be
# read as footage, and is refused as such (the episode fails alone), never a crash.
DECODER_FAILURES = (
    av.error.FFmpegError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError,
    KeyError, AttributeError, EOFError, RuntimeError,
)


def unreadable_error(path: Path, exc: BaseException) -> FootageError:
    return FootageError(
        f"{path}: cannot be read as footage ({type(exc).__name__}: {exc}); check that it is "
        "an intact video file"
    )


# --------------------------------------------------------------------------------------------
# Decoding


def decode_in_one_thread(stream: av.video.VideoStream) -> None:
    """Decode ``stream`` in the calling thread alone, as every decoder of likeness does.

    With frame threads, which frames of damaged data are dropped and whether the decoder
    reports the damage depend on thread timing (the same file read "damaged" in one run and
    "ok" in the next), and with slice threads the concealed pixels after an error do. Most
    H.264 is coded as one slice per frame, so slice threads gained nothing anyway. Decoding
    overlaps detection (:func:`likeness.files.prefetch_each`), and where one thread cannot
    keep up (a GPU), :mod:`likeness.parallel_decoding` runs several such decoders, each on
    its own run of closed GOPs.
    """
    stream.thread_count = 1
    stream.thread_type = "SLICE"


def decoded_frames(
    path: Path, report: DecodeReport, *, max_packets: int | None = None
) -> Iterator[tuple[int, Fraction, av.VideoFrame]]:
    """Yield ``(frame_index, time in seconds as a Fraction, frame)`` for every decoded frame.

    Packets that fail to decode are counted in ``report`` and skipped (as FFmpeg does); a
    demuxing error ends the stream. The caller decides what to raise once the frames are out.
    ``max_packets`` stops reading after that many packets (the decoder is still flushed).
    """
    with open_container(path) as container:
        stream = video_stream(container, path)
        report.read_header(stream)
        decode_in_one_thread(stream)
        time_base = stream.time_base or Fraction(1, 1)
        origin = stream.start_time
        rate = stream.average_rate or stream.guessed_rate
        interval = Fraction(1) / Fraction(rate) if rate else Fraction(0)
        frame_index = 0
        previous_time: Fraction | None = None
        # Added to every time after a timestamp reset, so times stay increasing.
        shift = Fraction(0)

        def packets() -> Iterator[av.Packet | None]:
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        report.packets += 1
                    yield packet
                    if max_packets is not None and report.packets >= max_packets:
                        yield None
                        return
            except av.error.FFmpegError as exc:
                report.demux_error = str(exc)
                yield None  # flush the decoder so the frames it holds still come out

        for packet in packets():
            try:
                frames = stream.decode(packet)  # None flushes
            except (av.error.FFmpegError, EOFError) as exc:
                report.bad_packets += packet is not None
                report.first_packet_error = report.first_packet_error or str(exc)
                continue
            for frame in frames:
                timestamp = frame.pts if frame.pts is not None else frame.dts
                if timestamp is None:
                    time = (previous_time + interval) if previous_time is not None else Fraction(0)
                else:
                    if origin is None:
                        origin = timestamp
                    time = (timestamp - origin) * time_base + shift
                    if previous_time is not None and time < previous_time:
                        # Timestamps restarted (concatenated MPEG-TS, a recorder restart):
                        # frames come in presentation order, so the frame follows the
                        # previous one; the count goes into the probe's record.
                        shift += previous_time + interval - time
                        time = previous_time + interval
                        report.timestamp_resets += 1
                if frame.is_corrupt:
                    report.corrupt_frames += 1
                previous_time = time
                yield frame_index, time, frame
                frame_index += 1


def footage_problem(
    path: Path, report: DecodeReport, n_frames: int, last_time: Fraction | None
) -> str | None:
    """The message for a truncated or damaged video, or None when decoding went cleanly."""
    expected, index_end = report.header_frames, report.index_end
    size = path.stat().st_size
    truncated_by = []
    if report.demux_error:
        truncated_by.append(f"reading stopped with an error: {report.demux_error}")
    if index_end is not None and index_end > size:
        truncated_by.append(
            f"the file has {size} bytes but its index places frame data up to byte {index_end}"
        )
    if expected and report.packets < expected:
        truncated_by.append(
            f"the header announces {expected} frames, the file holds {report.packets} packets"
        )
    damaged_by = []
    if report.bad_packets:
        damaged_by.append(
            f"{report.bad_packets} packet(s) failed to decode (first error: "
            f"{report.first_packet_error})"
        )
    if report.corrupt_frames:
        damaged_by.append(f"{report.corrupt_frames} frame(s) decoded with errors (concealed)")
    if n_frames == 0:
        why = "; ".join(truncated_by + damaged_by) or "the video stream holds no frames"
        return f"{path}: no frame could be decoded ({why}); obtain an intact copy of the video"
    if not truncated_by and not damaged_by:
        return None
    where = f"after {n_frames} frames at t={float(last_time):.3f}s"
    what = "truncated" if truncated_by else "damaged"
    return (
        f"{path}: {what}: decoding ended {where} ({'; '.join(truncated_by + damaged_by)}); "
        f"the {n_frames} decoded frames were delivered, obtain an intact copy for the rest"
    )


def to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """Convert a decoded frame to an upright, C-contiguous (H, W, 3) uint8 RGB array."""
    # One reformatter for all frames keeps one swscale context (VideoFrame.to_ndarray builds a
    # new one per frame). threads=1: the decoder's threads already occupy the cores.
    # Colour matrix and range come from the frame's own tags (BT.601/709, limited/full).
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    return np.ascontiguousarray(orientation.upright(rgb, orientation.display_transform(frame)))


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_sample_fps(sample_fps: float | None) -> Fraction | None:
    if sample_fps is None:
        return None
    if isinstance(sample_fps, bool) or not isinstance(sample_fps, numbers.Real):
        raise ValueError(f"sample_fps must be a positive number or None, got {sample_fps!r}")
    if not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise ValueError(f"sample_fps must be a positive number or None, got {sample_fps!r}")
    # Through repr: 29.97 means 2997/100, not the nearest binary fraction.
    return sample_fps if isinstance(sample_fps, Fraction) else Fraction(repr(float(sample_fps)))


def iter_frames(
    path: str | os.PathLike, sample_fps: float | None, *, batch_size: int = 16,
    start_frame: int = 0,
) -> Iterator[FrameBatch]:
    """Decode a video into batches of upright RGB frames with exact presentation times.

    Streams: at most ``batch_size`` converted frames (plus the decoder's few reference
    frames) are held at any time, whatever the length of the video.

    Args:
        path: the video file (read only).
        sample_fps: frames per second to keep, or None for every frame. For each tick
            ``k / sample_fps`` (k = 0, 1, 2, ...) the first frame whose time is ``>=`` the tick
            is kept; a frame that is the first for several ticks is kept once. This follows
            the real timestamps, so it is right for variable-frame-rate footage. Frames that
            are not kept are decoded (to keep the numbering) but never converted to RGB.
            Frames timed before the stream start (negative times, rare) are only delivered
            when every frame is read.
        batch_size: frames per batch (the last batch may be shorter).
        start_frame: the first frame index to deliver. The frames before it are decoded
            (their numbering and the sampling stay those of the whole video) but neither
            converted nor delivered: a reader that stopped after frame n - 1 goes on at n.

    Yields:
        :class:`FrameBatch` in presentation order.

    Raises:
        FootageError: the path is missing, unreadable, empty or a directory; the file is not a
            media file or has no video stream (before any batch); no frame decodes. For a
            truncated or damaged file every decodable frame is yielded first, then
            FootageError says after how many frames and at what time decoding ended.
        ValueError: ``sample_fps`` or ``batch_size`` is not positive.
    """
    check_batch_size(batch_size)
    if isinstance(start_frame, bool) or not isinstance(start_frame, int) or start_frame < 0:
        raise ValueError(f"start_frame must be a non-negative integer, got {start_frame!r}")
    fps = check_sample_fps(sample_fps)
    p = checked_path(path)
    return _iter_frames(p, fps, batch_size, start_frame)


def next_tick_after(time: Fraction, fps: Fraction | None, next_tick: int) -> int | None:
    """The sampling rule of :func:`iter_frames`, one frame at a time: None when the frame at
    ``time`` is not kept while tick ``next_tick`` is the next still to be served, otherwise
    the next tick to serve after keeping it. With ``fps`` None every frame is kept."""
    if fps is None:
        return next_tick
    # time >= k / fps  <=>  time * fps >= k, exact in rationals.
    ticks = time * fps
    if ticks < next_tick:
        return None
    return math.floor(ticks) + 1


def _iter_frames(
    path: Path, fps: Fraction | None, batch_size: int, start_frame: int
) -> Iterator[FrameBatch]:
    report = DecodeReport()
    reformatter = VideoReformatter()
    indices: list[int] = []
    times: list[float] = []
    images: list[np.ndarray] = []
    next_tick = 0  # k of the next tick k / fps still to be served
    n_frames = 0
    last_time: Fraction | None = None
    frames = decoded_frames(path, report)
    try:
        for frame_index, time, frame in frames:
            n_frames, last_time = frame_index + 1, time
            after = next_tick_after(time, fps, next_tick)
            if after is None:
                continue
            next_tick = after
            if frame_index < start_frame:
                continue
            indices.append(frame_index)
            times.append(float(time))
            images.append(to_rgb(frame, reformatter))
            if len(images) == batch_size:
                yield frame_batch(indices, times, images)
                indices, times, images = [], [], []
    except DECODER_FAILURES as exc:
        # The frames already delivered stay delivered; the episode ends as if damaged.
        if images:
            yield frame_batch(indices, times, images)
        raise unreadable_error(path, exc) from exc
    finally:
        frames.close()  # also when the caller stops early: the file is closed at once
    if images:
        yield frame_batch(indices, times, images)
    problem = footage_problem(path, report, n_frames, last_time)
    if problem:
        raise FootageError(problem)


def frame_batch(indices: list[int], times: list[float], images: list[np.ndarray]) -> FrameBatch:
    return FrameBatch(
        frame_index=np.asarray(indices, dtype=np.int64),
        time_s=np.asarray(times, dtype=np.float64),
        images=images,
    )


def read_frames(path: str | os.PathLike, frame_indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Return the upright RGB images of the given frame indices (as numbered by iter_frames).

    Decodes from the start up to the largest index, converting only the requested frames, so
    it is meant for a handful of frames (contact sheets), not for random access in a loop.

    Raises:
        FootageError: as :func:`iter_frames`; also when an index lies beyond the last frame
            or beyond the point where a truncated file stops.
        ValueError: an index is negative or not an integer.
    """
    wanted = set()
    for i in frame_indices:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or i < 0:
            raise ValueError(f"frame indices must be non-negative integers, got {i!r}")
        wanted.add(int(i))
    p = checked_path(path)
    if not wanted:
        return {}
    report = DecodeReport()
    reformatter = VideoReformatter()
    found: dict[int, np.ndarray] = {}
    n_frames = 0
    last_time: Fraction | None = None
    last_wanted = max(wanted)
    frames = decoded_frames(p, report)
    try:
        for frame_index, time, frame in frames:
            n_frames, last_time = frame_index + 1, time
            if frame_index in wanted:
                found[frame_index] = to_rgb(frame, reformatter)
            if frame_index == last_wanted:
                break
    except DECODER_FAILURES as exc:
        raise unreadable_error(p, exc) from exc
    finally:
        frames.close()
    missing = sorted(wanted - found.keys())
    if missing:
        problem = footage_problem(p, report, n_frames, last_time)
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise FootageError(
            f"{p}: frames {shown} do not exist: the video has {n_frames} decodable frames "
            f"(indices 0..{n_frames - 1})" + (f"; {problem}" if problem else "")
        )
    return {i: found[i] for i in sorted(found)}
