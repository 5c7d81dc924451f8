"""Parallel decoding by runs of closed GOPs: the single decoder's frames, bit for bit, or the
single decoder itself, on real clips and on files made from them that break the premise.

Every test compares with :func:`likeness.footage.iter_frames` (one decoder) and checks, from
the record, which way the frames came: a test of the parallel way that silently fell back
would prove nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading

import av
import numpy as np
import pytest

import badmedia
from likeness import footage, parallel_decoding
from likeness.case import testdata_root as data_root
from likeness.errors import FootageError

DATA = data_root()
HAMILTON = DATA / "face_recognition/examples/short_hamilton_clip.mp4"  # Baseline, 6 IDRs
NGGYUP = DATA / "sber-swap/examples/videos/nggyup.mp4"  # Main, an IDR every 30 frames
DEV05 = DATA / "deepfacelive/series_keanu_dev/footage/dev05.mp4"  # High, B-frames, 2 IDRs
PEER_1080P = DATA / "facenet-pytorch/examples/video.mp4"  # one IDR


def _frames(batches) -> tuple[list[int], list[float], list[str], list[int]]:
    """Indices, times, pixel digests and batch sizes of a whole read."""
    indices, times, digests, sizes = [], [], [], []
    for batch in batches:
        indices += batch.frame_index.tolist()
        times += batch.time_s.tolist()
        digests += [hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
                    for image in batch.images]
        sizes.append(len(batch.images))
    return indices, times, digests, sizes


def _both(path, sample_fps, decoders=2, batch_size=16):
    record = parallel_decoding.ParallelDecoding(decoders)
    parallel = _frames(parallel_decoding.iter_frames(
        path, sample_fps, batch_size=batch_size, decoders=decoders, record=record))
    single = _frames(footage.iter_frames(path, sample_fps, batch_size=batch_size))
    return parallel, single, record


@pytest.mark.parametrize("decoders", [2, 3])
@pytest.mark.parametrize("sample_fps", [None, 5])
@pytest.mark.parametrize("clip", [HAMILTON, NGGYUP, DEV05], ids=lambda p: p.stem)
def test_runs_give_the_single_decoders_frames(clip, sample_fps, decoders):
    parallel, single, record = _both(clip, sample_fps, decoders)
    assert record.fallback == "" and record.runs >= 2, record
    assert parallel == single
    assert len(single[0]) > 40


ENCODERS = {
    # x264 preset medium: 3 B-frames, B-pyramid; x265 preset fast: 4 B-frames.
    "h264": ("libx264", "medium", "x264-params", "keyint=30:min-keyint=30:scenecut=0"),
    "hevc": ("libx265", "fast", "x265-params", "keyint=30:min-keyint=30:scenecut=0"),
}


def _encode(src, dst, codec: str, open_gop: bool, n_frames: int = 150):
    """The first ``n_frames`` of ``src`` encoded with B-frames and a keyframe every 30 frames,
    as an AI drama's encoder would; closed GOPs (IDR keyframes) or open ones."""
    library, preset, key, params = ENCODERS[codec]
    params += f":open-gop={int(open_gop)}"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream(library, rate=vin.average_rate,
                              options={"preset": preset, "crf": "23", key: params})
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        for n, frame in enumerate(inp.decode(vin)):
            if n == n_frames:
                break
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in vout.encode(frame):
                out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)
    with av.open(str(dst)) as container:  # the premise: B-frames reordered, 5 keyframes
        packets = [p for p in container.demux(video=0) if p.size]
    pts = [p.pts for p in packets]
    assert pts != sorted(pts) and sum(p.is_keyframe for p in packets) == 5
    return dst


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_b_frames_across_closed_gops(tmp_path, codec):
    clip = _encode(NGGYUP, tmp_path / "closed.mp4", codec, open_gop=False)
    for sample_fps in (None, 5):
        parallel, single, record = _both(clip, sample_fps)
        assert record.fallback == "" and record.runs == 5, record
        assert parallel == single


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_open_gops_are_not_cut(tmp_path, codec):
    """Open GOPs' keyframes (H.264 I-frames with a recovery point, HEVC CRA pictures) are
    followed by B-frames that reference the GOP before: the container marks them as keyframes
    all the same, but they are no IDR to cut at, so the single decoder reads the whole file."""
    clip = _encode(NGGYUP, tmp_path / "open.mp4", codec, open_gop=True)
    parallel, single, record = _both(clip, None)
    assert record.runs == 0 and record.fallback_frame == 0
    assert "no IDR" in record.fallback
    assert parallel == single


def test_start_codes_of_mpeg_ts_are_cut(tmp_path):
    """MPEG-TS carries H.264 as Annex B (start codes, not length prefixes)."""
    clip = badmedia.mpegts(tmp_path / "hamilton.ts", HAMILTON)
    parallel, single, record = _both(clip, 5)
    assert record.fallback == "" and record.runs >= 2, record
    assert parallel == single


