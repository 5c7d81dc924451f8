"""The analysis end to end on real footage: faces tables, resumption, broken episodes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from casedata import ELON_REFERENCE, LFW, SWAP, TESTDATA, write_case
from likeness import analysis, face_crop, faces, inference, models
from likeness.case import load_case
from likeness.embeddings import embed_photos
from likeness.errors import CaseError
from likeness.faces_table import FACE_SCHEMA, faces_path, read_faces

MIRANDA = TESTDATA / "face_recognition/examples/lin-manuel-miranda.png"
# Shot boundaries of the Hamilton clip, annotated by eye (and where the mean frame difference
# jumps): 0-0.67 s wide stage shot, 0.67-2.74 s a musician in profile, 2.74-7.04 s Lin-Manuel
# Miranda on stage, 7.04 s to the end the audience (Barack and Michelle Obama among them).
ON_STAGE = (2.74, 7.04)
AUDIENCE_FROM = 7.04


def reference_embedding(path):
    table = embed_photos([path], model=models.load_embedder(), detector=faces.load_detector("cpu"),
                         progress=False)
    assert table["status"][0] == "ok"
    return table["embedding"][0]


def cosines(table: pd.DataFrame, reference: np.ndarray) -> np.ndarray:
    return np.stack(table["embedding"]) @ reference


def test_faces_table_follows_the_contract(elon_case_run):
    _, run_dir = elon_case_run
    table = read_faces(run_dir, "hamilton")
    assert list(table.columns) == FACE_SCHEMA.names
    assert (table["episode"] == "hamilton").all()
    assert table["frame_index"].is_monotonic_increasing
    norms = np.linalg.norm(np.stack(table["embedding"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert table["quality"].between(0, 1).all() and table["prob"].min() >= 0.9
    # Sampling at 5 fps from 29.97 fps footage: each sample is the first frame at or after
    # k / 5 seconds, so it lies within one frame interval after its tick.
    times = np.sort(table["time_s"].unique())
    ticks = np.floor(times * 5 + 1e-9) / 5
    assert np.all((times - ticks >= -1e-9) & (times - ticks < 1 / 29.97 + 1e-9))


def test_hamilton_on_stage_faces_match_miranda_better_than_the_audience(elon_case_run):
    _, run_dir = elon_case_run
    table = read_faces(run_dir, "hamilton")
    score = cosines(table, reference_embedding(MIRANDA))
    t = table["time_s"].to_numpy()
    # On stage, the large face is Miranda's (a small face behind him is someone else).
    stage = (t >= ON_STAGE[0]) & (t < ON_STAGE[1]) & (table["face_px"].to_numpy() > 60)
    audience = t >= AUDIENCE_FROM
    assert stage.sum() >= 15 and audience.sum() >= 20
    assert np.median(score[stage]) > score[audience].max()
    assert score[stage].mean() - score[audience].mean() > 0.4
    # The on-stage faces form one track.
    assert table.loc[stage, "track_id"].nunique() == 1


def test_swap_faces_are_closer_to_the_swapped_identity(elon_case_run):
    _, run_dir = elon_case_run
    elon = reference_embedding(ELON_REFERENCE)
    swapped = cosines(read_faces(run_dir, "elon"), elon)
    original = cosines(read_faces(run_dir, "orig"), elon)
    assert len(swapped) >= 13 and len(original) >= 13  # 2.6 s at 5 fps, one face
    assert np.median(swapped) > original.max()
    assert swapped.mean() - original.mean() > 0.5


@pytest.fixture()
def small_case(tmp_path):
    """Three short real episodes, a small real population, and a fresh cache."""
    population = tmp_path / "population"
    population.mkdir()
    for name in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Gerhard_Schroeder"):
        (population / name).mkdir()
        for photo in sorted((LFW / name).iterdir())[:4]:
            os.symlink(photo, population / name / photo.name)
    episodes = {"ep1": SWAP / "derived/orig.mp4", "ep2": SWAP / "derived/elon.mp4",
                "ep3": SWAP / "derived/mark.mp4"}
    case_file = write_case(tmp_path / "case", case_id="small", claimant="Elon Musk",
                           references=[ELON_REFERENCE], episodes=episodes,
                           population=population, analysis={"sample_fps": None})
    # A fresh cache, so nothing is reused from earlier runs, but with the verified weights.
    weights = models.weights_path(models.DEFAULT_MODEL)
    (tmp_path / "cache/models").mkdir(parents=True)
    shutil.copyfile(weights, tmp_path / "cache/models" / weights.name)
    env = {**os.environ, "LIKENESS_CACHE": str(tmp_path / "cache")}
    return case_file, tmp_path / "run", env


def _analyze(case_file, run_dir, env, **kw):
    cmd = [sys.executable, "-m", "likeness.cli", "analyze", str(case_file), "--out", str(run_dir),
           "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_interrupted_run_resumes_and_a_second_run_reuses(small_case):
    case_file, run_dir, env = small_case
    case = load_case(case_file)
    evidence_before = {p: _sha(p) for _, _, p in case.evidence_paths()}
    process = _analyze(case_file, run_dir, env)
    first = faces_path(run_dir, "ep1")
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # a crash in the middle of the run
    process.wait()
    assert first.exists(), process.stdout.read()
    first_stat = first.stat()
    # Whatever was under way is not left looking complete.
    finished = {p.name for p in (run_dir / "faces").glob("*.parquet")}
    assert "ep3.parquet" not in finished
    assert not (run_dir / "episodes.csv").exists()

    resumed = _analyze(case_file, run_dir, env)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert first.stat().st_mtime_ns == first_stat.st_mtime_ns  # not recomputed
    assert all(faces_path(run_dir, e).exists() for e in ("ep1", "ep2", "ep3"))
    assert not list(run_dir.rglob("*.partial"))
    results = (run_dir / "episodes.csv").read_bytes()

    again = _analyze(case_file, run_dir, env)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert (run_dir / "episodes.csv").read_bytes() == results
    # Every frame was sampled (sample_fps: null): 66 frames per clip.
    assert "ep2          ok             66 frames" in out
    assert {p: _sha(p) for p in evidence_before} == evidence_before  # evidence only read


def test_a_broken_episode_fails_alone(small_case, tmp_path):
    case_file, _, env = small_case
    run_dir = tmp_path / "broken-run"
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file named .mp4\n")
    truncated = tmp_path / "cut.mp4"
    # dance.mp4 has its index at the start, so a cut copy still decodes up to the cut.
    data = (SWAP / "examples/videos/dance.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) * 6 // 10])
    case_file = write_case(
        tmp_path / "case2", case_id="broken", claimant="Elon Musk", references=[ELON_REFERENCE],
        episodes={"good": SWAP / "derived/elon.mp4", "text": text, "cut": truncated},
        population=load_case(case_file).population_root, analysis={"sample_fps": 5},
    )
    process = _analyze(case_file, run_dir, env)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 3, out  # finished, but incomplete
    warnings = pd.read_csv(run_dir / "warnings.csv")
    text_warning = warnings.loc[warnings["source"] == "footage text", "message"].item()
    assert str(text) in text_warning
    status = pd.read_json(run_dir / "episode_status.json").T.set_index("episode")
    assert status.loc["good", "status"] == "ok"
    assert status.loc["text", "status"] == "failed"
    assert status.loc["cut", "status"] == "truncated"
    assert 0 < status.loc["cut", "n_frames"] < 14
    assert len(read_faces(run_dir, "good")) >= 13
    assert not faces_path(run_dir, "text").exists()
    shutil.rmtree(run_dir)


def test_a_run_folder_is_refused_with_another_crop_or_runtime(tmp_path, monkeypatch):
    case = load_case(write_case(tmp_path / "case", case_id="crop", claimant="Elon Musk",
                                references=[ELON_REFERENCE],
                                episodes={"ep1": SWAP / "derived/orig.mp4"}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setenv(inference.RUNTIME_ENV, "openvino")
    analysis._check_run_folder(case, run_dir)  # writes analysis.json
    analysis._check_run_folder(case, run_dir)  # the same computation: accepted
    monkeypatch.setattr(face_crop, "CROP_MARGIN", face_crop.CROP_MARGIN + 18)
    with pytest.raises(CaseError, match=r"made with another detector .*'crop_margin': 14.* vs "
                                        r"now .*'crop_margin': 32.*use a new --out folder"):
        analysis._check_run_folder(case, run_dir)
    monkeypatch.undo()
    monkeypatch.setenv(inference.RUNTIME_ENV, "onnxruntime")
    with pytest.raises(CaseError, match=r"made with another runtime \(openvino vs now onnxrun"):
        analysis._check_run_folder(case, run_dir)
