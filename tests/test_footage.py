"""Footage: probing and decoding real clips, and every kind of bad input made from them.

All inputs are real clips from the shared test data; the broken variants (truncated, rotated,
variable frame rate, audio only, text, empty) are made from them at test time in a temporary
folder, by byte operations or by remuxing/encoding with PyAV. Expected values come from the
clips' known properties or from an independent plain PyAV (single-threaded) or OpenCV decode.
"""

from __future__ import annotations

import hashlib
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from likeness import footage, probing
from likeness.case import testdata_root as data_root
from likeness.errors import FootageError, LikenessError
from likeness.files import prefetch_each

DATA = data_root()
HAMILTON = DATA / "face_recognition/examples/short_hamilton_clip.mp4"  # 640x360, 29.97 fps
HAMILTON_FRAMES = 275
HAMILTON_TIME_BASE = Fraction(1, 11988)
HAMILTON_FRAME_TICKS = 400  # pts step: 400/11988 s = 1/29.97 s
DANCE = DATA / "sber-swap/examples/videos/dance.mp4"  # MP4 with its index (moov) first, 66 frames
DIRTYDANCING = DATA / "sber-swap/examples/videos/dirtydancing.mp4"  # 720p with an MP3 track
PEDESTRIANS = DATA / "facenet-pytorch/examples/video.mp4"  # 1080p, 25 fps, 105 frames
ORIG = DATA / "sber-swap/derived/orig.mp4"  # no audio


def _says(path: Path, what: str) -> str:
    """A pattern for an error message that names ``path`` and then says ``what``."""
    return re.escape(str(path)) + what


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _collect(path: Path, sample_fps: float | None, batch_size: int = 16):
    """Run iter_frames to the end: indices, times, per-batch sizes and image digests."""
    indices, times, sizes, digests, shapes = [], [], [], [], set()
    for batch in footage.iter_frames(path, sample_fps, batch_size=batch_size):
        assert batch.frame_index.dtype == np.int64 and batch.time_s.dtype == np.float64
        assert len(batch.frame_index) == len(batch.time_s) == len(batch.images)
        sizes.append(len(batch.images))
        indices.extend(batch.frame_index.tolist())
        times.extend(batch.time_s.tolist())
        for image in batch.images:
            assert image.dtype == np.uint8 and image.flags.c_contiguous
            shapes.add(image.shape)
            digests.append(_digest(image))
    return np.array(indices), np.array(times), sizes, digests, shapes