def test_a_phone_video_turned_by_its_display_matrix(tmp_path):
    """The runs' decoders turn frames upright as the single decoder does (a portrait phone
    clip: a 90 degree display matrix on Hamilton's stream, remuxed)."""
    clip = tmp_path / "portrait.mp4"
    with av.open(str(HAMILTON)) as inp, av.open(str(clip), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        vout.set_display_rotation(-90)
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
    parallel, single, record = _both(clip, 5)
    assert record.fallback == "" and record.runs >= 2, record
    assert parallel == single
    first = next(footage.iter_frames(clip, 5))
    assert first.images[0].shape == (640, 360, 3)  # upright: portrait


def test_a_timestamp_reset_goes_to_the_single_decoder(tmp_path):
    clip = badmedia.ts_with_timestamp_reset(tmp_path / "reset.ts", HAMILTON, copies=2)
    parallel, single, record = _both(clip, 5)
    assert "go back" in record.fallback, record
    assert record.runs >= 2 and record.fallback_frame > 0  # the first runs were delivered
    assert parallel == single
    assert single[1] == sorted(single[1])  # the single decoder shifted the second copy


def _index_first(src, dst):
    """``src``'s video remuxed with its index (moov) before the frame data, so that a cut
    copy still opens, as a phone's or a streaming site's MP4 does."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) \
            as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
    return dst


def test_a_truncated_file_gives_the_single_decoders_frames_and_error(tmp_path):
    data = _index_first(NGGYUP, tmp_path / "nggyup.mp4").read_bytes()
    cut = tmp_path / "nggyup_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    record = parallel_decoding.ParallelDecoding(2)
    delivered, errors = {}, {}
    for name, batches in {
        "parallel": parallel_decoding.iter_frames(cut, None, decoders=2, record=record),
        "single": footage.iter_frames(cut, None),
    }.items():
        read = []
        with pytest.raises(FootageError) as caught:
            read.extend(batches)
        delivered[name], errors[name] = _frames(read), str(caught.value)
    assert errors["parallel"] == errors["single"] and "truncated" in errors["single"]
    assert delivered["parallel"][:3] == delivered["single"][:3]
    assert 100 < len(delivered["single"][0]) < 289
    # The runs before the cut came in parallel; the single decoder read the damaged end.
    assert record.runs >= 2 and record.fallback_frame >= 60, record


def test_long_gops_read_frame_by_frame_stay_with_one_decoder():
    """The peer's 1080p clip is one GOP of 105 frames: 650 MiB of RGB frames at once."""
    parallel, single, record = _both(PEER_1080P, None)
    assert "MiB" in record.fallback and record.runs == 0
    assert parallel == single


def test_a_run_too_long_to_hold_goes_to_the_single_decoder(monkeypatch):
    """dev05 has IDRs at frames 0 and 250: with runs capped at 100 packets, no IDR comes in
    time, and the single decoder reads the file from its start."""
    monkeypatch.setattr(parallel_decoding, "MAX_RUN_PACKETS", 100)
    parallel, single, record = _both(DEV05, 5)
    assert record.fallback == "no IDR within 100 packets" and record.fallback_frame == 0
    assert parallel == single


def test_stopping_early_leaves_no_file_or_thread(tmp_path):
    def open_files() -> set[str]:
        return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")}

    before = open_files()
    record = parallel_decoding.ParallelDecoding(3)
    batches = parallel_decoding.iter_frames(NGGYUP, None, batch_size=8, decoders=3,
                                            record=record)
    first = next(batches)
    assert record.runs >= 2 and len(first.images) == 8
    batches.close()
    assert str(NGGYUP) not in open_files() - before
    assert not [t for t in threading.enumerate() if t.name.startswith("likeness-decode")]


def test_decoders_for_cpus_and_gpus():
    assert [parallel_decoding.decoders_for("cpu", n) for n in (1, 2, 12, 13, 64, 512)] == \
        [1, 1, 1, 2, 6, 8]
    assert [parallel_decoding.decoders_for("cuda", n) for n in (2, 4, 16, 64)] == [1, 2, 8, 8]
    with pytest.raises(ValueError, match="decoders"):
        parallel_decoding.iter_frames(HAMILTON, 5, decoders=0)


def test_frames_before_start_frame_are_skipped_keeping_numbers_and_sampling():
    whole = _frames(footage.iter_frames(NGGYUP, 5))
    start = whole[0][10]
    rest = _frames(footage.iter_frames(NGGYUP, 5, start_frame=start))
    assert rest[0] == whole[0][10:] and rest[1] == whole[1][10:] and rest[2] == whole[2][10:]
    assert np.all(np.diff(rest[0]) > 0)
