"""Screening one video: intake, faces (shared cache with ``analyze``), candidates, LRs, hits.

:class:`VideoScreener` loads the detector and the embedder once and screens videos one after
another; the in-process run uses one, and each Ray actor holds one (:mod:`.distributed`).
Every video's outcome is written atomically to ``videos/<stem>.json`` in the output folder
before it is returned, so an interrupted screening loses at most the video in progress and a
rerun skips every video whose result file exists for the same bytes and parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from likeness import analysis, cache, faces, inference
from likeness.case import AnalysisParams, Case, Episode
from likeness.episodes import sample_durations, sampling_interval
from likeness.errors import FootageError, LikenessError
from likeness.evidence import Calibration
from likeness.files import write_bytes_atomic, write_json_atomic
from likeness.footage import read_frames
from likeness.screen import gallery as gal
from likeness.screen.labels import read_labels
from likeness.screen.scoring import score_tracks
from likeness.screen.videos import intake_video, result_stem

RESULTS_DIR = "videos"
THUMBS_DIR = "thumbnails"
THUMB_HEIGHT = 128


# The flag rule and its validation (benchmarks/watchlist.py, results in
# benchmarks/results/watchlist.json): written into screening.json. A flag is a triage decision
# for a reviewer; the LR reported with it is the calibrated LR, never cut to yes/no.
FLAG_RULE: dict[str, Any] = {
    "rule": "flag a (track, person) when the person ranks 1 in the lineup of every watchlisted "
            "person plus the population AND the track's calibrated log10 LR (the evidence "
            "method of likeness analyze: AS-norm + the calibrator chosen by validation) is at "
            "least t_W",
    "purpose": "triage for a human reviewer; the reported LR is the calibrated LR, not a "
               "yes/no decision",
    "alpha": 0.02,
    "alpha_meaning": "per-track false-flag rate: share of tracks of people NOT on the "
                     "watchlist flagged for anyone",
    "t_W": 2.35,
    "validated_for_watchlist_size": 54,
    "validation": {
        "data": "LFW (shared test data, 172 identities), 3 seeded identity-disjoint splits: "
                "54 watchlisted, 40 not watchlisted (probes), 78 population; every probe "
                "photo is a one-face track",
        "n_probes_not_on_watchlist": 1886,
        "n_probes_on_watchlist": 956,
        "at_t_W": {"false_flag_rate": 0.019088, "hit_rate": 0.859833,
                   "wrong_person_rate": 0.0},
        "at_log10_lr_1": {"false_flag_rate": 0.057264, "hit_rate": 0.974895},
        "at_log10_lr_3": {"false_flag_rate": 0.011665, "hit_rate": 0.793933},
        "command": "python benchmarks/watchlist.py --json benchmarks/results/watchlist.json",
    },
}


@dataclasses.dataclass(frozen=True)
class ScreenParams:
    """The declared parameters of a screening (each default with its reason).

    * ``analysis``: detection, sampling, model, top-k and seed: the case defaults
      (:data:`likeness.case.ANALYSIS_DEFAULTS`), so faces tables are shared with ``analyze``.
    * ``flag_log10_lr`` (2.35): a (track, person) is a hit when the track's log10 LR for the
      person is at least this ...
    * ``flag_max_rank`` (1): ... and the person ranks at most this in the lineup of every
      watchlisted person plus the population (the person must be the best explanation of the
      face, not one of several look-alikes). The pair is :data:`FLAG_RULE`, validated by the
      LFW watchlist simulation (benchmarks/watchlist.py): a track screened against W persons
      has about W chances of a misleading LR, so the case's operating point (log10 LR 1)
      would flag 5.7% of tracks of people not on a 54-person watchlist; 2.35 is the smallest
      threshold (grid step 0.05) keeping that rate at or below alpha = 2%.
    * ``max_references`` (10): reference photos used per person (the first by file name).
      The calibration for ``n`` references needs population identities with more than ``n``
      photos, and population identities keep at most ``max_photos_per_identity`` (20): with
      10, every identity of 11 or more photos gives same-source scores (with 20 none would).
    * ``n_candidates`` (3): watchlisted persons scored per track (:mod:`.gallery`).
    * ``index_above_persons`` (1000): the gallery uses a FAISS index above this many persons;
      ``search_k`` (64): nearest photos returned per face by the index.
    """

    analysis: AnalysisParams
    flag_log10_lr: float = 2.35
    flag_max_rank: int = 1
    max_references: int = 10
    n_candidates: int = 3
    index_above_persons: int = 1000
    search_k: int = 64

    def __post_init__(self) -> None:
        if self.flag_max_rank > self.n_candidates:
            raise ValueError("flag_max_rank must not exceed n_candidates (see gallery)")
        if min(self.flag_max_rank, self.max_references, self.n_candidates, self.search_k) < 1:
            raise ValueError("flag_max_rank, max_references, n_candidates and search_k must be "
                             "at least 1")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A short hash of the parameters; per-video results record it."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Watch:
    """Everything a worker needs besides the models: sent once to each Ray actor."""

    params: ScreenParams
    gallery: gal.Gallery
    references: dict[str, pd.DataFrame]  # person -> usable reference photos
    lineup: pd.DataFrame  # usable photos of every watchlisted person and population identity
    calibrators: dict[int, Calibration | None]  # evidence models, by number of references
    out: Path
    reuse_faces: bool = True
    inputs_key: str = ""  # hash of the watchlist and population embeddings (resumption check)


def _screen_case(params: AnalysisParams) -> Case:
    """A Case carrying only the analysis parameters, for analysis' per-episode helpers."""
    return Case(case_id="screen", title="screen", case_file=Path("screen"), claimant_name="",
                reference_paths=(), episodes=(), population_root=None, population_exclude=(),
                analysis=params)