def _remux(src: Path, dst: Path, *, video: bool = True, audio: bool = False, rotation=None,
           hflip: bool = False) -> Path:
    """Copy streams of ``src`` into ``dst`` without re-encoding (pixels stay identical)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        chosen = [s for s in inp.streams if (s.type == "video" and video)
                  or (s.type == "audio" and audio)]
        mapping = {s.index: out.add_stream_from_template(s) for s in chosen}
        for s in chosen:
            if s.type == "video" and rotation is not None:
                mapping[s.index].set_display_rotation(rotation, hflip=hflip)
        for packet in inp.demux(chosen):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def hamilton_reference():
    """Times and RGB digests of every Hamilton frame from a plain, single-threaded PyAV decode.

    Independent of likeness.footage: no threads, no shared reformatter, the textbook formula.
    """
    with av.open(str(HAMILTON)) as container:
        stream = container.streams.video[0]
        start = stream.start_time
        times, digests = [], []
        for frame in container.decode(stream):
            times.append(float((frame.pts - start) * stream.time_base))
            digests.append(_digest(frame.to_ndarray(format="rgb24")))
    return np.array(times), digests


@pytest.fixture(scope="module")
def hamilton_every_frame():
    return _collect(HAMILTON, None, batch_size=16)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("footage")


@pytest.fixture(scope="module")
def vfr_clip(media):
    """The first 90 Hamilton frames re-encoded without frames 3, 6, 9, ... at their own pts.

    Returns (path, the original frame numbers kept, in order).
    """
    path = media / "vfr.mp4"
    kept = []
    with av.open(str(HAMILTON)) as inp, av.open(str(path), "w") as out:
        src = inp.streams.video[0]
        dst = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "18"})
        dst.width, dst.height, dst.pix_fmt = src.width, src.height, "yuv420p"
        dst.time_base = dst.codec_context.time_base = src.time_base
        for n, frame in enumerate(inp.decode(src)):
            if n == 90:
                break
            if n > 0 and n % 3 == 0:
                continue
            frame.pict_type = av.video.frame.PictureType.NONE
            kept.append(n)
            for packet in dst.encode(frame):  # frame keeps its original pts
                out.mux(packet)
        for packet in dst.encode(None):
            out.mux(packet)
    with av.open(str(path)) as check:  # the file really carries the irregular timestamps
        s = check.streams.video[0]
        assert [f.pts for f in check.decode(s)] == [10214 + 400 * n for n in kept]
    return path, kept


# --------------------------------------------------------------------------------------------
# Probing


def test_probe_hamilton_clip():
    info = probing.probe_video(HAMILTON)
    assert info["path"] == str(HAMILTON)
    assert "mp4" in info["container"]
    assert info["codec"] == "h264"
    assert (info["width"], info["height"], info["rotation"], info["mirrored"]) == (640, 360, 0,
                                                                                  False)
    assert info["frame_rate"] == pytest.approx(29.97)
    assert info["frame_count"] == HAMILTON_FRAMES
    # The video stream lasts 275 frames of 1/29.97 s (the audio track runs a little longer).
    assert info["duration_s"] == pytest.approx(HAMILTON_FRAMES / 29.97)
    assert info["variable_frame_rate"] is False
    assert info["has_audio"] is True
    assert info["truncated"] is False


def test_probe_1080p_and_silent_clips():
    info = probing.probe_video(PEDESTRIANS)
    assert (info["width"], info["height"], info["frame_count"]) == (1920, 1080, 105)
    assert info["frame_rate"] == 25.0 and info["duration_s"] == pytest.approx(4.2)
    assert info["has_audio"] is True and info["variable_frame_rate"] is False
    assert probing.probe_video(ORIG)["has_audio"] is False


# --------------------------------------------------------------------------------------------
# Decoding


def test_every_frame_matches_plain_single_threaded_decode(hamilton_every_frame,
                                                          hamilton_reference):
    indices, times, _, digests, shapes = hamilton_every_frame
    ref_times, ref_digests = hamilton_reference
    np.testing.assert_array_equal(indices, np.arange(HAMILTON_FRAMES))
    np.testing.assert_array_equal(times, ref_times)  # exact, not approximate
    assert times[0] == 0.0
    assert times[-1] == float(274 * HAMILTON_FRAME_TICKS * HAMILTON_TIME_BASE)
    # Threaded decoding and the shared converter give bit-identical pixels.
    assert digests == ref_digests
    assert shapes == {(360, 640, 3)}


def test_batches_are_bounded(hamilton_every_frame):
    sizes = hamilton_every_frame[2]
    assert sum(sizes) == HAMILTON_FRAMES
    assert max(sizes) == 16 and all(s == 16 for s in sizes[:-1])
    sampled_sizes = _collect(HAMILTON, 5, batch_size=7)[2]
    assert max(sampled_sizes) == 7 and sum(sampled_sizes) == 46


def test_stopping_early_closes_the_file():
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_files()
    frames = footage.iter_frames(HAMILTON, None, batch_size=4)
    assert len(next(frames).images) == 4
    assert open_files() == before + 1  # the video, open while frames stream
    frames.close()
    assert open_files() == before


def test_sampling_at_5_fps_picks_first_frame_at_or_after_each_tick(hamilton_every_frame):
    indices, times, _, digests, _ = _collect(HAMILTON, 5)
    # Frame n is at n/29.97 s; the first frame at or after tick k/5 s is n = ceil(5.994 k) = 6k.
    expected = 6 * np.arange(46)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(
        times, [float(n * HAMILTON_FRAME_TICKS * HAMILTON_TIME_BASE) for n in expected]
    )
    all_digests = hamilton_every_frame[3]
    assert digests == [all_digests[n] for n in expected]


def test_sampling_keeps_a_frame_that_falls_exactly_on_a_tick():
    # 25 fps with pts steps of 512/12800 s: frame 5k is exactly at tick k/5 s and is the pick.
    indices, times = _collect(ORIG, 5)[:2]
    np.testing.assert_array_equal(indices, 5 * np.arange(14))
    np.testing.assert_array_equal(times, [float(Fraction(k, 5)) for k in range(14)])


def test_sampling_faster_than_the_frame_rate_keeps_each_frame_once(hamilton_every_frame):
    indices = _collect(HAMILTON, 60)[0]
    np.testing.assert_array_equal(indices, np.arange(HAMILTON_FRAMES))


def test_read_frames_returns_the_pixels_of_iter_frames(hamilton_every_frame):
    wanted = [274, 0, 137, 6, 137]
    images = footage.read_frames(HAMILTON, wanted)
    assert list(images) == [0, 6, 137, 274]
    all_digests = hamilton_every_frame[3]
    for n, image in images.items():
        assert image.shape == (360, 640, 3)
        assert _digest(image) == all_digests[n]
    with pytest.raises(FootageError, match=_says(HAMILTON, r".*275.*275 decodable frames")):
        footage.read_frames(HAMILTON, [3, 275])


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="sample_fps"):
        footage.iter_frames(HAMILTON, 0)
    with pytest.raises(ValueError, match="batch_size"):
        footage.iter_frames(HAMILTON, 5, batch_size=0)
    with pytest.raises(ValueError, match="frame indices"):
        footage.read_frames(HAMILTON, [-1])


# --------------------------------------------------------------------------------------------
# Bad input


def test_truncated_mp4_yields_what_decodes_then_raises(media):
    """An MP4 with its index first, cut at 60 % of its bytes: the head decodes intact."""
    data = DANCE.read_bytes()
    cut = media / "dance_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    info = probing.probe_video(cut)
    assert info["truncated"] is True and info["frame_count"] == 66  # the header's count

    intact = _collect(DANCE, None)[3]
    # Every decodable frame, by a plain single-threaded decode that skips what fails.
    decodable, failed = 0, 0
    with av.open(str(cut)) as container:
        for packet in container.demux(video=0):
            try:
                decodable += len(packet.decode())
            except av.error.InvalidDataError:
                failed += 1
    assert failed == 1  # the packet cut in half
    indices, digests = [], []
    with pytest.raises(FootageError) as caught:
        for batch in footage.iter_frames(cut, None):
            indices.extend(batch.frame_index.tolist())
            digests.extend(_digest(image) for image in batch.images)
    message = str(caught.value)
    assert str(cut) in message and "truncated" in message
    n = len(indices)
    assert n == decodable == 38, n
    assert f"after {n} frames at t=" in message and "announces 66 frames" in message
    assert "1 packet(s) failed to decode" in message
    assert indices == list(range(n))
    assert digests == intact[:n]  # what decoded is exactly the intact file's head

    # A frame before the cut can still be read; one after it is refused with the reason.
    assert _digest(footage.read_frames(cut, [n - 1])[n - 1]) == intact[n - 1]
    with pytest.raises(FootageError, match="truncated"):
        footage.read_frames(cut, [60])


def test_truncated_mp4_without_its_index_is_refused(media):
    """Most MP4 writers put the index (moov) last: cut, nothing can be located."""
    data = HAMILTON.read_bytes()
    cut = media / "hamilton_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    for call in (probing.probe_video, lambda p: next(footage.iter_frames(p, 5))):
        with pytest.raises(FootageError) as caught:
            call(cut)
        assert str(cut) in str(caught.value)
        assert "truncated" in str(caught.value) and "moov" in str(caught.value)


def test_mp4_with_index_but_no_frame_data(media):
    """Cut just after the index: a valid-looking header, zero decodable frames."""
    data = DANCE.read_bytes()
    cut = media / "dance_header_only.mp4"
    cut.write_bytes(data[:4096])
    for call in (probing.probe_video, lambda p: list(footage.iter_frames(p, None))):
        with pytest.raises(FootageError, match=_says(cut, r": no frame could be decoded")):
            call(cut)


def test_text_file_named_mp4(media):
    path = media / "notes.mp4"
    path.write_text("Episode 1 transcript\nThis is not a video.\n", encoding="utf-8")
    for call in (probing.probe_video, lambda p: next(footage.iter_frames(p, None)),
                 lambda p: footage.read_frames(p, [0])):
        with pytest.raises(FootageError, match=_says(path, r": is not a media file \(a text file")):
            call(path)


def test_audio_only_file_has_no_video_stream(media):
    path = _remux(DIRTYDANCING, media / "audio_only.mp4", video=False, audio=True)
    with av.open(str(path)) as check:  # the file is real media, with sound only
        assert [s.type for s in check.streams] == ["audio"]
    for call in (probing.probe_video, lambda p: next(footage.iter_frames(p, None))):
        with pytest.raises(FootageError, match=_says(path, r": has no video stream.*audio mp3")):
            call(path)


# PyAV's degrees are counter-clockwise (the display matrix's own sense); probe_video reports
# the clockwise turn, as the old 'rotate' tag and OpenCV do (an iPhone portrait clip says 90).
ROTATIONS = [(-90, 90, -1), (90, 270, 1), (180, 180, 2)]  # (PyAV degrees, rotation, np.rot90 k)


@pytest.mark.parametrize(("matrix_degrees", "rotation", "k"), ROTATIONS)
def test_rotated_phone_video_comes_back_upright(media, matrix_degrees, rotation, k):
    path = _remux(HAMILTON, media / f"rotated_{rotation}.mp4", rotation=matrix_degrees)
    with av.open(str(path)) as check:  # the file really carries a display matrix
        assert next(check.decode(video=0)).rotation % 360 == matrix_degrees % 360
    info = probing.probe_video(path)
    assert (info["width"], info["height"]) == (640, 360)  # as stored
    assert (info["rotation"], info["mirrored"]) == (rotation, False)
    upright = footage.read_frames(path, [0, 45])
    stored = footage.read_frames(HAMILTON, [0, 45])
    for n in (0, 45):
        assert upright[n].shape == ((640, 360, 3) if rotation != 180 else (360, 640, 3))
        # A remux keeps the bitstream, so the pixels are exactly the stored ones, turned.
        np.testing.assert_array_equal(upright[n], np.rot90(stored[n], k))
    first = next(footage.iter_frames(path, 5, batch_size=2))
    np.testing.assert_array_equal(first.images[0], upright[0])


def test_rotation_agrees_with_opencv_autorotation(media):
    """OpenCV turns frames upright by its own code: the direction must agree with ours."""
    path = _remux(HAMILTON, media / "iphone_portrait.mp4", rotation=-90)
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    ours = footage.read_frames(path, [0])[0]
    assert ours.shape == bgr.shape
    difference = np.abs(ours.astype(np.int16) - bgr[:, :, ::-1]).mean()
    wrong_way = np.abs(np.rot90(ours, 2).astype(np.int16) - bgr[:, :, ::-1]).mean()
    assert difference < 2.0 < wrong_way


def test_mirrored_display_matrix_follows_ffmpeg(media):
    """FFmpeg's own autorotation for this matrix: transpose=clock_flip (turn clockwise, flip)."""
    path = _remux(HAMILTON, media / "mirrored.mp4", rotation=90, hflip=True)
    info = probing.probe_video(path)
    assert (info["rotation"], info["mirrored"]) == (90, True)
    stored = footage.read_frames(HAMILTON, [0])[0]
    np.testing.assert_array_equal(footage.read_frames(path, [0])[0],
                                  np.flipud(np.rot90(stored, -1)))


