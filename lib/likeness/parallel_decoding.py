"""Parallel decoding: several single-threaded decoders, each on its own run of closed GOPs,
giving the frames :func:`likeness.footage.iter_frames` gives, bit for bit.

One decoding thread keeps ahead of MTCNN on a CPU, but not of a GPU: on an H200 a vertical
1080x1920 series at 5 fps was bound by its one decoder (six decoded frames per sampled one).
FFmpeg's own frame threads would be faster, but with them what a damaged file yields depends
on thread timing (:func:`likeness.footage.decode_in_one_thread`). So the stream is cut, in
file order, before IDR access units: an IDR empties the decoder's reference buffer, so what
follows it decodes the same in a fresh decoder as in one that read everything before. Each
run goes to its own single-threaded decoder; the runs' frames are put back in order.

The premise is checked, never assumed. The parallel way is taken only while every check
holds; otherwise the single decoder takes over at the first frame not yet delivered
(:attr:`ParallelDecoding.fallback` says why):

- the codec is H.264 or HEVC, and each cut is before a keyframe whose slices are IDR;
- every packet has a presentation time, no two share one, none is marked for discarding;
- every frame of a run comes after every frame of the run before (no timestamp reset);
- each run decodes without an error or a corrupt frame into exactly its packets' times, in
  increasing order;
- there are at least two runs, none longer than :data:`MAX_RUN_PACKETS` packets or holding
  more converted frames than :data:`MAX_RUN_BYTES`.

A damaged, truncated or unusual file is therefore read by the single decoder, which reports
its damage as always. Times, numbering and sampling are the single decoder's
(:func:`likeness.footage.next_tick_after`); which frames to convert to RGB is decided before
decoding, from the packets' times, and only those are converted, in the runs' own threads.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from likeness import containers, footage
from likeness.errors import FootageError

__all__ = ["ParallelDecoding", "decoders_for", "iter_frames"]

# Codecs whose IDR access units are recognised here (NAL unit types, ITU-T H.264 table 7-1
# and H.265 table 7-1): H.264 IDR slice 5, other slices 1-4; HEVC IDR_W_RADL 19 and IDR_N_LP
# 20, other slice types 0-31.
CUTTABLE_CODECS = ("h264", "hevc")
# A run is cut at the first IDR after this many packets: fewer, longer runs cost fewer
# decoder openings (x264 puts an IDR every 250 frames by default).
MIN_RUN_PACKETS = 24
# A run's packets are held until it is complete: a stream with no IDR for this many packets
# (a minute at 30 fps) goes to the single decoder rather than into memory.
MAX_RUN_PACKETS = 1800
# Converted frames wait in memory from their run's decoding until delivered. One run may hold
# this many bytes of them (long GOPs read frame by frame at 1080p exceed it and go to the
# single decoder), all the runs decoded ahead four times as many.
MAX_RUN_BYTES = 512 * 2**20
MAX_AHEAD_BYTES = 4 * MAX_RUN_BYTES


@dataclass
class ParallelDecoding:
    """How a video was decoded, filled in as decoding goes: ``runs`` given to the parallel
    decoders; ``fallback``, why the single decoder took over ("" if it did not), at frame
    ``fallback_frame`` (the first it delivered)."""

    decoders: int
    runs: int = 0
    fallback: str = ""
    fallback_frame: int | None = None


@dataclass
class _Run:
    packets: list[av.Packet]
    pts: list[int]  # its frames' presentation times, increasing
    times: list[Fraction]  # the same, in seconds from the stream's start
    keep: set[int] = field(default_factory=set)  # the pts of the frames to deliver


@dataclass
class _Decoded:
    images: dict[int, np.ndarray]  # pts -> upright RGB, the kept frames
    problem: str = ""


class _NotExact(Exception):
    """The parallel way cannot be shown to give the single decoder's frames."""


