"""Screening a catalogue: many videos against a watchlist of protected people.

``likeness screen --watchlist DIR --videos DIR|GLOB|manifest.csv --out DIR [--population DIR]
[--ray local|ADDRESS]`` runs :func:`screen_catalogue`:

1. embed the watchlist (one folder of reference photos per person) and the population (the
   calibration population, the watchlisted people excluded by name and by identical photo);
2. fit one calibrator per distinct number of reference photos (:mod:`.scoring`), validated on
   the held-out half of the population; build the gallery (:mod:`.gallery`);
3. screen every video (:mod:`.worker`), in-process or as Ray actors (:mod:`.distributed`):
   hash and probe it, read its AI-generation labels (:mod:`.labels`), take its faces table from
   the cache shared with ``analyze`` (or make it), score each track against its candidate
   persons, flag hits;
4. gather the per-video results into ``hits.parquet``, ``hits.csv``, ``scores.csv``,
   ``videos.csv``, ``summary.html`` and ``screening.json`` (:mod:`.output`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from likeness import embeddings, faces, inference, models
from likeness.case import analysis_params
from likeness.errors import CaseError
from likeness.screen import gallery as gal
from likeness.screen import output, scoring
from likeness.screen.videos import list_videos
from likeness.screen.worker import FLAG_RULE, ScreenParams, VideoScreener, Watch

__all__ = ["ScreenParams", "default_params", "screen_catalogue"]

LINEUP_COLUMNS = ["identity", "path", "sha256", "embedding"]


def default_params(**overrides: Any) -> ScreenParams:
    """ScreenParams with the case's default analysis parameters (``sample_fps`` etc. may be
    overridden by name, as may the screening's own parameters)."""
    analysis_keys = set(analysis_params(None, "defaults").as_dict())
    analysis = analysis_params({k: v for k, v in overrides.items() if k in analysis_keys},
                               "screen parameters")
    rest = {k: v for k, v in overrides.items() if k not in analysis_keys}
    known = {f.name for f in dataclasses.fields(ScreenParams)} - {"analysis"}
    unknown = sorted(set(rest) - known)
    if unknown:
        raise CaseError(f"screen parameters: unknown {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(known | analysis_keys))}")
    try:
        return ScreenParams(analysis=analysis, **rest)
    except (TypeError, ValueError) as exc:
        raise CaseError(f"screen parameters: {exc}") from exc