def test_variable_frame_rate_times_are_exact_and_sampling_follows_them(vfr_clip):
    path, kept = vfr_clip
    info = probing.probe_video(path)
    assert info["variable_frame_rate"] is True and info["frame_count"] == len(kept) == 61
    assert probing.probe_video(HAMILTON)["variable_frame_rate"] is False

    exact = [float(n * HAMILTON_FRAME_TICKS * HAMILTON_TIME_BASE) for n in kept]
    indices, times = _collect(path, None)[:2]
    np.testing.assert_array_equal(indices, np.arange(61))
    np.testing.assert_array_equal(times, exact)

    # Ticks k/5 s land on original frames 6k, all dropped: the next frame, 6k + 1, is picked.
    indices, times = _collect(path, 5)[:2]
    expected_original = [0] + [6 * k + 1 for k in range(1, 15)]
    np.testing.assert_array_equal(indices, [kept.index(n) for n in expected_original])
    np.testing.assert_array_equal(times, [exact[kept.index(n)] for n in expected_original])


def test_missing_path():
    path = DATA / "no_such_episode.mp4"
    for call in (probing.probe_video, lambda p: footage.iter_frames(p, 5),
                 lambda p: footage.read_frames(p, [0])):
        with pytest.raises(FootageError, match=_says(path, r": no such file")):
            call(path)


