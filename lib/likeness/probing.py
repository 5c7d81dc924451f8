"""Probing: describe a video from its headers, packet timestamps and first frame.

:func:`probe_video` is what intake records of each video (container, codec, size, rotation,
frame rate, duration, frame count, variable frame rate, truncation) together with the video
stream analysed and why (:func:`likeness.containers.choose_stream`: the same choice decoding
makes) and how many times its timestamps restart. :func:`probe_notes` says what of that a user
must be told. Opening and stream choice are :mod:`likeness.containers`'s, decoding
:mod:`likeness.footage`'s.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from likeness import orientation
from likeness.containers import checked_path, choose_stream, open_container
from likeness.errors import FootageError
from likeness.footage import (
    DECODER_FAILURES,
    DecodeReport,
    decoded_frames,
    footage_problem,
    unreadable_error,
)

# Two timestamps this close (in time-base ticks, or 1 % of the typical interval) count as the
# same frame interval: MP4 muxers round 29.97 fps to 33/34 ms steps in a 1/1000 time base.
_VFR_TOLERANCE_TICKS = 1
_VFR_TOLERANCE_RELATIVE = 0.01
# How many packets probe_video feeds the decoder before it gives up on a first frame
# (frame-threaded decoders hold back a few frames; a damaged head may cost a few more).
_PROBE_MAX_PACKETS = 300


def probe_video(path: str | os.PathLike) -> dict:
    """Describe a video (see :func:`_probe_video`); any failure of the decoder on this file is
    a FootageError naming it."""
    p = checked_path(path)
    try:
        return _probe_video(p)
    except DECODER_FAILURES as exc:
        raise unreadable_error(p, exc) from exc


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
    with open_container(p) as container:
        stream, choice = choose_stream(container, p)
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
    report = DecodeReport()
    frames = decoded_frames(p, report, max_packets=_PROBE_MAX_PACKETS)
    try:
        first = next(frames, None)
        if first is None:
            problem = footage_problem(p, report, 0, None)
            if report.packets >= _PROBE_MAX_PACKETS:
                problem += f" (tried the first {report.packets} packets)"
            raise FootageError(problem)
        rotation, mirrored = orientation.rotation_of(orientation.display_transform(first[2]))
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
    and later packets are shifted to follow on (as :func:`decoded_frames` does with frames).
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
