"""Issue 7's acceptance on the development series of live face-swaps (real DeepFaceLive clips).

The settings (AS-norm with a 50-identity top cohort, the calibrator chosen by LFW validation,
3 references in the LFW protocol, the persona link threshold) were chosen on LFW calibration
and validation data; this series only checks them.
"""

from __future__ import annotations

import shutil

import pandas as pd

from likeness import episodes as ep


def test_every_swap_is_found_with_strong_evidence_and_nothing_else(dev_case_run):
    _case, run_dir, swaps = dev_case_run
    table = pd.read_csv(run_dir / "episodes.csv").set_index("episode")
    assert swaps, "truth.tsv names the swap episodes"
    for episode, row in table.iterrows():
        if episode in swaps:
            assert row["max_log10_lr"] >= 2.0, table.to_string()
            assert row["max_log10_lr_lo"] >= 1.0, table.to_string()
            assert row["best_track_lineup_rank"] == 1
            assert row["lineup_log10_lr"] > 2.0  # rank 1 of 172
            assert row["claimant_share"] >= 0.5  # the swapped face is on screen most of it
        else:
            assert row["max_log10_lr"] <= 0.0, table.to_string()
            assert row["claimant_seconds"] == 0


def test_tracks_carry_intervals_raw_scores_and_screen_time(dev_case_run):
    _case, run_dir, swaps = dev_case_run
    tracks = pd.read_csv(run_dir / "tracks.csv", keep_default_na=False, na_values=[""])
    assert list(tracks.columns) == ep.TRACK_COLUMNS
    assert (tracks["log10_lr_lo"] <= tracks["log10_lr"] + 1e-9).all()
    assert (tracks["log10_lr"] <= tracks["log10_lr_hi"] + 1e-9).all()
    # A track above the screen-time parameter counts for its whole span, others for none.
    above = tracks["log10_lr"] > 1.0
    span = tracks["end_s"] - tracks["start_s"]
    assert (tracks.loc[above, "claimant_seconds"] - span[above]).abs().max() < 1e-6
    assert (tracks.loc[~above, "claimant_seconds"] == 0).all()
    # Raw cosine scores of the swaps sit in the gap below genuine stills, yet normalised
    # they stand far above every other track.
    swap_tracks = tracks[tracks["episode"].isin(swaps) & above]
    assert swap_tracks["raw_score"].max() < 0.7
    assert swap_tracks["score"].min() > tracks.loc[~above, "score"].max()
    series = pd.read_csv(run_dir / "series.csv").iloc[0]
    episodes = pd.read_csv(run_dir / "episodes.csv")
    assert series["claimant_seconds"] == round(episodes["claimant_seconds"].sum(), 6)
    assert series["n_episodes"] == len(episodes)


def test_the_swapped_persona_is_linked_across_episodes(dev_case_run):
    """The same Keanu look-alike model, worn by three performers, is one persona."""
    _case, run_dir, swaps = dev_case_run
    episodes = pd.read_csv(run_dir / "episodes.csv", keep_default_na=False)
    personas = set(episodes.loc[episodes["episode"].isin(swaps), "best_track_persona"])
    assert len(personas) == 1 and personas != {""}
    persona = personas.pop()
    others = episodes.loc[~episodes["episode"].isin(swaps), "best_track_persona"]
    assert persona not in set(others)
    linked = pd.read_csv(run_dir / "personas.csv")
    assert set(linked.loc[linked["persona"] == persona, "episode"]) == swaps


def test_sensitivity_table_shows_every_factor(dev_case_run):
    case, run_dir, swaps = dev_case_run
    table = pd.read_csv(run_dir / "sensitivity.csv")
    assert {"reference", "calibrator", "population", "model"} <= set(table["factor"])
    n_refs = 11  # one of the 12 LFW photos of Keanu Reeves is ambiguous (two faces)
    refs = table[(table["factor"] == "reference") & (table["episode"] == "dev02")]
    assert len(refs) == n_refs + 1  # all, and each one left out
    summary = pd.read_csv(run_dir / "sensitivity_summary.csv")
    assert set(summary["episode"]) == {e.id for e in case.episodes}
    # On this series no single reference, calibrator or population half turns a swap
    # episode into evidence for H2.
    swap_rows = table[table["episode"].isin(swaps)]
    assert (swap_rows["max_log10_lr"] > 1.0).all(), swap_rows.to_string()


def test_dev_series_tables_are_byte_identical_when_recomputed(dev_case_run, tmp_path):
    case, run_dir, _swaps = dev_case_run
    for name in ("faces", "references.parquet", "population.parquet", "intake.json",
                 "episode_status.json", "analysis.json"):
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy2(source, tmp_path / name)
    ep.write_episode_results(case, tmp_path)
    for name in ("episodes.csv", "tracks.csv", "personas.csv", "series.csv",
                 "sensitivity.csv", "calibrators.csv", "calibration.json"):
        assert (tmp_path / name).read_bytes() == (run_dir / name).read_bytes(), name
