"""Per-episode results end to end on the face-swap series (issue 3's acceptance).

The two acceptance cases (Elon Musk, Mark Zuckerberg as claimant) are analysed once per
session by the fixtures in conftest.py; the faces of each clip are computed once and reused.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from casedata import LFW, SWAP_EPISODES, TESTDATA, write_case
from likeness import bootstrap as bs
from likeness import episodes as ep
from likeness import evidence as ev
from likeness import figures
from likeness.case import load_case
from likeness.faces_table import read_episode_faces

CONTRACT_COLUMNS = ["episode", "face_seconds", "claimant_seconds", "max_log10_lr",
                    "median_log10_lr"]
RUN_INPUTS = ("faces", "references.parquet", "population.parquet", "intake.json",
              "episode_status.json", "analysis.json")
RESULT_FILES = ("episodes.csv", "tracks.csv", "calibration.json", "calibration_scores.csv",
                "calibrators.csv", "series.csv", "personas.csv", "sensitivity.csv",
                "sensitivity_summary.csv")


def _assert_strongest(run_dir, episode: str) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "episodes.csv")
    assert list(table["episode"]) == list(SWAP_EPISODES)
    assert set(CONTRACT_COLUMNS) <= set(table.columns)
    target = table.set_index("episode").loc[episode]
    others = table[table["episode"] != episode]
    assert (target["max_log10_lr"] > others["max_log10_lr"]).all(), table.to_string()
    # The intervals do not overlap: the weakest plausible value of the swap beats the
    # strongest plausible value of every other episode.
    assert (target["max_log10_lr_lo"] > others["max_log10_lr_hi"]).all(), table.to_string()
    assert target["claimant_seconds"] > 0
    return table


def test_elon_episode_is_the_strongest_evidence(elon_case_run):
    _case, run_dir = elon_case_run
    _assert_strongest(run_dir, "elon")


def test_mark_episode_is_the_strongest_evidence(mark_case_run):
    _case, run_dir = mark_case_run
    _assert_strongest(run_dir, "mark")


def test_results_are_consistent(elon_case_run):
    _case, run_dir = elon_case_run
    table = pd.read_csv(run_dir / "episodes.csv")
    tracks = pd.read_csv(run_dir / "tracks.csv")
    assert (table["claimant_seconds"] <= table["face_seconds"] + 1e-9).all()
    assert (table["claimant_share_lo"] <= table["claimant_share"] + 1e-9).all()
    assert (table["claimant_share"] <= table["claimant_share_hi"] + 1e-9).all()
    assert (table["max_log10_lr_lo"] <= table["max_log10_lr_hi"]).all()
    assert set(tracks["episode"]) <= set(table["episode"])
    assert ((tracks["lineup_rank"] >= 1) & (tracks["lineup_rank"] <= tracks["lineup_n"])).all()
    assert (tracks["end_s"] >= tracks["start_s"]).all()
    n_per_episode = tracks.groupby("episode")["n_faces"].sum()
    for row in table.itertuples():
        assert n_per_episode.get(row.episode, 0) == row.n_faces
        timeline = pd.read_csv(run_dir / "timeline" / f"{row.episode}.csv")
        assert list(timeline.columns) == ep.TIMELINE_COLUMNS
        assert len(timeline) == row.n_faces
        assert timeline["time_s"].is_monotonic_increasing
        top = tracks[tracks["episode"] == row.episode]["log10_lr"].max()
        assert row.max_log10_lr == pytest.approx(top, abs=1e-6)
    elon = table.set_index("episode").loc["elon"]
    assert elon["best_track_lineup_rank"] == 1  # the claimant tops a lineup of the population
    assert elon["lineup_n"] > 150


def test_results_are_byte_identical_when_recomputed(elon_case_run, tmp_path):
    case, run_dir = elon_case_run
    for name in RUN_INPUTS:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        elif source.exists():
            shutil.copy2(source, tmp_path / name)
    ep.write_episode_results(case, tmp_path)
    for name in RESULT_FILES:
        assert (tmp_path / name).read_bytes() == (run_dir / name).read_bytes(), name
    for path in sorted((run_dir / "timeline").glob("*.csv")):
        assert (tmp_path / "timeline" / path.name).read_bytes() == path.read_bytes()


def test_claimant_who_never_appears_gets_low_honest_numbers(elon_case_run, tmp_path):
    """Joe Biden as claimant of the same footage: no episode supports H1."""
    from likeness.analysis import analyze_case

    _, elon_run = elon_case_run
    case = load_case(write_case(
        tmp_path, case_id="swap-biden", claimant="Joseph Biden",
        references=[TESTDATA / "face_recognition/examples/biden.jpg"],
        episodes=SWAP_EPISODES, exclude=["Joseph_Biden"],
    ))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copytree(elon_run / "faces", run_dir / "faces")  # same footage, same faces
    analyze_case(case, run_dir, progress=False)
    table = pd.read_csv(run_dir / "episodes.csv")
    assert (table["claimant_seconds"] == 0).all(), table.to_string()
    assert (table["max_log10_lr"] < case.analysis.operating_point_log10_lr).all()
    population = pd.read_parquet(run_dir / "population.parquet")
    assert "Joseph_Biden" not in set(population["identity"])


def test_episode_without_faces_gives_zeros(elon_case_run):
    _case, run_dir = elon_case_run
    faces, emb = read_episode_faces(run_dir / "faces" / "elon.parquet")
    faces, emb = faces.iloc[:0], emb[:0]
    references = pd.read_parquet(run_dir / "references.parquet")
    population = pd.read_parquet(run_dir / "population.parquet")
    nothing = ev.Calibration(None, None, pd.DataFrame(), {})
    row, tracks, scored, _ = ep.score_episode(
        faces, emb, references, population, nothing, {"p_band_given_h1": [1, 0, 0, 0]},
        episode="empty", dt=0.2, top_k=3, operating_point=1.0, seed=1, bootstrap_samples=50,
    )
    for col in ("face_seconds", "claimant_seconds", "claimant_share", "max_log10_lr",
                "median_log10_lr", "claimant_share_lo", "claimant_share_hi"):
        assert row[col] == 0.0, col
    assert row["n_faces"] == 0 and "no face" in row["warning"]
    assert tracks.empty and scored.empty


def test_population_never_includes_the_claimant(tmp_path):
    """A claimant who is an LFW identity: the identity and any photo identical to a
    reference are dropped from the population, and the drop is recorded."""
    from likeness.embeddings import embed_photos

    blair = sorted((LFW / "Tony_Blair").glob("*.jpg"))[:3]
    others = sorted((LFW / "Tony_Blair").parent.glob("Colin_Powell/*.jpg"))[:3]
    case = load_case(write_case(
        tmp_path, case_id="blair", claimant="Tony Blair", references=[blair[0]],
        episodes={"elon": SWAP_EPISODES["elon"]}, exclude=[],
    ))
    photos = embed_photos([*blair, *others], selection="centre", progress=False)
    photos.insert(0, "identity", ["Tony_Blair"] * 3 + ["Colin_Powell"] * 3)
    # The same photo filed under another name must go too (matched by its SHA-256).
    photos.loc[3, "sha256"] = photos.loc[0, "sha256"]
    references = photos.iloc[:1].drop(columns="identity")
    kept = ep.clean_population(case, photos, references, tmp_path)
    assert set(kept["identity"]) == {"Colin_Powell"} and len(kept) == 2
    warnings = (tmp_path / "warnings.csv").read_text("utf-8")
    assert "Tony_Blair dropped" in warnings and "identical to a reference photo" in warnings


def test_screen_time_counts_tracks_whole_and_each_moment_once():
    # Two tracks overlapping in time count once; a gap between tracks does not count.
    assert bs.union_seconds(np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 6.0])) == 4.0
    assert bs.union_seconds(np.array([]), np.array([])) == 0.0
    # The per-face count: sampled frames with at least one face above the operating point.
    frames = np.array([0, 0, 5, 10, 10, 10])
    claimant = np.array([True, True, False, False, True, False])
    durations = np.full(6, 0.2)
    assert ep.face_claimant_seconds(frames, claimant, durations) == pytest.approx(0.4)
    assert ep.sampling_interval(5.0, 25.0) == pytest.approx(0.2)
    assert ep.sampling_interval(None, 25.0) == pytest.approx(0.04)
    assert ep.sampling_interval(100.0, 25.0) == pytest.approx(0.04)  # never below a frame
    # The last sample stands only for the time left until the end of the episode.
    np.testing.assert_allclose(ep.sample_durations(np.array([0.0, 2.4, 2.6]), 0.2, 2.64),
                               [0.2, 0.2, 0.04])
    np.testing.assert_allclose(ep.sample_durations(np.array([2.6]), 0.2, None), [0.2])


def test_block_resample_keeps_tracks_whole_and_in_order():
    sizes = np.array([1, 8, 27])
    starts = np.array([0, 1, 9])
    rng = np.random.default_rng(0)
    rows, slot = bs.block_resample(sizes, starts, np.array([2, 0, 2, 1]), rng)
    counts = np.bincount(slot, minlength=4)
    np.testing.assert_array_equal(counts, [27, 1, 27, 8])
    for s, track in enumerate([2, 0, 2, 1]):
        mine = rows[slot == s]
        assert ((mine >= starts[track]) & (mine < starts[track] + sizes[track])).all()
    # Blocks of 3 consecutive faces for the track of 27 faces.
    first = rows[slot == 0] - starts[2]
    assert (np.diff(first.reshape(9, 3), axis=1) == 1).all()


def test_run_figures_are_written_and_reproducible(elon_case_run, tmp_path):
    case, run_dir = elon_case_run
    first = figures.write_run_figures(case, run_dir, tmp_path / "a")
    second = figures.write_run_figures(case, run_dir, tmp_path / "b")
    names = {p.name for p in first}
    for stem in ("score_distributions", "tippett", "ece", "episodes", "contact_sheet",
                 *(f"timeline_{e}" for e in SWAP_EPISODES)):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.stat().st_size > 5000