def _track_times(faces_table: pd.DataFrame, probe: dict, sample_fps: float | None) -> pd.DataFrame:
    """start_s, end_s and screen_seconds of each track (as ``analyze`` counts screen time)."""
    dt = sampling_interval(sample_fps, probe.get("frame_rate"))
    durations = sample_durations(faces_table["time_s"].to_numpy(), dt, probe.get("duration_s"))
    table = pd.DataFrame({"track_id": faces_table["track_id"].to_numpy(),
                          "start_s": faces_table["time_s"].to_numpy(),
                          "end_s": faces_table["time_s"].to_numpy() + durations,
                          "screen_seconds": durations})
    return table.groupby("track_id", sort=True).agg(
        start_s=("start_s", "min"), end_s=("end_s", "max"), screen_seconds=("screen_seconds", "sum")
    ).reset_index()


def _thumbnail(path: str, faces_table: pd.DataFrame, track_id: int, dest: Path) -> None:
    """A JPEG of the track's best face (highest quality, then earliest), THUMB_HEIGHT high."""
    rows = faces_table[faces_table["track_id"] == track_id].sort_values(
        ["quality", "frame_index"], ascending=[False, True], kind="stable")
    best = rows.iloc[0]
    image = read_frames(path, [int(best["frame_index"])]).get(int(best["frame_index"]))
    if image is None:
        return
    x1, y1, x2, y2 = (float(best[c]) for c in ("box_x1", "box_y1", "box_x2", "box_y2"))
    pad = 0.25 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    crop = image[max(int(y1 - pad), 0): min(int(y2 + pad), h),
                 max(int(x1 - pad), 0): min(int(x2 + pad), w)]
    if crop.size == 0:
        return
    scale = THUMB_HEIGHT / crop.shape[0]
    crop = cv2.resize(crop, (max(round(crop.shape[1] * scale), 1), THUMB_HEIGHT),
                      interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        write_bytes_atomic(dest, data.tobytes())


def score_candidates(watch: Watch, faces_table: pd.DataFrame) -> pd.DataFrame:
    """Every (track, candidate person) of a non-empty faces table, scored, with ``hit``.

    The one flag rule of a screening (:mod:`.scoring`), used by the worker and by the
    watchlist simulation that validates it (benchmarks/watchlist.py).
    """
    params = watch.params
    top_k, seed = params.analysis.top_k, params.analysis.seed
    cands = gal.candidates(watch.gallery, faces_table, top_k=top_k,
                           n_candidates=params.n_candidates)
    parts = []
    for person, group in cands.groupby("person", sort=True):
        refs = watch.references[person]
        sub = faces_table[faces_table["track_id"].isin(group["track_id"])]
        tracks = score_tracks(sub, refs, watch.lineup[watch.lineup["identity"] != person],
                              watch.calibrators[len(refs)], top_k=top_k, seed=seed)
        tracks.insert(1, "person", person)
        parts.append(tracks.merge(group, on=["track_id", "person"]))
    scored = pd.concat(parts, ignore_index=True)
    scored = scored.sort_values(["track_id", "person"], kind="stable", ignore_index=True)
    scored["hit"] = flags(scored["log10_lr"], scored["lineup_rank"], params)
    return scored


def flags(log10_lr: pd.Series, lineup_rank: pd.Series, params: ScreenParams) -> np.ndarray:
    """The flag rule: log10 LR at least ``flag_log10_lr`` and lineup rank at most
    ``flag_max_rank`` (a triage decision for a reviewer; the LR itself is reported)."""
    llr = np.nan_to_num(np.asarray(log10_lr, dtype=float), nan=-np.inf)
    return (llr >= params.flag_log10_lr) & (np.asarray(lineup_rank) <= params.flag_max_rank)


class VideoScreener:
    """Screens videos against a watch; loads MTCNN and the embedder once."""

    def __init__(self, watch: Watch, detector=None, model: torch.nn.Module | None = None) -> None:
        self.watch = watch
        params = watch.params.analysis
        torch.manual_seed(params.seed)
        device = faces.resolve_device(params.device)
        self.detector = detector or faces.load_detector(str(device), params.min_face_size)
        self.model = model or inference.load_embedder(params.model, str(device))
        # Detection and embedding in the runtime the shared faces cache's key names (that of
        # the device, as analyze runs them): a table is the same whoever computed it.
        self.runtime = inference.runtime_of(self.model)
        self.case = _screen_case(params)

    def result_file(self, video: str) -> Path:
        return self.watch.out / RESULTS_DIR / f"{result_stem(video)}.json"

    def done(self, video: str, sha256: str) -> dict[str, Any] | None:
        """The stored result of this video for these bytes and parameters, if there is one."""
        path = self.result_file(video)
        if not path.exists():
            return None
        result = json.loads(path.read_text("utf-8"))
        same = (result.get("video_sha256") == sha256
                and result.get("params_key") == self.watch.params.key()
                and result.get("inputs_key") == self.watch.inputs_key
                and result.get("runtime") == self.runtime)
        return result if same else None

    def screen(self, video: str, path: str) -> dict[str, Any]:
        """Screen one video and write its result file; never raises for a bad video."""
        start = time.perf_counter()
        result: dict[str, Any] = {
            "video": video, "path": path, "status": "failed", "message": "",
            "video_sha256": "", "size_bytes": 0, "duration_s": float("nan"),
            "frame_rate": float("nan"), "n_frames": 0, "n_faces": 0, "n_tracks": 0,
            "faces_table": "", "params_key": self.watch.params.key(),
            "inputs_key": self.watch.inputs_key, "runtime": self.runtime, "labels": {},
            "scores": [],
        }
        try:
            intake = intake_video(path)
        except LikenessError as exc:
            result["message"] = str(exc)
            result["seconds"] = time.perf_counter() - start
            write_json_atomic(self.result_file(video), result)
            return result
        previous = self.done(video, intake["sha256"])
        if previous is not None:
            return previous
        probe = intake["probe"]
        result.update(video_sha256=intake["sha256"], size_bytes=intake["size_bytes"],
                      duration_s=probe["duration_s"], frame_rate=probe["frame_rate"],
                      labels=read_labels(path))
        try:
            table_file, status = self._faces(video, path, intake["sha256"])
        except FootageError as exc:
            result["message"] = str(exc)
        else:
            faces_table = pd.read_parquet(table_file)
            result.update(status=status["status"], message=status.get("message", ""),
                          n_frames=int(status["n_frames"]), n_faces=len(faces_table),
                          n_tracks=int(faces_table["track_id"].nunique()),
                          faces_table=str(table_file))
            result["scores"] = self._scores(video, path, faces_table, probe)
        result["seconds"] = time.perf_counter() - start
        write_json_atomic(self.result_file(video), result)
        return result

    def _faces(self, video: str, path: str, sha256: str) -> tuple[Path, dict[str, Any]]:
        """The video's faces table: from the shared cache, or analysed (and then cached)."""
        cached = analysis.faces_cache_path(self.case, sha256)
        if self.watch.reuse_faces and (found := analysis.read_cached_faces(cached)) is not None:
            return cached, found[1]
        episode = Episode(id=result_stem(video), path=Path(path))
        status = analysis.analyze_episode(episode, self.case, self.watch.out, self.detector,
                                          self.model, progress=False)
        table_file = analysis.faces_path(self.watch.out, episode.id)
        if status["status"] == "ok":  # only complete tables of intact footage are shared
            cache.copy_entry(table_file, cached)
        return table_file, status

    def _scores(self, video: str, path: str, faces_table: pd.DataFrame,
                probe: dict) -> list[dict[str, Any]]:
        """Every scored (track, candidate person), with ``hit`` and the thumbnail of hits."""
        watch, params = self.watch, self.watch.params
        if faces_table.empty:
            return []
        scored = score_candidates(watch, faces_table).merge(
            _track_times(faces_table, probe, params.analysis.sample_fps), on="track_id")
        scored = scored.sort_values(["track_id", "person"], kind="stable", ignore_index=True)
        scored["thumbnail"] = ""
        stem = result_stem(video)
        for track_id in sorted(scored.loc[scored["hit"], "track_id"].unique()):
            rel = f"{THUMBS_DIR}/{stem}/track{int(track_id)}.jpg"
            _thumbnail(path, faces_table, int(track_id), watch.out / rel)
            scored.loc[scored["track_id"] == track_id, "thumbnail"] = rel
        return [{k: v.item() if isinstance(v, np.generic) else v for k, v in rec.items()}
                for rec in scored.to_dict("records")]