def test_directory_instead_of_a_file(media):
    folder = media / "episode.mp4"
    folder.mkdir()
    with pytest.raises(FootageError, match=_says(folder, r": is a directory")):
        probing.probe_video(folder)
    with pytest.raises(FootageError, match=_says(folder, r": is a directory")):
        footage.iter_frames(folder, None)


def test_unreadable_links(media):
    dangling = media / "dangling.mp4"
    dangling.symlink_to(media / "gone.mp4")
    with pytest.raises(FootageError, match=_says(dangling, r": is a broken symbolic link")):
        probing.probe_video(dangling)
    # A link loop cannot be opened even by root.
    loop_a, loop_b = media / "loop_a.mp4", media / "loop_b.mp4"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    loop_error = _says(loop_a, r": cannot be accessed \(Too many levels")
    with pytest.raises(FootageError, match=loop_error):
        footage.iter_frames(loop_a, None)


def test_file_without_read_permission(media):
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop root from reading a file "
                    "(the link-loop test covers an unreadable path)")
    path = media / "locked.mp4"
    path.write_bytes(ORIG.read_bytes()[:1024])
    path.chmod(0)
    try:
        denied = _says(path, r": cannot be read \(Permission denied")
        with pytest.raises(FootageError, match=denied):
            probing.probe_video(path)
    finally:
        path.chmod(0o600)


