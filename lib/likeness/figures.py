"""Figures of scores, likelihood ratios and per-episode results (matplotlib, PNG and SVG).

Every function takes tables and an output *stem* (a path without suffix), writes
``stem.png`` (200 dpi) and ``stem.svg``, and returns the written paths. Figures are made for
print: fonts of at least 9 pt, labelled axes with units, the Okabe-Ito colour-blind-safe
palette, and line styles / markers that still tell series apart in black and white.

They are byte-reproducible: the Agg backend, a fixed ``svg.hashsalt``, no creation date or
software version in the files' metadata, and inputs sorted before plotting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from lir.data.models import LLRData
from lir.plotting.expected_calibration_error import plot_ece

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
             "#000000"]
H1_COLOUR = OKABE_ITO[0]  # blue: same source / claimant
H2_COLOUR = OKABE_ITO[1]  # vermilion: different source / population
RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "svg.hashsalt": "likeness", "svg.fonttype": "path", "path.simplify": False,
    "figure.dpi": 100, "savefig.dpi": 200, "axes.grid": True, "grid.linestyle": ":",
    "grid.alpha": 0.6,
}
PNG_METADATA = {"Software": None}
# Groups with fewer values than this are drawn as ticks, not as a density.
SMALL_GROUP = 10
SVG_METADATA = {"Date": None, "Creator": None}
# Where the title of an image panel (axis off) sits: top edge of the axes, as matplotlib would
# put it. Given explicitly, matplotlib skips placing it itself, which measures every panel's
# tick labels on every draw: a quarter of the time of the stills (20.9 -> 16.0 s), for the same
# bytes (the contact sheet and the stills were byte-identical either way).
TITLE_Y = 1.0


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The rc settings of every figure (fonts, palette, reproducible SVG ids)."""
    with matplotlib.rc_context(RC):
        yield


