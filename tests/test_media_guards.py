"""Media a user may feed in by mistake or from odd sources: still images listed as footage,
Motion-JPEG with EXIF, several video streams, timestamps that restart, corrupt bytes, huge,
bomb-like and tiny photos, an empty population; and a property over damaged headers of real
clips: the prober returns a description or raises LikenessError, nothing else.

Every file is made by the test in a tmp folder from the shared test data.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import badmedia
from casedata import ELON_REFERENCE, HAMILTON, LFW, SWAP, write_case
from likeness import footage, photo_file, probing
from likeness.errors import FootageError, ImageError, LikenessError

PROFILE = settings(
    max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def digests(path: Path, sample_fps: float | None = None) -> tuple[list[float], list[str]]:
    times, sums = [], []
    for batch in footage.iter_frames(path, sample_fps):
        times += batch.time_s.tolist()
        sums += [hashlib.sha256(img.tobytes()).hexdigest() for img in batch.images]
    return times, sums


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


# --------------------------------------------------------------------------------------------
# Footage


def test_still_image_listed_as_footage_is_refused_by_name(media):
    jpeg = media / "still.mp4"
    jpeg.write_bytes(badmedia.EXIF_JPEG.read_bytes())
    for call in (probing.probe_video, lambda p: list(footage.iter_frames(p, 5))):
        with pytest.raises(FootageError) as caught:
            call(jpeg)
        assert str(caught.value) == (
            f"{jpeg}: is a still image (mjpeg), not a video; list photos under "
            "claimant.references (or the population), and only video files under footage"
        )


def test_motion_jpeg_with_exif_frames_decodes(media):
    avi = badmedia.mjpeg_avi_with_exif(media / "exif.avi", n_frames=12, fps=10)
    info = probing.probe_video(avi)
    assert (info["container"], info["codec"], info["frame_count"]) == ("avi", "mjpeg", 12)
    times, sums = digests(avi)
    assert len(times) == 12 and len(set(sums)) == 1  # the same picture twelve times
    assert times == pytest.approx([i / 10 for i in range(12)])


@pytest.mark.parametrize(("default", "chosen", "why"), [
    (1, 1, "the stream the file marks as default"),
    (0, 0, "the stream the file marks as default"),
    (None, 0, "the stream with most frames"),
])
def test_several_video_streams_choice_is_declared_and_followed(media, default, chosen, why):
    mkv = badmedia.two_video_streams(media / f"two-{default}.mkv", badmedia.ORIG,
                                     badmedia.ELON, default=default)
    info = probing.probe_video(mkv)
    assert info["video_stream"] == chosen
    assert info["stream_choice"] == (
        f"stream #{chosen} of 2 video streams, {why}; not analysed: #{1 - chosen}"
    )
    note = probing.probe_notes(info)
    assert note == [f"{mkv}: has several video streams; analysed {info['stream_choice']}"]
    source = badmedia.ELON if chosen == 1 else badmedia.ORIG
    assert digests(mkv, 5)[1] == digests(source, 5)[1]  # the frames of the declared stream


def test_timestamp_reset_keeps_every_frame_with_increasing_times(media):
    ts = badmedia.ts_with_timestamp_reset(media / "joined.ts")
    one = badmedia.mpegts(media / "one.ts")
    info = probing.probe_video(ts)
    assert info["timestamp_resets"] == 1 and probing.probe_notes(info)
    assert info["frame_count"] == 132 and info["duration_s"] == pytest.approx(5.28, abs=0.05)
    times, sums = digests(ts)
    _, one_sums = digests(one)
    assert len(times) == 132 and sums == one_sums * 2  # every frame of both recordings
    assert np.all(np.diff(times) > 0)
    assert times[66] == pytest.approx(times[65] + 0.04)  # continues one frame later
    sampled, _ = digests(ts, 5)
    assert len(sampled) == 27  # 5.28 s at 5 per second: nothing silently lost
    assert probing.probe_video(one)["timestamp_resets"] == 0


def test_damage_status_does_not_depend_on_thread_timing(media):
    data = bytearray(HAMILTON.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4000, 97):
        data[offset] ^= 0xFF
    corrupt = media / "corrupt.mp4"
    corrupt.write_bytes(bytes(data))
    outcomes = set()
    for _ in range(4):
        frames: list[str] = []
        try:
            for batch in footage.iter_frames(corrupt, None):
                frames += [hashlib.sha256(img.tobytes()).hexdigest() for img in batch.images]
            outcomes.add(("ok", tuple(frames)))
        except FootageError as exc:
            outcomes.add((str(exc), tuple(frames)))
    assert len(outcomes) == 1, [o[0] for o in outcomes]
    message = outcomes.pop()[0]
    assert "damaged" in message and str(corrupt) in message


@pytest.fixture(scope="module")
def fuzz_sources(media) -> dict[str, bytes]:
    """Real clips in four containers, the files the property damages."""
    return {
        "mp4": badmedia.ORIG.read_bytes(),
        "ts": badmedia.mpegts(media / "fuzz.ts").read_bytes(),
        "avi": badmedia.mjpeg_avi_with_exif(media / "fuzz.avi", 4).read_bytes(),
        "mkv": badmedia.two_video_streams(media / "fuzz.mkv", badmedia.ORIG, badmedia.ELON,
                                          default=None).read_bytes(),
    }


@PROFILE
@given(data=st.data())
def test_prober_on_truncated_or_bit_flipped_headers(fuzz_sources, tmp_path, data):
    kind = data.draw(st.sampled_from(sorted(fuzz_sources)))
    raw = bytearray(fuzz_sources[kind])
    head = min(len(raw), 4096)
    flips = data.draw(st.lists(st.tuples(st.integers(0, head - 1), st.integers(1, 255)),
                               max_size=8))
    for position, mask in flips:
        raw[position] ^= mask
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(bytes(raw[:cut]))
    try:
        info = probing.probe_video(path)
    except LikenessError as exc:
        assert str(path) in str(exc)
        return
    assert info["frame_count"] >= 0 and info["width"] >= 0


# --------------------------------------------------------------------------------------------
# Photos


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG declaring width x height whose data holds only its first rows: the shape of a
    decompression bomb, which must be refused from its header, before any decoding."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = zlib.compress((b"\x00" + b"\x80" * width) * 4)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_refused_before_decoding(media):
    bomb = _png_header_only(media / "bomb.png", 30000, 30000)
    with pytest.raises(ImageError) as caught:
        photo_file.read_rgb(bomb)
    assert str(caught.value) == (
        f"{bomb}: 900,000,000 pixels is more than the 300,000,000 a photo may have (a "
        "decompression bomb or an over-large scan); use a smaller copy of the photo"
    )


def test_very_large_photo_is_reduced_while_decoding(media):
    big = media / "big.jpg"
    Image.new("L", (16000, 12000), 128).save(big, quality=60)
    image = photo_file.read_rgb(big)
    assert image.shape == (6144, 8192, 3) and image.dtype == np.uint8
    assert abs(int(image[100, 100, 0]) - 128) <= 2


def test_tiny_photo_is_refused_with_its_size(media):
    tiny = badmedia.resized_photo(ELON_REFERENCE, media / "tiny.png", (10, 10))
    with pytest.raises(ImageError) as caught:
        photo_file.read_rgb(tiny)
    assert str(caught.value) == (
        f"{tiny}: 10x10 pixels is too small to hold a usable face (at least 20 px on each "
        "side); use a larger photo"
    )


def _analyze(case_file: Path, run: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "likeness.cli", "analyze", str(case_file), "--out", str(run),
         "--quiet"], capture_output=True, text=True, timeout=900,
    )
    return done.returncode, done.stdout, done.stderr


def test_bad_episodes_and_tiny_photos_fail_alone(tmp_path):
    """A JPEG listed as footage fails alone; the MJPEG-with-EXIF episode and the good one are
    analysed; a 10x10 reference and a 10x10 population photo are warnings, not crashes."""
    population = tmp_path / "population"
    for name in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez"):
        (population / name).mkdir(parents=True)
        for photo in sorted((LFW / name).iterdir())[:3]:
            os.symlink(photo, population / name / photo.name)
    tiny_pop = badmedia.resized_photo(sorted((LFW / "Tony_Blair").iterdir())[5],
                                      population / "Tony_Blair" / "tiny.jpg", (10, 10))
    tiny_ref = badmedia.resized_photo(ELON_REFERENCE, tmp_path / "tiny_ref.png", (10, 10))
    still = tmp_path / "still.jpg"
    still.write_bytes(badmedia.EXIF_JPEG.read_bytes())
    avi = badmedia.mjpeg_avi_with_exif(tmp_path / "exif.avi", n_frames=10, fps=5)
    case_file = write_case(
        tmp_path / "case", case_id="media", claimant="Elon Musk",
        references=[ELON_REFERENCE, tiny_ref],
        episodes={"good": SWAP / "derived/elon.mp4", "still": still, "exif": avi},
        population=population, analysis={"bootstrap_samples": 100},
    )
    run = tmp_path / "run"
    code, out, err = _analyze(case_file, run)
    assert code == 3, out + err  # finished; one episode failed
    assert "Traceback" not in err
    status = json.loads((run / "episode_status.json").read_text())
    assert status["still"]["status"] == "failed"
    assert status["still"]["message"].startswith(f"{still}: is a still image (mjpeg)")
    assert status["good"]["status"] == "ok" and status["exif"]["status"] == "ok"
    assert status["exif"]["n_frames"] == 10 and status["exif"]["n_faces"] == 10
    refs = pd.read_parquet(run / "references.parquet").set_index("path")
    assert refs.loc[str(tiny_ref), "status"] == "unreadable"
    assert "10x10 pixels is too small" in refs.loc[str(tiny_ref), "warning"]
    pop = pd.read_parquet(run / "population.parquet").set_index("path")
    assert pop.loc[str(tiny_pop), "status"] == "unreadable"
    warnings = pd.read_csv(run / "warnings.csv")
    assert warnings["message"].str.contains(f"{tiny_ref}: 10x10 pixels", regex=False).any()


def test_population_without_a_usable_identity_is_an_error(tmp_path):
    population = tmp_path / "population"
    for name in ("Nobody_One", "Nobody_Two"):
        (population / name).mkdir(parents=True)
        badmedia.resized_photo(ELON_REFERENCE, population / name / "tiny.png", (10, 10))
    case_file = write_case(
        tmp_path / "case", case_id="nopop", claimant="Elon Musk", references=[ELON_REFERENCE],
        episodes={"good": SWAP / "derived/elon.mp4"}, population=population,
    )
    code, out, err = _analyze(case_file, tmp_path / "run")
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (
        f"likeness: error: {case_file}: population.path: {population} holds no identity with "
        "a usable face photo (2 identities, 2 photos, the claimant excluded), so no likelihood "
        "ratio can be calibrated; name a folder with one sub-folder of face photos per person"
    )