def decoders_for(device_type: str, cores: int | None = None) -> int:
    """Decoders for an analysis on ``device_type`` with ``cores`` CPU cores (default: this
    machine's).

    On a GPU: all but two cores (the detecting and the batching threads), at most eight (on
    session 6's 16-core H200 host 8 decoders gave 265 frames/s, 16 gave 296). On a CPU the
    networks use the cores, and decoding a vertical 1080x1920 episode at 5 fps takes about 8%
    of an analysis' CPU time on this project's 2-core machine (24 of ~290 core-ms per sampled
    frame): one decoder keeps up with the networks on up to 12 cores, then one more per 12.
    """
    cores = cores or os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, min(8, cores - 2))
    return max(1, min(8, -(-cores // 12)))


def iter_frames(
    path: str | os.PathLike,
    sample_fps: float | None,
    *,
    batch_size: int = 16,
    decoders: int = 1,
    record: ParallelDecoding | None = None,
) -> Iterator[footage.FrameBatch]:
    """:func:`likeness.footage.iter_frames` with ``decoders`` decoders: the same batches (frame
    numbers, times, pixels) and the same errors. ``record``, when given, is filled in."""
    if isinstance(decoders, bool) or not isinstance(decoders, int) or decoders < 1:
        raise ValueError(f"decoders must be a positive integer, got {decoders!r}")
    if decoders == 1:
        return footage.iter_frames(path, sample_fps, batch_size=batch_size)
    footage.check_batch_size(batch_size)
    fps = footage.check_sample_fps(sample_fps)
    p = containers.checked_path(path)
    if record is None:
        record = ParallelDecoding(decoders)
    record.decoders = decoders
    return _iter_frames(p, fps, batch_size, record)


class _Batcher:
    """Numbers the frames of the runs in order and cuts the kept ones into batches."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.numbered = 0  # frames numbered so far, kept or not
        self.last_time: Fraction | None = None
        self.next_start = 0  # the first frame not yet delivered in a batch
        self.indices: list[int] = []
        self.times: list[float] = []
        self.images: list[np.ndarray] = []

    def add_run(self, run: _Run, decoded: _Decoded) -> Iterator[footage.FrameBatch]:
        for pts, time in zip(run.pts, run.times, strict=True):
            index, self.numbered, self.last_time = self.numbered, self.numbered + 1, time
            if pts not in run.keep:
                continue
            self.indices.append(index)
            self.times.append(float(time))
            self.images.append(decoded.images[pts])
            if len(self.images) == self.batch_size:
                yield self.flush()

    def flush(self) -> footage.FrameBatch:
        batch = footage.frame_batch(self.indices, self.times, self.images)
        self.next_start = int(batch.frame_index[-1]) + 1
        self.indices, self.times, self.images = [], [], []
        return batch


def _iter_frames(
    path: Path, fps: Fraction | None, batch_size: int, record: ParallelDecoding
) -> Iterator[footage.FrameBatch]:
    batcher = _Batcher(batch_size)
    report = footage.DecodeReport()
    pending: deque[tuple[_Run, Future[_Decoded]]] = deque()
    pool = ThreadPoolExecutor(record.decoders, thread_name_prefix="likeness-decode")

    def deliver_oldest() -> Iterator[footage.FrameBatch]:
        run, future = pending.popleft()
        decoded = future.result()
        if decoded.problem:
            raise _NotExact(f"run {record.runs - len(pending)} of the stream: {decoded.problem}")
        yield from batcher.add_run(run, decoded)

    try:
        with containers.open_container(path) as container:
            stream = containers.choose_stream(container, path)[0]
            frame_bytes = _frame_bytes(stream)
            runs = _plan(container, stream, fps, report)
            first = next(runs, None)
            second = next(runs, None)
            if second is None:
                raise _NotExact("the stream is one run (no IDR to cut at)")
            for run in itertools.chain((first, second), runs):  # planned as they go
                record.runs += 1
                pending.append((run, pool.submit(_decode_run, path, stream.index, run)))
                while pending and (
                    len(pending) > record.decoders
                    or frame_bytes * sum(len(r.keep) for r, _ in pending) > MAX_AHEAD_BYTES
                ):
                    yield from deliver_oldest()
        while pending:
            yield from deliver_oldest()
    except _NotExact as exc:
        record.fallback = str(exc)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    if record.fallback:
        # The frames of the partial batch are delivered again, by the single decoder.
        record.fallback_frame = batcher.next_start
        yield from footage.iter_frames(path, fps, batch_size=batch_size,
                                       start_frame=batcher.next_start)
        return
    if batcher.images:
        yield batcher.flush()
    problem = footage.footage_problem(path, report, batcher.numbered, batcher.last_time)
    if problem:
        raise FootageError(problem)


def _plan(
    container: av.container.InputContainer,
    stream: av.video.VideoStream,
    fps: Fraction | None,
    report: footage.DecodeReport,
) -> Iterator[_Run]:
    """The stream's packets cut into runs, each with the times of its frames and which of
    them the sampling keeps. Raises _NotExact where a check fails."""
    codec = stream.codec_context.name
    if codec not in CUTTABLE_CODECS:
        raise _NotExact(f"{codec} streams are not cut into runs here")
    nal_length = _nal_length_size(codec, bytes(stream.codec_context.extradata or b""))
    report.read_header(stream)
    time_base = stream.time_base or Fraction(1, 1)
    origin = stream.start_time
    next_tick = 0
    last_pts: int | None = None  # the latest frame of the runs before
    packets: list[av.Packet] = []

    def close_run() -> _Run:
        nonlocal origin, next_tick, last_pts
        pts = sorted(p.pts for p in packets)
        if len(set(pts)) != len(pts):
            raise _NotExact("two packets share a presentation time")
        if last_pts is not None and pts[0] <= last_pts:
            raise _NotExact("presentation times go back at an IDR")
        if origin is None:  # as the single decoder: the first frame is time 0
            origin = pts[0]
        run = _Run(packets, pts, [(p - origin) * time_base for p in pts])
        for p, time in zip(run.pts, run.times, strict=True):
            after = footage.next_tick_after(time, fps, next_tick)
            if after is not None:
                run.keep.add(p)
                next_tick = after
        if len(run.keep) * _frame_bytes(stream) > MAX_RUN_BYTES:
            raise _NotExact(f"a run of {len(pts)} frames holds more converted frames than "
                            f"{MAX_RUN_BYTES >> 20} MiB")
        last_pts = pts[-1]
        return run

    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            report.packets += 1
            if packet.pts is None:
                raise _NotExact("a packet has no presentation time")
            if packet.is_discard:
                raise _NotExact("packets are marked for discarding (an edit list)")
            if len(packets) >= MAX_RUN_PACKETS:
                raise _NotExact(f"no IDR within {MAX_RUN_PACKETS} packets")
            if (len(packets) >= MIN_RUN_PACKETS and packet.is_keyframe
                    and _is_idr(bytes(packet), codec, nal_length)):
                yield close_run()
                packets = []
            packets.append(packet)
    except footage.DECODER_FAILURES as exc:
        raise _NotExact(f"demuxing stopped with an error ({type(exc).__name__}: {exc})") from None
    if packets:
        yield close_run()


def _frame_bytes(stream: av.video.VideoStream) -> int:
    """Bytes of one frame in RGB."""
    return 3 * (stream.codec_context.width or 0) * (stream.codec_context.height or 0)


def _decode_run(path: Path, stream_index: int, run: _Run) -> _Decoded:
    """One run through a fresh single-threaded decoder, then flushed; its kept frames in
    RGB, or why its frames are not those the single decoder would give."""
    images: dict[int, np.ndarray] = {}
    out: list[int | None] = []
    try:
        with containers.open_container(path) as container:
            stream = container.streams[stream_index]
            footage.decode_in_one_thread(stream)
            reformatter = VideoReformatter()
            for packet in [*run.packets, None]:
                for frame in stream.decode(packet):
                    if frame.is_corrupt:
                        return _Decoded({}, f"a frame (pts {frame.pts}) decoded with errors")
                    out.append(frame.pts)
                    if frame.pts in run.keep:
                        images[frame.pts] = footage.to_rgb(frame, reformatter)
    except (*footage.DECODER_FAILURES, FootageError) as exc:
        return _Decoded({}, f"decoding failed ({type(exc).__name__}: {exc})")
    if out != run.pts:
        return _Decoded({}, f"{len(out)} frames decoded from {len(run.pts)} packets, or "
                            "their times differ from the packets'")
    return _Decoded(images)


def _nal_length_size(codec: str, extradata: bytes) -> int | None:
    """Bytes of each NAL unit's length prefix in the packets (MP4/MKV: avcC, hvcC), or None
    for start codes (Annex B: MPEG-TS, raw streams)."""
    if not extradata or extradata[0] != 1:
        return None
    at = 4 if codec == "h264" else 21
    if len(extradata) <= at:
        return None
    return (extradata[at] & 3) + 1


def _nal_types(data: bytes, nal_length: int | None) -> Iterator[int]:
    """The first byte of each NAL unit of an access unit."""
    if nal_length is None:
        at = data.find(b"\x00\x00\x01")
        while at != -1 and at + 3 < len(data):
            yield data[at + 3]
            at = data.find(b"\x00\x00\x01", at + 3)
        return
    at = 0
    while at + nal_length < len(data):
        size = int.from_bytes(data[at : at + nal_length], "big")
        yield data[at + nal_length]
        at += nal_length + size


def _is_idr(data: bytes, codec: str, nal_length: int | None) -> bool:
    """Whether the access unit's first slice (its picture's type) is IDR."""
    for header in _nal_types(data, nal_length):
        if codec == "h264":
            kind = header & 0x1F
            if 1 <= kind <= 5:
                return kind == 5
        else:
            kind = (header >> 1) & 0x3F
            if kind <= 31:
                return kind in (19, 20)
    return False