def test_zero_byte_file(media):
    path = media / "empty.mp4"
    path.write_bytes(b"")
    for call in (probing.probe_video, lambda p: footage.iter_frames(p, None)):
        with pytest.raises(FootageError, match=_says(path, r": is empty \(0 bytes\)")):
            call(path)


def test_footage_error_is_a_likeness_error():
    assert issubclass(FootageError, LikenessError)


def test_decoding_ahead_across_episodes_keeps_each_episodes_frames_and_errors(media):
    """prefetch_each, as analyze decodes a series: a text file, a cut video, a missing file and
    intact ones in one decoding thread give each its own frames (the same pixels as decoding it
    alone) and its own error; dropping a half-read episode stops its decoding and closes its
    file."""
    text = media / "series_notes.mp4"
    text.write_text("not a video\n", encoding="utf-8")
    cut = media / "series_cut.mp4"
    data = DANCE.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    gone = media / "series_gone.mp4"  # never written: iter_frames refuses it when called
    sources = [text, cut, gone, HAMILTON, DANCE]

    def frames(path):  # lazy, as analysis.episode_frames
        yield from footage.iter_frames(path, 5, batch_size=4)

    results = {}
    before = len(os.listdir("/proc/self/fd"))
    decoded = prefetch_each(frames(p) for p in sources)
    for path, batches in zip(sources, decoded, strict=True):
        digests = []
        try:
            for batch in batches:
                digests.extend(_digest(image) for image in batch.images)
                if path == HAMILTON and len(digests) >= 8:
                    break  # leave the rest of this episode undecoded
        except FootageError as exc:
            results[path] = (digests, str(exc))
            continue
        results[path] = (digests, None)
    assert len(os.listdir("/proc/self/fd")) == before  # every video closed
    text_frames, text_error = results[text]
    cut_frames, cut_error = results[cut]
    gone_frames, gone_error = results[gone]
    ham, ham_error = results[HAMILTON]
    dance, dance_error = results[DANCE]
    assert gone_frames == [] and str(gone) in gone_error
    assert text_frames == [] and str(text) in text_error and "not a media file" in text_error
    assert str(cut) in cut_error and "truncated" in cut_error
    assert cut_frames == _collect(DANCE, 5)[3][: len(cut_frames)] and len(cut_frames) > 0
    assert ham_error is None and ham == _collect(HAMILTON, 5)[3][:8]
    assert dance_error is None and dance == _collect(DANCE, 5)[3]

    # Sources made eagerly (iter_frames checks the path when called): a source that cannot be
    # made fails as its own iterator and ends the series, instead of stopping the thread
    # silently and leaving the consumer waiting for ever.
    eager = prefetch_each(footage.iter_frames(p, 5) for p in [gone, DANCE])
    with pytest.raises(FootageError, match=re.escape(str(gone))):
        list(next(eager))
    assert list(eager) == []
