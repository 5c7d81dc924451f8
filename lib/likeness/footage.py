"""Footage: probe videos and decode them into upright RGB frames with exact times.

Built on PyAV (FFmpeg). Decoding streams: :func:`iter_frames` yields small batches of RGB
frames, so memory stays bounded whatever the length of the video.

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
- ``rotation`` (in :func:`probe_video`) is the clockwise turn, 0/90/180/270 degrees, that
  displays the stored picture upright: the convention of the old ``rotate`` tag and of
  OpenCV's ``CAP_PROP_ORIENTATION_META`` (an iPhone portrait video reads 90). ``width`` and
  ``height`` are those of the stored picture, before that turn.

Damaged input never loses work already done: :func:`iter_frames` yields every frame that
decodes and only then raises :class:`~likeness.errors.FootageError` saying where the
footage stops (truncated file) or how many packets failed (damaged file).
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from av.video.reformatter import VideoReformatter

from likeness.errors import FootageError

__all__ = ["FootageError", "FrameBatch", "iter_frames", "probe_video", "read_frames"]

# Two timestamps this close (in time-base ticks, or 1 % of the typical interval) count as the
# same frame interval: MP4 muxers round 29.97 fps to 33/34 ms steps in a 1/1000 time base.
_VFR_TOLERANCE_TICKS = 1
_VFR_TOLERANCE_RELATIVE = 0.01
# How many packets probe_video feeds the decoder before it gives up on a first frame
# (frame-threaded decoders hold back a few frames; a damaged head may cost a few more).
_PROBE_MAX_PACKETS = 300


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
class _DecodeReport:
    """What went wrong while decoding; filled in as decoding goes."""

    header_frames: int = 0
    index_end: int | None = None
    packets: int = 0
    bad_packets: int = 0
    first_packet_error: str = ""
    demux_error: str = ""
    corrupt_frames: int = 0
    timestamp_resets: int = 0


# --------------------------------------------------------------------------------------------
# Opening files


def _checked_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it is a readable, non-empty regular file."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise FootageError(
                f"{p}: is a broken symbolic link (its target does not exist); "
                "point it at the video file or name the file itself"
            ) from None
        raise FootageError(
            f"{p}: no such file; check the path (relative paths are taken from {Path.cwd()})"
        ) from None
    except OSError as exc:
        raise FootageError(
            f"{p}: cannot be accessed ({exc.strerror}); check the path and its permissions"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise FootageError(f"{p}: is a directory, not a video file; name the video file itself")
    if not stat.S_ISREG(info.st_mode):
        raise FootageError(f"{p}: is not a regular file (a device, pipe or socket); copy the "
                           "video to a file and name that")
    if info.st_size == 0:
        raise FootageError(
            f"{p}: is empty (0 bytes); the copy or download failed, copy the evidence again"
        )
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise FootageError(
            f"{p}: cannot be read ({exc.strerror}); give this user read permission"
        ) from None
    return p


def _describe_unopenable(path: Path, exc: Exception) -> str:
    """Say why FFmpeg could not open ``path``, telling a damaged MP4 from a non-media file."""
    with path.open("rb") as f:
        head = f.read(64)
    if head[4:8] == b"ftyp":
        return (
            f"{path}: looks like an MP4/MOV file (it starts with an 'ftyp' box) but FFmpeg "
            f"cannot read it ({exc}); the file is probably truncated (its index, the 'moov' "
            "box, that MP4 writers put at the end, is missing) or damaged; obtain a complete "
            "copy of the evidence"
        )
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    kind = "a text file" if printable == len(head) else "not a video container FFmpeg knows"
    return (
        f"{path}: is not a media file ({kind}; first bytes {head[:16]!r}; FFmpeg: {exc}); "
        "check that the right file was named"
    )


def _open(path: Path) -> av.container.InputContainer:
    try:
        # metadata_errors='replace': a title in a legacy encoding must not stop the analysis.
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise FootageError(_describe_unopenable(path, exc)) from exc


# FFmpeg demuxers that read a single still picture, not a video.
_STILL_IMAGE_DEMUXERS = ("image2", "image2pipe")


def _refuse_still_image(container: av.container.InputContainer, path: Path) -> None:
    name = container.format.name
    if name in _STILL_IMAGE_DEMUXERS or name.endswith("_pipe"):
        codecs = [s.codec_context.name for s in container.streams.video]
        kind = ", ".join(codecs) or name
        raise FootageError(
            f"{path}: is a still image ({kind}), not a video; list photos under "
            "claimant.references (or the population), and only video files under footage"
        )


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    """The video stream that is the footage, chosen the same way for probing and decoding.

    Attached cover pictures are not footage. With several video streams: the one the file
    marks as default when exactly one is so marked, otherwise the one with most frames (then
    the largest picture, then the first). :func:`stream_choice` says which and why.
    """
    return _choose_stream(container, path)[0]


def _choose_stream(
    container: av.container.InputContainer, path: Path
) -> tuple[av.video.VideoStream, str]:
    _refuse_still_image(container, path)
    attached_pic = int(av.stream.Disposition.attached_pic)
    candidates = [s for s in container.streams.video if not int(s.disposition) & attached_pic]
    if not candidates:
        found = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams) or "none"
        raise FootageError(
            f"{path}: has no video stream (streams found: {found}); "
            "an audio-only or data file cannot be analysed for faces, name the video file"
        )
    if len(candidates) == 1:
        return candidates[0], "the only video stream"
    default = int(av.stream.Disposition.default)
    marked = [s for s in candidates if int(s.disposition) & default]
    if len(marked) == 1:
        chosen, why = marked[0], "the stream the file marks as default"
    else:
        def size(s: av.video.VideoStream) -> tuple[int, int, int]:
            area = (s.codec_context.width or 0) * (s.codec_context.height or 0)
            return (s.frames or 0, area, -s.index)

        chosen, why = max(candidates, key=size), "the stream with most frames"
    others = ", ".join(f"#{s.index}" for s in candidates if s is not chosen)
    return chosen, (
        f"stream #{chosen.index} of {len(candidates)} video streams, {why}; "
        f"not analysed: {others}"
    )


# --------------------------------------------------------------------------------------------
# Orientation


def _display_transform(frame: av.VideoFrame) -> tuple[bool, int, int] | None:
    """Read the frame's display matrix as (swap axes, sign of new x, sign of new y).

    FFmpeg's display matrix maps a stored pixel (x, y) to its displayed position
    ``x' = a*x + c*y``, ``y' = b*x + d*y`` (plus a translation), with ``a, b, c, d`` the
    entries 0, 1, 3, 4 in 16.16 fixed point. For turns by quarter turns and mirrors this is a
    signed permutation; other angles are snapped to the nearest quarter turn. None: no matrix.
    The result is what the ffmpeg command line's autorotation does for quarter turns (its
    transpose/hflip/vflip choice reads the same entries); OpenCV agrees for plain turns.
    """
    try:
        side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    except ValueError:
        # PyAV cannot name some kinds of side data (the EXIF that JPEG frames of Motion-JPEG
        # carry: '31 is not a valid Type'); the turn it reads from the matrix itself still
        # holds, only a mirroring would be lost.
        return _TURNS.get(round(-frame.rotation / 90) * 90 % 360)
    if side_data is None:
        return None
    m = np.frombuffer(bytes(side_data), dtype=np.int32)
    a, b, c, d = (int(v) for v in (m[0], m[1], m[3], m[4]))
    if abs(a) + abs(d) >= abs(b) + abs(c):
        transform = (False, 1 if a >= 0 else -1, 1 if d >= 0 else -1)
    else:
        transform = (True, 1 if c >= 0 else -1, 1 if b >= 0 else -1)
    return None if transform == (False, 1, 1) else transform


# The transform that displays a picture turned clockwise by 0/90/180/270 degrees (the
# inverse of _rotation_of for unmirrored pictures).
_TURNS: dict[int, tuple[bool, int, int] | None] = {
    0: None, 90: (True, -1, 1), 180: (False, -1, -1), 270: (True, 1, -1)
}


def _upright(image: np.ndarray, transform: tuple[bool, int, int] | None) -> np.ndarray:
    """Apply a display transform from :func:`_display_transform` to an (H, W, 3) image."""
    if transform is None:
        return image
    swap, sign_x, sign_y = transform
    if swap:
        image = image.transpose(1, 0, 2)
    if sign_x < 0:
        image = image[:, ::-1]
    if sign_y < 0:
        image = image[::-1]
    return image


def _rotation_of(transform: tuple[bool, int, int] | None) -> tuple[int, bool]:
    """(clockwise degrees to display upright, whether the picture is also mirrored).

    A mirrored display is read as: mirror left-right first, then turn clockwise.
    """
    if transform is None:
        return 0, False
    # Where the stored picture's x axis (1, 0) and y axis (0, 1) point on the display.
    swap, sign_x, sign_y = transform
    x_axis = (0, sign_y) if swap else (sign_x, 0)
    y_axis = (sign_x, 0) if swap else (0, sign_y)
    mirrored = x_axis[0] * y_axis[1] - x_axis[1] * y_axis[0] < 0
    # A left-right mirror leaves the y axis alone, so the turn is where the y axis went.
    # Screen coordinates have y downwards, so atan2(y, x) grows clockwise.
    degrees = round(math.degrees(math.atan2(y_axis[1], y_axis[0]))) - 90
    return degrees % 360, mirrored


# --------------------------------------------------------------------------------------------
# Decoding


def _decoded_frames(
    path: Path, report: _DecodeReport, *, max_packets: int | None = None
) -> Iterator[tuple[int, Fraction, av.VideoFrame]]:
    """Yield ``(frame_index, time in seconds as a Fraction, frame)`` for every decoded frame.

    Packets that fail to decode are counted in ``report`` and skipped (as FFmpeg does); a
    demuxing error ends the stream. The caller decides what to raise once the frames are out.
    ``max_packets`` stops reading after that many packets (the decoder is still flushed).
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        report.header_frames = stream.frames
        entries = stream.index_entries
        report.index_end = max((e.pos + e.size for e in entries), default=None)
        # One decoding thread: with frame threads, which frames of damaged data are dropped and
        # whether the decoder reports the damage depend on thread timing (the same file read
        # "damaged" in one run and "ok" in the next), and with slice threads the concealed
        # pixels after an error do. Most H.264 is coded as one slice per frame, so slice
        # threads gained nothing anyway; frame threads decode 1080p about twice as fast, but
        # decoding stays ahead of MTCNN (about 40 frames/s decoded against 3 detected on a
        # CPU), and it overlaps detection (analysis._prefetch).
        stream.thread_count = 1
        stream.thread_type = "SLICE"
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