def _flag_rates(scores: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Share of the validation half's scores whose LR reaches the flag threshold."""
    val = scores[scores["half"] == "validation"]
    llr = val["log10_lr"].to_numpy(dtype=float)
    same = val["same_source"].to_numpy(dtype=bool)

    def rate(mask: np.ndarray) -> float | None:
        return round(float(np.mean(llr[mask] >= threshold)), 6) if mask.any() else None

    return {"flag_log10_lr": threshold, "n_same_source": int(same.sum()),
            "n_different_source": int((~same).sum()),
            "same_source_flagged": rate(same), "different_source_flagged": rate(~same)}


def _inputs_key(watchlist: pd.DataFrame, population: pd.DataFrame, model: str) -> str:
    """Hash of what the per-video results depend on besides the video and the parameters."""
    digest = hashlib.sha256(models.model_spec(model).sha256.encode())
    for table in (watchlist, population):
        for identity, sha, status in zip(table["identity"], table["sha256"].fillna(""),
                                         table["status"], strict=True):
            digest.update(f"{identity}\t{sha}\t{status}\n".encode())
    return digest.hexdigest()[:16]


def prepare_watch(
    watchlist_dir: Path, population_dir: Path | None, out: Path, params: ScreenParams, *,
    reuse_faces: bool = True, progress: bool = True,
) -> tuple[Watch, dict[str, Any]]:
    """Embed the watchlist and the population, calibrate, build the gallery.

    Returns the Watch for the workers and the record of the inputs for screening.json.
    """
    a = params.analysis
    device = faces.resolve_device(a.device)
    detector = faces.load_detector(str(device), a.min_face_size)
    model = inference.load_embedder(a.model, str(device))
    common = dict(model_name=a.model, device=a.device, model=model, detector=detector,
                  min_face_size=a.min_face_size, min_prob=a.min_detection_prob,
                  progress=progress)
    watchlist = gal.embed_watchlist(watchlist_dir, max_per_person=params.max_references,
                                    **common)
    usable_watch = embeddings_usable(watchlist)
    persons = sorted(usable_watch["identity"].unique())
    warnings = [f"{p}: no usable reference photo; not screened for"
                for p in sorted(set(watchlist["identity"]) - set(persons))]
    if population_dir is not None:
        names = sorted(set(watchlist["identity"]))
        population = embeddings.embed_population(
            Path(population_dir), names, max_per_identity=a.max_photos_per_identity, **common)
        same_photo = population["sha256"].isin(set(watchlist["sha256"]) - {""})
        if same_photo.any():
            warnings.append(f"population: {int(same_photo.sum())} photo(s) identical to "
                            "watchlist photos dropped")
        population = population[~same_photo].reset_index(drop=True)
    else:
        population = watchlist
        warnings.append("no --population: the watchlist's own photos calibrate the LRs and "
                        "the lineup is the watchlist only; give a population for casework")
    validated = FLAG_RULE["validated_for_watchlist_size"]
    if len(persons) > validated:
        warnings.append(f"flag rule validated for watchlists of up to {validated} persons; "
                        f"this one has {len(persons)}: more persons, more chances of a "
                        "false flag (rerun benchmarks/watchlist.py --watchlist-size N)")
    usable_pop = embeddings_usable(population)
    references = {p: usable_watch[usable_watch["identity"] == p].reset_index(drop=True)
                  for p in persons}
    if population_dir is not None:
        lineup = pd.concat([usable_pop[LINEUP_COLUMNS], usable_watch[LINEUP_COLUMNS]],
                           ignore_index=True)
    else:
        lineup = usable_watch[LINEUP_COLUMNS].reset_index(drop=True)
    calibrators, calibration = {}, {}
    for n_refs in sorted({len(r) for r in references.values()}):
        calibrator, summary, scores = scoring.calibrate(usable_pop, n_refs, top_k=a.top_k,
                                                        seed=a.seed)
        calibrators[n_refs] = calibrator
        if calibrator is None:
            names = ", ".join(p for p, r in references.items() if len(r) == n_refs)
            warnings.append(f"no LRs for {names} ({n_refs} reference photos): "
                            + "; ".join(summary["warnings"]))
        summary["validation_flag_rates"] = _flag_rates(scores, params.flag_log10_lr)
        calibration[str(n_refs)] = summary
    gallery = gal.build_gallery(usable_watch, use_index=len(persons) > params.index_above_persons,
                                search_k=params.search_k)
    watch = Watch(params=params, gallery=gallery, references=references, lineup=lineup,
                  calibrators=calibrators, out=Path(out), reuse_faces=reuse_faces,
                  inputs_key=_inputs_key(watchlist, population, a.model))
    record = {
        "watchlist": watchlist.drop(columns=["embedding"]),
        "population_root": str(population_dir) if population_dir else None,
        "population": population.drop(columns=["embedding"]),
        "persons": {p: len(r) for p, r in references.items()},
        "calibration": calibration,
        "gallery": "faiss-hnsw" if gallery.uses_index else "exact",
        "flag_rule": {**FLAG_RULE, "t_W_used": params.flag_log10_lr,
                      "max_rank_used": params.flag_max_rank},
        "warnings": warnings,
        # What ran the networks here; each video's result names the runtime it was screened in.
        "inference": inference.runtime_versions(inference.runtime_of(model)),
        "models": (detector, model),
    }
    return watch, record


def embeddings_usable(table: pd.DataFrame) -> pd.DataFrame:
    from likeness.scores import usable_photos

    return usable_photos(table).sort_values(["identity", "path"], kind="stable",
                                            ignore_index=True)


def screen_catalogue(
    watchlist: str | Path,
    videos: str | Path,
    out: str | Path,
    *,
    population: str | Path | None = None,
    params: ScreenParams | None = None,
    ray: str | None = None,
    workers: int | None = None,
    reuse_faces: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Screen every video of ``videos`` against ``watchlist`` into the folder ``out``.

    ``ray``: None (in-process, the default), 'local' or a cluster address; ``workers``: Ray
    actors (default: the cluster's CPUs). ``reuse_faces=False`` recomputes faces tables even
    when the shared cache holds them (for throughput measurements). Returns the summary
    written to screening.json (with the tables' paths).
    """
    params = params or default_params()
    out = Path(os.path.abspath(out))  # Ray workers need not share the driver's working folder
    out.mkdir(parents=True, exist_ok=True)
    listing = list_videos(videos)
    listing["path"] = [os.path.abspath(p) for p in listing["path"]]
    started = time.perf_counter()
    watch, record = prepare_watch(Path(watchlist), Path(population) if population else None,
                                  out, params, reuse_faces=reuse_faces, progress=progress)
    prepared = time.perf_counter()
    detector, model = record.pop("models")
    if ray:
        from likeness.screen.distributed import screen_on_ray

        results = screen_on_ray(listing, watch, ray, workers=workers, progress=progress)
    else:
        if workers not in (None, 1):
            raise CaseError("--workers needs --ray (in-process screening uses one worker)")
        screener = VideoScreener(watch, detector, model)
        results = [screener.screen(row.video, row.path)
                   for row in tqdm(list(listing.itertuples(index=False)), desc="videos",
                                   unit="video", disable=not progress)]
    finished = time.perf_counter()
    timing = {"prepare_s": prepared - started, "videos_s": finished - prepared,
              "mode": f"ray {ray} ({workers or 'all'} workers)" if ray else "in-process"}
    return output.write_outputs(results, watch, record, out, timing)