def save(fig: plt.Figure, stem: Path | str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` without dates or versions; close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    try:
        fig.savefig(png, metadata=PNG_METADATA, bbox_inches="tight")
        fig.savefig(svg, metadata=SVG_METADATA, bbox_inches="tight")
    finally:
        plt.close(fig)
    return [png, svg]


def _llr_data(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    df = scores.dropna(subset=["log10_lr"]).sort_values(["same_source", "log10_lr"], kind="stable")
    return df["log10_lr"].to_numpy(float), df["same_source"].to_numpy(bool).astype(int)


def tippett_plot(scores: pd.DataFrame, stem: Path | str, *, title: str = "") -> list[Path]:
    """Tippett plot: for each log10 LR x, the share of LRs >= x under H1 and under H2.

    ``scores`` has ``log10_lr`` and ``same_source``. The rates of misleading evidence are the
    H1 curve's shortfall from 100% and the H2 curve's height at log10 LR = 0.
    """
    llr, y = _llr_data(scores)
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for label, colour, ls, values in (
            (f"same source, H1 true (n = {int(y.sum())})", H1_COLOUR, "-", llr[y == 1]),
            (f"different source, H2 true (n = {int((1 - y).sum())})", H2_COLOUR, "--",
             llr[y == 0]),
        ):
            x = np.sort(values)
            share = 100.0 * (1.0 - np.arange(len(x)) / len(x))  # share >= x[i]
            ax.step(x, share, where="post", color=colour, linestyle=ls, label=label)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("log$_{10}$ likelihood ratio")
        ax.set_ylabel("LRs at or above (%)")
        ax.set_ylim(0, 102)
        ax.legend(loc="lower left")
        ax.set_title(title or "Tippett plot")
        return save(fig, stem)


def ece_plot(scores: pd.DataFrame, stem: Path | str, *, title: str = "") -> list[Path]:
    """Empirical cross-entropy plot (Ramos 2007) drawn by lir: the LRs, the same LRs after
    PAV (the best calibration of their discrimination) and a non-informative system."""
    llr, y = _llr_data(scores)
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        plot_ece(LLRData(features=llr, labels=y), ax=ax)
        for line in ax.get_lines():
            # Colour and line style both tell the curves apart (readable in black and white).
            line.set_color({"reference": "black", "LRs": H1_COLOUR}.get(
                line.get_label(), H2_COLOUR))
            line.set_linestyle({"reference": ":", "LRs": "-"}.get(line.get_label(), "--"))
            line.set_linewidth(1.6)
        ax.legend(["non-informative (LR = 1)", "likeness LRs", "after PAV (Cllr$_{min}$)"],
                  loc="upper right")
        ax.set_xlabel("prior log$_{10}$ odds of H1")
        ax.set_ylabel("empirical cross-entropy (bits)")
        ax.set_title(title or "Empirical cross-entropy")
        return save(fig, stem)


def score_distributions(
    groups: Mapping[str, pd.Series | np.ndarray], stem: Path | str, *, title: str = ""
) -> list[Path]:
    """Density histograms (outlines) of score groups on one axis, e.g. same-source and
    different-source population scores, the claimant's references among themselves, the
    questioned faces. Groups are drawn in the given order, each with its count."""
    with style():
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
        bins = np.linspace(-0.4, 1.0, 57)
        styles = ["-", "--", "-.", ":"]
        for i, (label, values) in enumerate(groups.items()):
            v = np.asarray(values, dtype=float)
            v = v[np.isfinite(v)]
            if not len(v):
                continue
            if len(v) < SMALL_GROUP:
                # A handful of values (e.g. two reference photos) as a rug of ticks: a
                # histogram of them would be spikes that flatten everything else.
                ax.plot(v, np.zeros_like(v), linestyle="none", marker="|", markersize=28,
                        markeredgewidth=2.0, color=OKABE_ITO[i % len(OKABE_ITO)],
                        label=f"{label} (n = {len(v)}, ticks)", clip_on=False)
                continue
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                    linewidth=1.6, linestyle=styles[i % len(styles)],
                    color=OKABE_ITO[i % len(OKABE_ITO)], label=f"{label} (n = {len(v)})")
        ax.set_xlabel("score (mean of the top-k cosine similarities)")
        ax.set_ylabel("density (per unit score)")
        ax.legend(loc="upper left")
        ax.set_title(title or "Score distributions")
        return save(fig, stem)


def _at_bounds(values: np.ndarray, bounds: tuple[float, float] | None) -> tuple[np.ndarray, ...]:
    """Masks of the values at the lower and at the upper bound of the calibration."""
    values = np.asarray(values, dtype=float)
    if bounds is None:
        none = np.zeros(len(values), dtype=bool)
        return none, none
    lo, hi = bounds
    return np.isclose(values, lo), np.isclose(values, hi)


# ENFSI (2015) band boundaries drawn behind log10 LR axes: LR 1, 10, 100, 1,000 (and 1/10...).
BAND_LINES = {0.0: "LR 1", 1.0: "LR 10", 2.0: "LR 100", 3.0: "LR 1,000", -1.0: "LR 1/10",
              -2.0: "LR 1/100"}


def episode_recognizability(
    episodes: pd.DataFrame, stem: Path | str, *, operating_point: float,
    bounds: tuple[float, float] | None = None, title: str = "",
) -> list[Path]:
    """Per episode (broadcast order): the strongest evidence (the log10 LR of its strongest
    track) and the claimant's share of face screen time, each with its 95% bootstrap interval.
    A value at a bound of the calibration is drawn as a bound (a triangle pointing past it:
    "at least" / "at most"), not as an ordinary point; the LR axis carries the band lines of
    the verbal scale instead of any threshold."""
    ep = episodes.reset_index(drop=True)
    x = np.arange(len(ep))
    with style():
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6.0, 0.8 * len(ep) + 2), 6.4),
                                       sharex=True)
        for ax, col, label in (
            (ax1, "max_log10_lr", "strongest evidence,\nlog$_{10}$ LR of the strongest track"),
            (ax2, "claimant_share", "claimant's screen time,\nshare of face time (%)"),
        ):
            scale = 100.0 if col == "claimant_share" else 1.0
            mid = ep[col].to_numpy(float) * scale
            lo = ep[f"{col}_lo"].to_numpy(float) * scale
            hi = ep[f"{col}_hi"].to_numpy(float) * scale
            err = np.vstack([np.clip(mid - lo, 0, None), np.clip(hi - mid, 0, None)])
            low, high = _at_bounds(mid, bounds) if col == "max_log10_lr" else _at_bounds(mid, None)
            plain = ~(low | high)
            ax.errorbar(x, mid, yerr=err, fmt="none", ecolor="black", capsize=4)
            ax.plot(x[plain], mid[plain], "o", color=H1_COLOUR, markeredgecolor="black",
                    markersize=7, label="estimate and 95% interval", linestyle="none")
            if high.any():
                ax.plot(x[high], mid[high], "^", color="white", markeredgecolor="black",
                        markersize=10, markeredgewidth=1.6, linestyle="none",
                        label="at the highest reportable LR (at least this)")
            if low.any():
                ax.plot(x[low], mid[low], "v", color="white", markeredgecolor="black",
                        markersize=10, markeredgewidth=1.6, linestyle="none",
                        label="at the lowest reportable LR (at most this)")
            ax.set_ylabel(label)
        ymin, ymax = ax1.get_ylim()
        for level, name in BAND_LINES.items():
            if ymin <= level <= ymax:
                ax1.axhline(level, color="black" if level == 0 else "grey",
                            linewidth=0.9 if level == 0 else 0.7,
                            linestyle="-" if level == 0 else (0, (4, 3)))
                ax1.text(1.005, level, name, transform=ax1.get_yaxis_transform(), fontsize=8,
                         va="center", ha="left")
        ax1.legend(loc="best")
        ax2.set_ylim(-2, 102)
        ax2.set_title(f"screen time counts faces above the screen-time operating point "
                      f"(log$_{{10}}$ LR {operating_point:+g})", fontsize=9)
        ax2.set_xticks(x, ep["episode"].astype(str), rotation=30, ha="right")
        ax2.set_xlabel("episode (broadcast order)")
        fig.suptitle(title or "The claimant per episode: strongest evidence and screen time")
        return save(fig, stem)


def episode_timeline(
    timeline: pd.DataFrame, stem: Path | str, *, operating_point: float,
    bounds: tuple[float, float] | None = None, title: str = "",
) -> list[Path]:
    """log10 LR of every face over the episode's time, one marker style per track, with the
    operating point (and the ELUB bounds, when given) as horizontal lines."""
    tl = timeline.sort_values(["track_id", "time_s"], kind="stable")
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        tracks = tl["track_id"].unique()
        for i, track in enumerate(tracks):
            t = tl[tl["track_id"] == track]
            ax.plot(t["time_s"], t["log10_lr"], marker=markers[i % len(markers)], markersize=3.5,
                    linewidth=0.9, color=OKABE_ITO[i % len(OKABE_ITO)],
                    label=f"track {track}" if i < 8 else None)
        ax.axhline(operating_point, color="black", linestyle="--",
                   label=f"screen-time operating point ({operating_point:+g})")
        if bounds is not None:
            for b in bounds:
                ax.axhline(b, color="grey", linestyle=":", linewidth=1.0)
            low, high = _at_bounds(tl["log10_lr"].to_numpy(float), bounds)
            for mask, marker, text in ((high, "^", "at the highest reportable LR"),
                                       (low, "v", "at the lowest reportable LR")):
                if mask.any():
                    ax.plot(tl["time_s"].to_numpy()[mask], tl["log10_lr"].to_numpy()[mask],
                            marker, color="white", markeredgecolor="black", markersize=6,
                            linestyle="none", label=text)
        if not len(tl):
            ax.text(0.5, 0.5, "no face in this episode", transform=ax.transAxes, ha="center")
        ax.set_xlabel("time in the episode (s)")
        ax.set_ylabel("log$_{10}$ LR of the face")
        if len(tracks):
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set_title(title or "Timeline")
        return save(fig, stem)


def crop_box(image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.25):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    x1, x2 = int(max(0, x1 - margin * w)), int(min(image.shape[1], x2 + margin * w))
    y1, y2 = int(max(0, y1 - margin * h)), int(min(image.shape[0], y2 + margin * h))
    return image[y1:y2, x1:x2]


def timestamp_text(seconds: float) -> str:
    minutes, sec = divmod(float(seconds), 60.0)
    return f"{int(minutes):02d}:{sec:04.1f}"


def contact_sheet(
    faces: pd.DataFrame,
    references: pd.DataFrame,
    footage_paths: Mapping[str, Path],
    stem: Path | str,
    *,
    n: int = 12,
    title: str = "",
) -> list[Path]:
    """The strongest-matching faces, with episode and timestamp, beside the reference photos.

    ``faces`` is ``face_scores.parquet`` (episode, frame_index, time_s, box, log10_lr, score,
    track_id); one face per track (its highest-scoring one) is shown, strongest first, at most
    ``n``. ``references`` is ``references.parquet`` (path, box of the face). Frames are read
    with :func:`likeness.footage.read_frames` (evidence is only read).
    """
    from likeness.footage import read_frames
    from likeness.photo_file import read_rgb

    best = (faces.dropna(subset=["score"])
            .sort_values(["score", "episode", "frame_index"], ascending=[False, True, True],
                         kind="stable")
            .drop_duplicates(["episode", "track_id"]).head(n))
    best = best.sort_values(["log10_lr", "score"], ascending=False, kind="stable")
    crops: list[tuple[np.ndarray, str]] = []
    for episode, group in best.groupby("episode", sort=True):
        frames = read_frames(footage_paths[episode], sorted(group["frame_index"].astype(int)))
        for _, r in group.iterrows():
            img = frames[int(r["frame_index"])]
            box = (r["box_x1"], r["box_y1"], r["box_x2"], r["box_y2"])
            crops.append((crop_box(img, box), r.name))
    crop_of = {name: img for img, name in crops}
    refs = references[references["status"].eq("ok")].sort_values("path", kind="stable")
    ref_imgs = []
    for _, r in refs.head(4).iterrows():
        img = read_rgb(Path(r["path"]))
        ref_imgs.append((crop_box(img, (r["box_x1"], r["box_y1"], r["box_x2"], r["box_y2"])),
                         Path(r["path"]).name))
    cols = 4
    rows = max(1, int(np.ceil(len(best) / cols)), len(ref_imgs))
    with style():
        height = 2.9 * rows + 0.5
        fig = plt.figure(figsize=(2.3 * (cols + 1), height))
        # Room at the top for the three-line titles of the first row, then the suptitle.
        grid = fig.add_gridspec(rows, cols + 1, wspace=0.25, hspace=0.55, top=1 - 0.85 / height)
        for i, (img, name) in enumerate(ref_imgs):
            ax = fig.add_subplot(grid[i, 0])
            ax.imshow(img)
            ax.set_title(f"reference\n{name}", fontsize=9, y=TITLE_Y)
            ax.axis("off")
        for j, (idx, r) in enumerate(best.iterrows()):
            ax = fig.add_subplot(grid[j // cols, 1 + j % cols])
            ax.imshow(crop_of[idx])
            ax.set_title(f"{r['episode']}, {timestamp_text(r['time_s'])}\n"
                         f"face log$_{{10}}$ LR {r['log10_lr']:.2f}\nscore {r['score']:.2f}",
                         fontsize=9, y=TITLE_Y)
            ax.axis("off")
        if not len(best):
            fig.text(0.6, 0.5, "no face in the footage", ha="center")
        fig.suptitle(title or "Strongest-matching faces (one per track; time mm:ss.s) "
                     "beside the reference photos", y=1 - 0.1 / height)
        return save(fig, stem)


def reference_self_scores(references: pd.DataFrame, top_k: int) -> np.ndarray:
    """Each usable reference photo scored against the other references (the top-k rule): how
    alike the claimant's own photos are; empty with fewer than two references."""
    from likeness import scores as sc

    emb = sc.embedding_matrix(sc.usable_photos(references)["embedding"])
    if len(emb) < 2:
        return np.zeros(0)
    sims = sc.cosine_similarity(emb, emb)
    others = sims[~np.eye(len(emb), dtype=bool)].reshape(len(emb), len(emb) - 1)
    return sc.top_k_mean(others, top_k)


def write_run_figures(case, run_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """All figures of a run folder after ``likeness analyze``, into ``out_dir``
    (default ``run_dir/figures``): score distributions, Tippett and ECE plots of the
    validation half, recognizability per episode, one timeline per episode, contact sheet."""
    import json

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "figures"
    params = case.analysis
    written: list[Path] = []
    cal_scores = pd.read_csv(run_dir / "calibration_scores.csv")
    summary = json.loads((run_dir / "calibration.json").read_text("utf-8"))
    faces = pd.read_parquet(run_dir / "face_scores.parquet")
    references = pd.read_parquet(run_dir / "references.parquet")
    episodes = pd.read_csv(run_dir / "episodes.csv")
    val = cal_scores[cal_scores["half"] == "validation"]
    groups = {
        "same-source scores, validation half": val.loc[val["same_source"], "score"],
        "different-source scores, validation half": val.loc[~val["same_source"], "score"],
        "claimant references vs each other": reference_self_scores(references, params.top_k),
        "questioned faces": faces["score"],
    }
    written += score_distributions(groups, out / "score_distributions",
                                   title=f"Scores: {case.claimant_name}")
    if summary.get("validation"):
        written += tippett_plot(val, out / "tippett", title="Tippett plot, validation half")
        written += ece_plot(val, out / "ece", title="Empirical cross-entropy, validation half")
    desc = summary.get("calibrator") or {}
    bounds = (desc["lower_log10_lr"], desc["upper_log10_lr"]) if desc else None
    written += episode_recognizability(episodes, out / "episodes", bounds=bounds,
                                       operating_point=params.operating_point_log10_lr)
    for episode in case.episodes:
        tl_file = run_dir / "timeline" / f"{episode.id}.csv"
        if tl_file.exists():
            written += episode_timeline(
                pd.read_csv(tl_file), out / f"timeline_{episode.id}",
                operating_point=params.operating_point_log10_lr, bounds=bounds,
                title=f"Timeline of {episode.id}",
            )
    written += contact_sheet(faces, references, {e.id: e.path for e in case.episodes},
                             out / "contact_sheet")
    return written
