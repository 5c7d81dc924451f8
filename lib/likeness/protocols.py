"""Validation protocols: the method run end to end on data whose truth is known.

* :func:`validate_lfw`: the identity-disjoint LFW protocol (still photos), for a reference
  count (``likeness validate`` runs the default, 3, and 1 and 5);
* :func:`validate_video`: the video protocol on the face-swap material of the test data
  (the development series, the sber-swap swaps, the Hamilton clip): the LRs of swap and
  non-swap episodes, and hit and miss rates at stated thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from likeness import evidence as ev
from likeness import validation as va
from likeness.files import write_csv_atomic, write_json_atomic


def validate_lfw(
    model_name: str | None = None,
    out_dir: Path | str = "validation",
    *,
    seed: int | None = None,
    n_refs: int = va.LFW_REFERENCE_COUNTS[0],
    top_k: int | None = None,
    method: str = "auto",
    max_per_identity: int | None = None,
    population_root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate the LR method on LFW: what ``likeness validate`` runs for each reference count.

    Embeds LFW (``testdata_root()/lfw/images_deepfunneled`` unless ``population_root`` is
    given; cached by the embeddings module), normalises, calibrates on one identity half and
    validates on the other exactly as a case does (:func:`likeness.calibration.
    calibrate_population`), and writes into ``out_dir``: ``validation.json`` (calibrator,
    comparison, metrics, warnings), ``validation_scores.csv`` and the Tippett, ECE and
    score-distribution plots (PNG and SVG). The default protocol uses
    ``calibration.MIN_REFERENCES`` (3) reference photos per identity: the fewest a case has
    without a warning. Returns the summary with the paths written under ``files``.
    """
    from likeness import embeddings, figures, models
    from likeness import scores as sc
    from likeness.case import ANALYSIS_DEFAULTS, testdata_root

    model_name = model_name or models.DEFAULT_MODEL
    seed = int(ANALYSIS_DEFAULTS["seed"] if seed is None else seed)
    top_k = int(ANALYSIS_DEFAULTS["top_k"] if top_k is None else top_k)
    if max_per_identity is None:
        max_per_identity = int(ANALYSIS_DEFAULTS["max_photos_per_identity"])
    root = Path(population_root) if population_root else (
        testdata_root() / "lfw" / "images_deepfunneled"
    )
    population = embeddings.embed_population(
        root, (), model_name=model_name, max_per_identity=max_per_identity, progress=progress
    )
    result = ev.calibrate_population(
        population, n_refs, top_k, seed, method=method, for_claimant=False
    )
    summary, all_scores = result.summary, result.scores
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    val = all_scores[all_scores["half"] == "validation"]
    files: list[Path] = []
    if result.calibrator is not None and summary["validation"] is not None:
        title = f"LFW validation half, {model_name}, {n_refs} reference(s)"
        files += figures.tippett_plot(val, out / "tippett", title=title)
        files += figures.ece_plot(val, out / "ece", title=title)
        files += figures.score_distributions(
            {"same source (validation)": val.loc[val["same_source"], "score"],
             "different source (validation)": val.loc[~val["same_source"], "score"]},
            out / "score_distributions", title=title,
        )
    scores_csv = out / "validation_scores.csv"
    write_csv_atomic(all_scores, scores_csv)
    comparison_csv = out / "calibrators.csv"
    write_csv_atomic(pd.DataFrame(summary["comparison"]), comparison_csv)
    files += [scores_csv, comparison_csv]
    summary.update(
        # The weights' path differs per machine; the hash identifies them.
        model={k: v for k, v in models.model_record(model_name).items() if k != "weights_path"},
        population_root=str(root),
        max_per_identity=max_per_identity,
        n_photos=len(population),
        n_usable_photos=len(sc.usable_photos(population)),
        protocol={"n_refs": int(n_refs), "top_k": top_k, "seed": seed,
                  "identity_disjoint": True, "method": method},
    )
    summary["files"] = sorted(str(p.relative_to(out)) for p in [*files, out / "validation.json"])
    write_json_atomic(out / "validation.json", summary)
    return summary