def _footage_problem(
    path: Path, report: _DecodeReport, n_frames: int, last_time: Fraction | None
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


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """Convert a decoded frame to an upright, C-contiguous (H, W, 3) uint8 RGB array."""
    # One reformatter for all frames keeps one swscale context (VideoFrame.to_ndarray builds a
    # new one per frame). threads=1: the decoder's threads already occupy the cores.
    # Colour matrix and range come from the frame's own tags (BT.601/709, limited/full).
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    return np.ascontiguousarray(_upright(rgb, _display_transform(frame)))


def _check_sample_fps(sample_fps: float | None) -> Fraction | None:
    if sample_fps is None:
        return None
    if isinstance(sample_fps, bool) or not isinstance(sample_fps, numbers.Real):
        raise ValueError(f"sample_fps must be a positive number or None, got {sample_fps!r}")
    if not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise ValueError(f"sample_fps must be a positive number or None, got {sample_fps!r}")
    # Through repr: 29.97 means 2997/100, not the nearest binary fraction.
    return sample_fps if isinstance(sample_fps, Fraction) else Fraction(repr(float(sample_fps)))


def iter_frames(
    path: str | os.PathLike, sample_fps: float | None, *, batch_size: int = 16
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

    Yields:
        :class:`FrameBatch` in presentation order.

    Raises:
        FootageError: the path is missing, unreadable, empty or a directory; the file is not a
            media file or has no video stream (before any batch); no frame decodes. For a
            truncated or damaged file every decodable frame is yielded first, then
            FootageError says after how many frames and at what time decoding ended.
        ValueError: ``sample_fps`` or ``batch_size`` is not positive.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    fps = _check_sample_fps(sample_fps)
    p = _checked_path(path)
    return _iter_frames(p, fps, batch_size)


def _iter_frames(path: Path, fps: Fraction | None, batch_size: int) -> Iterator[FrameBatch]:
    report = _DecodeReport()
    reformatter = VideoReformatter()
    indices: list[int] = []
    times: list[float] = []
    images: list[np.ndarray] = []
    next_tick = 0  # k of the next tick k / fps still to be served
    n_frames = 0
    last_time: Fraction | None = None
    frames = _decoded_frames(path, report)
    try:
        for frame_index, time, frame in frames:
            n_frames, last_time = frame_index + 1, time
            if fps is not None:
                # time >= k / fps  <=>  time * fps >= k, exact in rationals.
                ticks = time * fps
                if ticks < next_tick:
                    continue
                next_tick = math.floor(ticks) + 1
            indices.append(frame_index)
            times.append(float(time))
            images.append(_to_rgb(frame, reformatter))
            if len(images) == batch_size:
                yield _batch(indices, times, images)
                indices, times, images = [], [], []
    except _DECODER_FAILURES as exc:
        # The frames already delivered stay delivered; the episode ends as if damaged.
        if images:
            yield _batch(indices, times, images)
        raise _unreadable(path, exc) from exc
    finally:
        frames.close()  # also when the caller stops early: the file is closed at once
    if images:
        yield _batch(indices, times, images)
    problem = _footage_problem(path, report, n_frames, last_time)
    if problem:
        raise FootageError(problem)


def _batch(indices: list[int], times: list[float], images: list[np.ndarray]) -> FrameBatch:
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
    p = _checked_path(path)
    if not wanted:
        return {}
    report = _DecodeReport()
    reformatter = VideoReformatter()
    found: dict[int, np.ndarray] = {}
    n_frames = 0
    last_time: Fraction | None = None
    last_wanted = max(wanted)
    frames = _decoded_frames(p, report)
    try:
        for frame_index, time, frame in frames:
            n_frames, last_time = frame_index + 1, time
            if frame_index in wanted:
                found[frame_index] = _to_rgb(frame, reformatter)
            if frame_index == last_wanted:
                break
    except _DECODER_FAILURES as exc:
        raise _unreadable(p, exc) from exc
    finally:
        frames.close()
    missing = sorted(wanted - found.keys())
    if missing:
        problem = _footage_problem(p, report, n_frames, last_time)
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise FootageError(
            f"{p}: frames {shown} do not exist: the video has {n_frames} decodable frames "
            f"(indices 0..{n_frames - 1})" + (f"; {problem}" if problem else "")
        )
    return {i: found[i] for i in sorted(found)}


# --------------------------------------------------------------------------------------------
# Probing


# Errors of PyAV/FFmpeg on inputs they do not expect; a file that raises one of these cannot be
# read as footage, and is refused as such (the episode fails alone), never a crash.
_DECODER_FAILURES = (
    av.error.FFmpegError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError,
    KeyError, AttributeError, EOFError, RuntimeError,
)


def _unreadable(path: Path, exc: BaseException) -> FootageError:
    return FootageError(
        f"{path}: cannot be read as footage ({type(exc).__name__}: {exc}); check that it is "
        "an intact video file"
    )


def probe_video(path: str | os.PathLike) -> dict:
    """Describe a video (see :func:`_probe_video`); any failure of the decoder on this file is
    a FootageError naming it."""
    p = _checked_path(path)
    try:
        return _probe_video(p)
    except _DECODER_FAILURES as exc:
        raise _unreadable(p, exc) from exc


def _probe_video(p: Path) -> dict:
    """Describe a video from its headers, its packet timestamps and its first frame.

    Cheap: no frame is decoded except the first (for the display matrix); packets are only
    demuxed when the container has no complete index (MP4/MOV have one).

    Returns:
        dict with ``path`` (str), ``container`` (FFmpeg demuxer name), ``codec``, ``width``
        and ``height`` (stored picture, before rotation), ``rotation`` (clockwise degrees to
        display upright: 0/90/180/270), ``mirrored`` (the display matrix also mirrors),
        ``frame_rate`` (average, frames/s), ``duration_s`` (of the video stream),
        ``frame_count`` (from the header, or counted from the packets when the header lacks
        it), ``variable_frame_rate`` (frame intervals differ by more than a time-base tick
        and 1 %), ``has_audio``, ``truncated`` (True when the index places frame data beyond
        the end of the file, False when an index shows it complete, None when unknown).

    Raises:
        FootageError: missing/unreadable/empty path, not a media file, no video stream, or no
            frame decodes.
    """
    resets = 0
    with _open(p) as container:
        stream, choice = _choose_stream(container, p)
        time_base = stream.time_base or Fraction(1, 1)
        header_frames = stream.frames
        entries = [e for e in stream.index_entries if not e.is_discard]
        if header_frames and len(entries) == header_frames:
            # MP4/MOV: the sample table lists every frame; no need to read the file.
            timestamps = [e.timestamp for e in entries]
            index_end = max(e.pos + e.size for e in entries)
            truncated = index_end > p.stat().st_size
        else:
            timestamps, resets = _packet_timestamps(container, stream)
            truncated = None
        frame_count = header_frames or len(timestamps)
        known = sorted({t for t in timestamps if t is not None})
        deltas = np.diff(np.asarray(known, dtype=np.int64))
        if deltas.size:
            tolerance = max(_VFR_TOLERANCE_TICKS, _VFR_TOLERANCE_RELATIVE * np.median(deltas))
            variable = bool(deltas.max() - deltas.min() > tolerance)
        else:
            variable = False
        if stream.duration and not resets:
            duration = float(stream.duration * time_base)
        elif len(known) > 1:
            step = Fraction(int(np.median(deltas))) if deltas.size else 0
            duration = float((known[-1] - known[0] + step) * time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        if stream.average_rate:
            frame_rate = float(stream.average_rate)
        else:
            frame_rate = frame_count / duration if duration else 0.0
        info = {
            "path": str(p),
            "container": container.format.name,
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frame_rate": frame_rate,
            "duration_s": duration,
            "frame_count": int(frame_count),
            "variable_frame_rate": variable,
            "has_audio": bool(container.streams.audio),
            "truncated": truncated,
            "video_stream": stream.index,
            "stream_choice": choice,
            "timestamp_resets": resets,
        }
    report = _DecodeReport()
    frames = _decoded_frames(p, report, max_packets=_PROBE_MAX_PACKETS)
    try:
        first = next(frames, None)
        if first is None:
            problem = _footage_problem(p, report, 0, None)
            if report.packets >= _PROBE_MAX_PACKETS:
                problem += f" (tried the first {report.packets} packets)"
            raise FootageError(problem)
        rotation, mirrored = _rotation_of(_display_transform(first[2]))
    finally:
        frames.close()
    info["rotation"] = rotation
    info["mirrored"] = mirrored
    order = ("path", "container", "codec", "width", "height", "rotation", "mirrored",
             "frame_rate", "duration_s", "frame_count", "variable_frame_rate", "has_audio",
             "truncated", "video_stream", "stream_choice", "timestamp_resets")
    return {k: info[k] for k in order}


def probe_notes(probe: dict) -> list[str]:
    """What a user must be told about a probed video (several streams, timestamp resets)."""
    notes = []
    if probe.get("stream_choice", "the only video stream") != "the only video stream":
        notes.append(f"{probe['path']}: has several video streams; analysed "
                     f"{probe['stream_choice']}")
    if probe.get("timestamp_resets"):
        notes.append(
            f"{probe['path']}: its timestamps restart {probe['timestamp_resets']} time(s) "
            "(e.g. joined recordings); every frame is kept and times are made continuous "
            "after each restart, so times after it are counted from the start of the file"
        )
    return notes


def _packet_timestamps(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> tuple[list[int | None], int]:
    """Packet timestamps of a file without an index, made increasing across resets.

    Decoding timestamps only grow in an intact stream; a drop means the timestamps restarted,
    and later packets are shifted to follow on (as :func:`_decoded_frames` does with frames).
    """
    timestamps: list[int | None] = []
    resets, shift, last_dts, step = 0, 0, None, 0
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.dts is not None:
                if last_dts is not None and packet.dts + shift < last_dts:
                    resets += 1
                    shift = last_dts + step - packet.dts
                elif last_dts is not None:
                    step = packet.dts + shift - last_dts or step
                last_dts = packet.dts + shift
            ts = packet.pts if packet.pts is not None else packet.dts
            timestamps.append(None if ts is None else ts + shift)
    except av.error.FFmpegError:
        pass  # a damaged tail: count what is there; iter_frames reports the damage
    return timestamps, resets
