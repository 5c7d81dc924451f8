"""The analysis of a case: from footage and photos to the faces tables and the results.

``analyze_case`` checks the evidence against intake, then writes into the run folder:

- ``analysis.json``: the declared parameters, the model (with its weights' SHA-256) and the
  software versions. A run folder belongs to one set of parameters; reusing it with other
  parameters is refused rather than mixing results.
- ``faces/<episode>.parquet``: one row per face (:mod:`likeness.faces_table`). Each is written to a
  ``.partial`` file and renamed when the episode is done, so a file that exists is complete,
  a second run skips it and an interrupted run resumes at the first unfinished episode. The
  episode's status (ok, truncated) travels inside the file's metadata.
- ``references.parquet``, ``population.parquet``: the embedded photos (see
  :mod:`likeness.case_photos`).
- ``episode_status.json`` and ``warnings.csv``: what happened to each episode, and every
  problem that did not stop the run (an episode that cannot be decoded fails alone).
- the recognizability results of :func:`likeness.episodes.write_episode_results`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from likeness import (
    cache,
    case_photos,
    embeddings,
    face_crop,
    faces,
    footage,
    inference,
    models,
    parallel_decoding,
    processing_log,
    runfolder,
)
from likeness.case import Case, Episode
from likeness.errors import CaseError, FootageError, record_warning
from likeness.faces_table import FACE_SCHEMA, face_schema, faces_path
from likeness.files import (
    atomic_path,
    prefetch,
    prefetch_each,
    rename_into_place,
    write_csv_atomic,
    write_json_atomic,
)
from likeness.intake import ensure_intake
from likeness.versions import software_versions

ANALYSIS_FILE = "analysis.json"
STATUS_FILE = "episode_status.json"
def _frame_table(
    episode_id: str,
    batch: footage.FrameBatch,
    dets: list[faces.Detections],
    crops: list[np.ndarray],
    emb: np.ndarray,
    tracks: faces.TrackState,
) -> pd.DataFrame:
    """The faces table rows of one batch of frames, built as columns and made a DataFrame
    once per batch: per frame, pandas' own overhead was about 5 ms on a GPU machine's CPU
    (session 6's profile), more than the detection itself at the GPU's speed."""
    columns: dict[str, list] = {}
    offset = 0
    for frame_index, time_s, det, crop in zip(
        batch.frame_index, batch.time_s, dets, crops, strict=True
    ):
        n = len(det)
        if not n:
            continue
        frame_emb = emb[offset : offset + n]
        offset += n
        frame_columns = {
            "frame_index": np.full(n, int(frame_index), np.int64),
            "time_s": np.full(n, float(time_s)),
            **faces.face_columns(det, crop),
            "track_id": faces.link_faces(tracks, float(time_s), det.boxes, frame_emb),
            "embedding": list(frame_emb),
        }
        for name, values in frame_columns.items():
            columns.setdefault(name, []).append(values)
    if not columns:
        return pd.DataFrame(columns=FACE_SCHEMA.names)
    table = {
        name: ([v for part in parts for v in part] if isinstance(parts[0], list)
               else np.concatenate(parts))
        for name, parts in columns.items()
    }
    return pd.DataFrame({"episode": episode_id, **table})


def episode_frames(episode: Episode, case: Case) -> Iterator[footage.FrameBatch]:
    """The batches of sampled frames that :func:`analyze_episode` reads. Lazy: the file is
    checked and opened when the first batch is asked for, so that a missing or empty file
    fails in its own episode, wherever the iterator was made."""
    params = case.analysis
    yield from parallel_decoding.iter_frames(
        episode.path, params.sample_fps, batch_size=params.detect_batch_size,
        decoders=_decoders(case),
    )


def _decoders(case: Case) -> int:
    """Decoders per episode: several where the networks outrun one (a GPU, many cores)."""
    return parallel_decoding.decoders_for(faces.resolve_device(case.analysis.device).type)


def analyze_episode(
    episode: Episode,
    case: Case,
    run_dir: Path,
    detector,
    model,
    *,
    progress: bool = True,
    series_bar: tqdm | None = None,
    frames: Iterator[footage.FrameBatch] | None = None,
) -> dict[str, Any]:
    """Detect, embed and track every face of one episode into its faces table.

    ``series_bar``, when given, counts the frames of the whole series (frames/s, ETA).
    ``frames``: the episode's batches as :func:`episode_frames` gives them, already being
    decoded (see :func:`_faces_and_photos`); by default they are decoded here.

    Memory stays bounded: frames stream in batches, each batch's faces go to the Parquet file
    as a row group, and the tracker keeps only the tracks still open. ``model`` is what
    :func:`likeness.models.load_embedder` gives for the case's model.
    """
    params = case.analysis
    out = faces_path(run_dir, episode.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    status: dict[str, Any] = {
        "episode": episode.id,
        "status": "ok",
        "message": "",
        "n_frames": 0,
        "n_faces": 0,
    }
    tracks = faces.TrackState()
    link_cosines = models.model_spec(params.model).link_cosines
    if link_cosines is not None:
        tracks.min_cosine_with_overlap, tracks.min_cosine_alone = link_cosines
    bar = tqdm(desc=f"{episode.id} frames", unit="frame", disable=not progress, leave=False)
    schema = face_schema(embeddings.embedding_dim(model))
    writer = pq.ParquetWriter(partial, schema)
    try:
        if frames is None:
            frames = prefetch(episode_frames(episode, case))
        per_call = faces.frames_per_detection(detector.device, params.detect_batch_size)
        for batch in frames:
            dets = [
                det
                for start in range(0, len(batch.images), per_call)
                for det in faces.detect_batch(
                    detector, batch.images[start : start + per_call], params.min_detection_prob
                )
            ]
            crops = [
                face_crop.crop_faces(img, d.boxes, d.landmarks)
                for img, d in zip(batch.images, dets, strict=True)
            ]
            emb = embeddings.embed_faces(
                model, batch.images, dets, crops, params.embed_batch_size
            )
            table = _frame_table(episode.id, batch, dets, crops, emb, tracks)
            if len(table):
                writer.write_table(pa.Table.from_pandas(table, schema, preserve_index=False))
            status["n_frames"] += len(batch.frame_index)
            status["n_faces"] += len(table)
            bar.update(len(batch.frame_index))
            if series_bar is not None:
                series_bar.update(len(batch.frame_index))
    except FootageError as exc:
        if status["n_frames"] == 0:
            writer.close()
            partial.unlink(missing_ok=True)
            raise
        # Truncated or damaged footage: what decoded is kept and said to be partial, not hidden.
        kind = "truncated" if "truncated" in str(exc) else "damaged"
        status.update(status=kind, message=str(exc))
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    writer.add_key_value_metadata({"likeness_status": json.dumps(status, sort_keys=True)})
    writer.close()
    rename_into_place(partial, out)  # recorded in the run folder's outputs.json as it lands
    return status


def faces_cache_path(case: Case, footage_sha256: str) -> Path:
    """Where the faces table of this footage, under these parameters, is cached.

    The faces of an episode depend only on the footage's bytes and the detection, sampling and
    model settings, not on the claimant: a second case on the same footage (another actor of
    the same drama) reuses them.
    """
    params = case.analysis
    key = {
        "v": embeddings.PHOTO_CACHE_VERSION,
        "footage": footage_sha256,
        "sample_fps": params.sample_fps,
        "min_face_size": params.min_face_size,
        "min_detection_prob": params.min_detection_prob,
        "model_sha256": models.model_spec(params.model).sha256,
        "crop": [face_crop.CROP_SIZE, face_crop.CROP_MARGIN],
    }
    device = faces.resolve_device(params.device)
    runtime = inference.runtime_name(device)
    if runtime != "torch":  # equal to PyTorch's faces to float rounding, not bit for bit
        # Both networks run in it (analyze and screen load them through likeness.inference).
        # The key names both: screen embedded video faces in PyTorch under the former
        # key {"runtime": ...} before 2026-11-26, and those tables must not be reused.
        key["runtimes"] = {"detector": runtime, "embedder": runtime}
    # Named as analysis.json names it (detector.frames_per_call); renamed with the change of
    # key above, so no table made under the old names is lost twice.
    key["frames_per_call"] = faces.frames_per_detection(device, params.detect_batch_size)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return models.cache_dir() / "faces" / f"{digest}.parquet"


def _faces_to_cache(table_file: Path, cached: Path) -> None:
    if episode_status_from_file(table_file).get("status") != "ok":
        return  # only complete tables of intact footage are reused
    cache.copy_entry(table_file, cached)


def read_cached_faces(cached: Path) -> tuple[pa.Table, dict[str, Any]] | None:
    """The cached faces table at ``cached`` and its episode status, or None when there is no
    usable one.

    The entry's bytes must match the SHA-256 written with it (:mod:`likeness.cache`), and be
    a faces table with its status: a damaged, edited or unsealed entry is discarded with a
    warning and the episode is analysed again, never read blindly.
    """
    data = cache.read_entry(cached)
    if data is None:
        return None
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        status = json.loads((parquet.metadata.metadata or {})[b"likeness_status"])
        table = parquet.read()
        if not table.schema.equals(FACE_SCHEMA, check_metadata=False):
            raise ValueError("its columns are not those of a faces table")
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        cache.discard(cached, f"not a readable faces table ({type(exc).__name__}: {exc})")
        return None
    return table, status


def _faces_from_cache(cached: Path, episode_id: str, out: Path) -> dict[str, Any] | None:
    """Write the cached faces table as this case's episode (its id may differ); None when the
    cache holds no usable table for it (see :func:`read_cached_faces`)."""
    found = read_cached_faces(cached)
    if found is None:
        return None
    table, status = found
    status.update(episode=episode_id, message="faces reused from the cache")
    episode_col = pa.array([episode_id] * table.num_rows, pa.string())
    table = table.set_column(table.schema.get_field_index("episode"), "episode", episode_col)
    table = table.replace_schema_metadata(
        {"likeness_status": json.dumps(status, sort_keys=True)}
    )
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return status


def episode_status_from_file(path: Path) -> dict[str, Any]:
    """The status an episode's faces table carries in its Parquet key-value metadata."""
    meta = pq.ParquetFile(path).metadata.metadata or {}
    return json.loads(meta[b"likeness_status"])


def _analysis_record(case: Case) -> dict[str, Any]:
    device = faces.resolve_device(case.analysis.device)
    return {
        "case_id": case.case_id,
        "parameters": case.analysis.as_dict(),
        "model": models.model_record(case.analysis.model),
        "detector": {
            "name": "MTCNN (facenet-pytorch)",
            "crop_size": face_crop.CROP_SIZE,
            "crop_margin": face_crop.CROP_MARGIN,
            "aligned": True,
            "frames_per_call": faces.frames_per_detection(
                device, case.analysis.detect_batch_size
            ),
        },
        "inference": inference.runtime_versions(inference.runtime_name(device)),
        # How frames were decoded; not checked when a run folder is resumed, because it does
        # not change them (likeness.parallel_decoding).
        "decoding": {
            "decoder": "FFmpeg through PyAV, one thread per decoder",
            "decoders": _decoders(case),
        },
        "software": software_versions(),
    }


def _check_run_folder(case: Case, run_dir: Path) -> None:
    """Write analysis.json, or refuse a run folder made with other parameters or weights."""
    path = Path(run_dir) / ANALYSIS_FILE
    record = _analysis_record(case)
    if path.exists():
        old = json.loads(path.read_text("utf-8"))
        for key in ("case_id", "parameters"):
            if old.get(key) != record[key]:
                raise CaseError(
                    f"{run_dir}: this run folder was made with other {key} "
                    f"({old.get(key)} vs now {record[key]}); use a new --out folder"
                )
        if old["model"].get("sha256") != record["model"].get("sha256"):
            raise CaseError(f"{run_dir}: this run folder was made with other model weights")
        # The crop and the runtime decide every embedding as much as the parameters do: a
        # folder resumed with others would mix two computations under one record.
        made = {"detector": old.get("detector"),
                "runtime": (old.get("inference") or {}).get("runtime")}
        now = {"detector": record["detector"], "runtime": record["inference"]["runtime"]}
        for key in made:
            if made[key] != now[key]:
                raise CaseError(
                    f"{run_dir}: this run folder was made with another {key} ({made[key]} vs "
                    f"now {now[key]}); use a new --out folder"
                )
        return
    write_json_atomic(path, record)


def expected_frames(probe: dict[str, Any] | None, sample_fps: float | None) -> int:
    """About how many frames an episode yields, from its intake probe (for the ETA only)."""
    if not probe:
        return 0
    if sample_fps is None:
        return int(probe.get("frame_count") or 0)
    return math.ceil(float(probe.get("duration_s") or 0.0) * sample_fps)


@runfolder.guarded_step("analyze")
def analyze_case(case: Case, run_dir: Path | str, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the whole analysis of ``case`` into ``run_dir``; returns the statuses.

    One process at a time per run folder; every result already in the folder is checked
    against the folder's record before it is reused (:mod:`likeness.runfolder`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = processing_log.log_start(run_dir, "analyze", case.analysis.as_dict())
    intake = ensure_intake(case, run_dir)
    _check_run_folder(case, run_dir)
    torch.manual_seed(case.analysis.seed)
    statuses = _faces_and_photos(case, run_dir, intake, progress=progress)
    # The detector and embedder (about 550 MiB) are gone before scoring: a long episode's
    # scoring then stays below the detection's peak instead of adding to it.
    gc.collect()

    # Other models first: the sensitivity table of the primary's results reads them.
    others = compare_models(case, run_dir, progress=progress)

    from likeness import episodes as episode_results  # issue 3's results

    episode_results.write_episode_results(case, run_dir)
    if others:
        write_model_comparison(run_dir, case.analysis.model, others)
    processing_log.log_end(run_dir, "analyze", started)
    return statuses


def _faces_and_photos(
    case: Case, run_dir: Path, intake: dict[str, Any], *, progress: bool
) -> dict[str, Any]:
    """The faces table of every episode (from the run folder, the cache or the footage) and
    the embedded photos; returns the episodes' statuses."""
    device = faces.resolve_device(case.analysis.device)
    detector = faces.load_detector(str(device), case.analysis.min_face_size)
    model = inference.load_embedder(case.analysis.model, str(device))

    episode_sha = {e["id"]: e["sha256"] for e in intake["evidence"] if e["role"] == "footage"}
    probes = {e["id"]: e.get("probe") for e in intake["evidence"] if e["role"] == "footage"}
    statuses: dict[str, Any] = {}
    to_analyse: list[tuple[Episode, Path]] = []  # with where its faces table is cached
    for episode in case.episodes:
        out = faces_path(run_dir, episode.id)
        cached = faces_cache_path(case, episode_sha[episode.id])
        if out.exists():
            statuses[episode.id] = episode_status_from_file(out)
        elif reused := _faces_from_cache(cached, episode.id, out):
            statuses[episode.id] = reused
        else:
            to_analyse.append((episode, cached))
    # One bar over the frames of every episode still to analyse: the series' frames/s and ETA.
    series_bar = tqdm(
        total=sum(expected_frames(probes[e.id], case.analysis.sample_fps) for e, _ in to_analyse),
        desc="series frames",
        unit="frame",
        disable=not progress,
    )
    # One decoding thread runs through all the episodes (on a GPU it feeds several decoders,
    # see episode_frames): the next one's first frames are decoded while this one's last are
    # detected, instead of MTCNN waiting about 0.8 s per 1080p episode for a batch (16
    # sampled frames, 96 decoded at 5 of 30 fps).
    decoded = prefetch_each(episode_frames(e, case) for e, _ in to_analyse)
    for (episode, cached), frames in tqdm(
        zip(to_analyse, decoded, strict=True), total=len(to_analyse), desc="episodes",
        unit="episode", disable=not progress,
    ):
        try:
            statuses[episode.id] = analyze_episode(
                episode, case, run_dir, detector, model, progress=progress,
                series_bar=series_bar, frames=frames,
            )
            _faces_to_cache(faces_path(run_dir, episode.id), cached)
        except FootageError as exc:
            # This episode fails alone; the others, and what is already done, are kept.
            statuses[episode.id] = {
                "episode": episode.id,
                "status": "failed",
                "message": str(exc),
                "n_frames": 0,
                "n_faces": 0,
            }
        if statuses[episode.id]["status"] != "ok":
            record_warning(run_dir, f"footage {episode.id}", statuses[episode.id]["message"])
    statuses = {e.id: statuses[e.id] for e in case.episodes}  # in the case's order
    series_bar.close()
    write_json_atomic(run_dir / STATUS_FILE, statuses)

    case_photos.embed_case_photos(case, run_dir, model, detector, progress=progress)
    return statuses


def compare_models(
    case: Case, run_dir: Path, *, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """Run the case again with each model of ``compare_models`` into ``models/<name>/`` (a
    complete, independent analysis: its own faces, calibration and results); returns each
    model's episodes table."""
    from likeness.case import override_analysis

    params = case.analysis
    tables: dict[str, pd.DataFrame] = {}
    for name in params.compare_models:
        other = override_analysis(case, {"model": name, "compare_models": [],
                                         "sensitivity": False})
        sub = Path(run_dir) / "models" / name
        analyze_case(other, sub, progress=progress)
        tables[name] = pd.read_csv(sub / "episodes.csv")
    return tables


def write_model_comparison(run_dir: Path, primary: str, others: dict[str, pd.DataFrame]) -> None:
    """``models.csv``: per episode and model, the strongest log10 LR,
    its interval, and whether the model's evidence points the same way as the primary's
    (both above 0, both at or below 0)."""
    main = Path(run_dir) / "episodes.csv"
    rows = []
    tables = dict(others)
    if main.exists():
        tables = {primary: pd.read_csv(main), **tables}
    for name, table in tables.items():
        for r in table.itertuples():
            rows.append({"model": name, "episode": r.episode, "max_log10_lr": r.max_log10_lr,
                         "max_log10_lr_lo": r.max_log10_lr_lo,
                         "max_log10_lr_hi": r.max_log10_lr_hi})
    out = pd.DataFrame(rows)
    if out.empty:
        return
    ref = out[out["model"] == primary].set_index("episode")["max_log10_lr"]
    out["agrees_with_primary"] = [
        bool((v > 0) == (ref.get(e, np.nan) > 0)) if e in ref.index else False
        for e, v in zip(out["episode"], out["max_log10_lr"], strict=True)
    ]
    write_csv_atomic(out, Path(run_dir) / "models.csv")