# The video protocol's cases: (case id, claimant, reference photos, exclude, truth by episode).
# Paths are relative to the test data folder. The sber-swap clips with Elon Musk and Mark
# Zuckerberg as claimants, the Hamilton clip with Lin-Manuel Miranda (a real appearance, not a
# swap), and the development series of live swaps with its own truth.tsv.
SWAP_CLIPS = {
    "orig": "sber-swap/derived/orig.mp4",
    "elon": "sber-swap/derived/elon.mp4",
    "mark": "sber-swap/derived/mark.mp4",
    "khabenskii": "sber-swap/derived/khabenskii.mp4",
    "dirtydancing": "sber-swap/examples/videos/dirtydancing.mp4",
    "nggyup": "sber-swap/examples/videos/nggyup.mp4",
    "hamilton": "face_recognition/examples/short_hamilton_clip.mp4",
}
VIDEO_CASES = (
    ("swap-elon", "Elon Musk", ["sber-swap/examples/images/elon_musk.jpg"], ["Elon_Musk"],
     {"elon"}),
    ("swap-mark", "Mark Zuckerberg", ["sber-swap/examples/images/mark.jpg"],
     ["Mark_Zuckerberg"], {"mark"}),
    ("hamilton-miranda", "Lin-Manuel Miranda",
     ["face_recognition/examples/lin-manuel-miranda.png"], [], {"hamilton"}),
)
DEV_SERIES = "deepfacelive/series_keanu_dev"
VIDEO_THRESHOLDS = (0.0, 1.0, 2.0)


def _video_case_files(out: Path) -> list[tuple[Path, set[str]]]:
    """Write the protocol's case files under ``out``; return (case file, episodes with the
    claimant) for each."""
    import yaml

    from likeness.case import testdata_root

    root = testdata_root()
    cases = []
    for case_id, name, refs, exclude, truth in VIDEO_CASES:
        data = {
            "case_id": case_id,
            "title": f"Video protocol: {name}",
            "claimant": {"name": name, "references": [str(root / r) for r in refs]},
            "footage": [{"id": k, "path": str(root / v)} for k, v in SWAP_CLIPS.items()],
            "population": {"path": str(root / "lfw/images_deepfunneled"), "exclude": exclude},
            "analysis": {"sample_fps": 5, "sensitivity": False},
        }
        path = out / case_id / "case.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
        cases.append((path, truth))
    dev = root / DEV_SERIES
    truth_table = pd.read_csv(dev / "truth.tsv", sep="\t")
    swaps = set(truth_table.loc[truth_table["claimant_swap"] == "yes", "episode"])
    cases.append((dev / "case.yaml", swaps))
    return cases


def validate_video(
    out_dir: Path | str, *, model_name: str | None = None, progress: bool = False
) -> pd.DataFrame:
    """Run the video protocol; write ``video_episodes.csv``, ``video_rates.csv`` and
    ``video.json`` into ``out_dir``; return the rates table.

    Each case is analysed with the case defaults (sample_fps 5) and the default evidence model
    (``model_name`` overrides the model); the faces are cached by footage hash, so a second
    run only scores. Hit rate at threshold t: the share of episodes that carry the claimant
    whose strongest log10 LR exceeds t; false-hit rate: the share of the others that do.
    """
    from likeness.analysis import analyze_case
    from likeness.case import load_case, override_analysis

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case_file, truth in _video_case_files(out):
        case = load_case(case_file)
        if model_name:
            case = override_analysis(case, {"model": model_name})
        case = override_analysis(case, {"sensitivity": False})
        run_dir = out / case.case_id / "run"
        analyze_case(case, run_dir, progress=progress)
        table = pd.read_csv(run_dir / "episodes.csv")
        for r in table.itertuples():
            rows.append({"case": case.case_id, "episode": r.episode,
                         "claimant_present": r.episode in truth,
                         "max_log10_lr": r.max_log10_lr, "max_log10_lr_lo": r.max_log10_lr_lo,
                         "max_log10_lr_hi": r.max_log10_lr_hi,
                         "lineup_rank": r.best_track_lineup_rank})
    episodes = pd.DataFrame(rows)
    rates = []
    for t in VIDEO_THRESHOLDS:
        present = episodes[episodes["claimant_present"]]
        absent = episodes[~episodes["claimant_present"]]
        rates.append({
            "threshold_log10_lr": t,
            "n_present": len(present), "n_absent": len(absent),
            "hit_rate": float((present["max_log10_lr"] > t).mean()),
            "miss_rate": float((present["max_log10_lr"] <= t).mean()),
            "false_hit_rate": float((absent["max_log10_lr"] > t).mean()),
        })
    rates_df = pd.DataFrame(rates)
    write_csv_atomic(episodes, out / "video_episodes.csv")
    write_csv_atomic(rates_df, out / "video_rates.csv")
    summary: dict[str, Any] = {
        "cases": sorted(episodes["case"].unique().tolist()),
        "thresholds_log10_lr": list(VIDEO_THRESHOLDS),
        "rates": rates_df.to_dict("records"),
        "present_min_log10_lr": float(episodes.loc[episodes["claimant_present"],
                                                   "max_log10_lr"].min()),
        "absent_max_log10_lr": float(episodes.loc[~episodes["claimant_present"],
                                                  "max_log10_lr"].max()),
    }
    write_json_atomic(out / "video.json", summary)
    return rates_df
