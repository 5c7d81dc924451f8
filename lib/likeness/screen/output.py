"""The screening's output files, gathered from the per-video results.

* ``hits.parquet``, ``hits.csv``: one row per (video, track, person) flagged as recognizable
  (HIT_COLUMNS), sorted by video, track and person;
* ``scores.csv``: every (video, track, candidate person) scored, hit or not (SCORE_COLUMNS);
* ``videos.csv``: one row per video (VIDEO_COLUMNS): status, duration, faces, tracks, the
  AI-generation labels, the best hit per person, and ``hit_without_ai_label`` (a hit in a
  video that declares no AI generation: a finding for a platform);
* ``watchlist.csv``, ``population.csv``: every photo used, with its SHA-256 and status;
* ``screening.json``: the parameters, the persons and their reference counts, the
  calibrations and their validation (with the share of validation scores the flag threshold
  passes), the label formats checked, the model and software versions;
* ``timing.json``: wall time of the run (kept apart: it differs between runs);
* ``summary.html``: per person and per video, with thumbnails; relative links only, no
  external request, so it opens from disk.

Tables are written with :func:`likeness.files.write_csv_atomic` (fixed float format) from
results sorted by name, so the same inputs give byte-identical tables, in-process or on Ray.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import models
from likeness.calibration import describe_calibrator
from likeness.files import (
    atomic_path,
    write_csv_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from likeness.screen.labels import LABEL_COLUMNS, LABEL_FORMATS
from likeness.screen.worker import Watch
from likeness.versions import software_versions

HIT_COLUMNS = ["video", "video_sha256", "track_id", "person", "start_s", "end_s",
               "screen_seconds", "log10_lr", "lineup_rank", "lineup_n", "thumbnail"]
SCORE_COLUMNS = ["video", "track_id", "person", "gallery_rank", "gallery_score", "score",
                 "log10_lr", "lineup_rank", "lineup_n", "start_s", "end_s", "screen_seconds",
                 "hit"]
VIDEO_COLUMNS = ["video", "path", "video_sha256", "status", "message", "duration_s",
                 "frame_rate", "n_frames", "n_faces", "n_tracks", "n_hits", "best_hits",
                 *LABEL_COLUMNS, "hit_without_ai_label"]
INT_COLUMNS = ("track_id", "lineup_rank", "lineup_n", "gallery_rank")


def score_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [dict(r, video=res["video"], video_sha256=res["video_sha256"])
            for res in results for r in res.get("scores", [])]
    table = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "video_sha256", "thumbnail"])
    for col in INT_COLUMNS:
        table[col] = table[col].astype(np.int64)
    table["hit"] = table["hit"].astype(bool)
    return table.sort_values(["video", "track_id", "person"], kind="stable", ignore_index=True)


def _best_hits(hits: pd.DataFrame) -> str:
    """'Person log10 LR (track t); ...': the strongest hit of each person in a video."""
    best = hits.sort_values(["person", "log10_lr", "track_id"], ascending=[True, False, True],
                            kind="stable").drop_duplicates("person")
    return "; ".join(f"{r.person} {r.log10_lr:.2f} (track {int(r.track_id)})"
                     for r in best.itertuples())


def video_table(results: list[dict[str, Any]], hits: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for res in results:
        mine = hits[hits["video"] == res["video"]]
        labels = res.get("labels") or {}
        row = {c: res.get(c) for c in VIDEO_COLUMNS}
        row.update({c: labels.get(c, "" if c in ("c2pa", "aigc_label", "iptc_source_type")
                                  else False) for c in LABEL_COLUMNS})
        row.update(n_hits=len(mine), best_hits=_best_hits(mine))
        row["hit_without_ai_label"] = bool(len(mine)) and not row["ai_declared"]
        rows.append(row)
    table = pd.DataFrame(rows, columns=VIDEO_COLUMNS)
    return table.sort_values("video", kind="stable", ignore_index=True)


def _img(src: str) -> str:
    return f'<img src="{html.escape(src)}" alt="" height="64">' if src else ""


def _hits_rows(hits: pd.DataFrame, first: str) -> str:
    cells = []
    for r in hits.itertuples():
        lead = r.video if first == "video" else r.person
        cells.append(
            f"<tr><td>{_img(r.thumbnail)}</td><td>{html.escape(str(lead))}</td>"
            f"<td>{int(r.track_id)}</td><td>{r.start_s:.2f}-{r.end_s:.2f}</td>"
            f"<td>{r.screen_seconds:.2f}</td><td>{r.log10_lr:.2f}</td>"
            f"<td>{int(r.lineup_rank)} / {int(r.lineup_n)}</td></tr>")
    head = (f"<tr><th></th><th>{first}</th><th>track</th><th>time (s)</th><th>on screen (s)"
            "</th><th>log10 LR</th><th>lineup rank</th></tr>")
    return f"<table>{head}{''.join(cells)}</table>"


def summary_html(hits: pd.DataFrame, videos: pd.DataFrame, screening: dict[str, Any]) -> str:
    """The summary page: every hit by person, then every video with its status and labels."""
    params = screening["parameters"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Screening summary</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
        ".bad{color:#a00}</style></head><body>",
        "<h1>Screening summary</h1>",
        f"<p>{len(videos)} videos, {len(screening['persons'])} watchlisted persons, "
        f"{len(hits)} hits. A hit: track log10 LR &ge; {params['flag_log10_lr']} and lineup "
        f"rank &le; {params['flag_max_rank']} (a triage flag for a reviewer, validated on an LFW "
        "watchlist simulation, see screening.json; the LR shown is the calibrated LR). "
        "Labels checked: "
        f"{html.escape('; '.join(LABEL_FORMATS))}.</p>",
        "<h2>By person</h2>",
    ]
    for person, group in hits.groupby("person", sort=True):
        parts.append(f"<h3>{html.escape(person)} ({len(group)} hits)</h3>")
        parts.append(_hits_rows(group, "video"))
    if hits.empty:
        parts.append("<p>No hit.</p>")
    parts.append("<h2>By video</h2>")
    for v in videos.itertuples():
        status = html.escape(str(v.status))
        if v.status != "ok":
            status = f'<span class="bad">{status}: {html.escape(str(v.message))}</span>'
        declared = "declares AI generation" if v.ai_declared else "declares no AI generation"
        parts.append(f"<h3>{html.escape(v.video)}</h3><p>{status}; "
                     f"{int(v.n_faces)} faces, {int(v.n_tracks)} tracks; {declared}"
                     + (' <span class="bad">(hit without AI label)</span>'
                        if v.hit_without_ai_label else "") + "</p>")
        mine = hits[hits["video"] == v.video]
        if len(mine):
            parts.append(_hits_rows(mine, "person"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_outputs(results: list[dict[str, Any]], watch: Watch, record: dict[str, Any],
                  out: Path, timing: dict[str, Any]) -> dict[str, Any]:
    """Write every output file of the screening; returns screening.json's content."""
    scores = score_table(results)
    hits = scores.loc[scores["hit"], HIT_COLUMNS].reset_index(drop=True)
    videos = video_table(results, hits)
    write_parquet_atomic(hits, out / "hits.parquet")
    write_csv_atomic(hits, out / "hits.csv")
    write_csv_atomic(scores.drop(columns=["video_sha256", "thumbnail"]), out / "scores.csv")
    write_csv_atomic(videos, out / "videos.csv")
    write_csv_atomic(record["watchlist"], out / "watchlist.csv")
    write_csv_atomic(record["population"], out / "population.csv")
    params = watch.params
    screening = {
        "parameters": {**{k: v for k, v in params.as_dict().items() if k != "analysis"},
                       "analysis": params.analysis.as_dict()},
        "persons": record["persons"],
        "population_root": record["population_root"],
        "gallery": record["gallery"],
        "flag_rule": record["flag_rule"],
        "calibration": record["calibration"],
        "calibrators": {str(n): describe_calibrator(c.calibrator) if c else None
                        for n, c in watch.calibrators.items()},
        "label_formats": list(LABEL_FORMATS),
        "model": models.model_record(params.analysis.model),
        "inference": record["inference"],
        "software": software_versions(),
        "warnings": record["warnings"],
        "videos": {s: int((videos["status"] == s).sum())
                   for s in sorted(videos["status"].unique())},
        "n_hits": len(hits),
    }
    write_json_atomic(out / "screening.json", screening)
    hours = float(np.nansum(videos["duration_s"].to_numpy(dtype=float))) / 3600
    seconds = timing["videos_s"]
    timing.update(n_videos=len(videos), video_hours=hours,
                  videos_per_hour=len(videos) / seconds * 3600 if seconds else None,
                  video_hours_per_hour=hours / seconds * 3600 if seconds else None)
    write_json_atomic(out / "timing.json", timing)
    with atomic_path(out / "summary.html") as tmp:
        tmp.write_text(summary_html(hits, videos, screening), "utf-8")
    return {**screening, "timing": timing, "hits": hits, "videos_table": videos}
