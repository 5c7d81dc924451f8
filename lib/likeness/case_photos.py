"""The case's photos: the claimant's references, the performers' and the population, embedded
into the run folder (``references.parquet``, ``performers.parquet``, ``population.parquet``).

Every photo goes through :func:`likeness.embeddings.embed_photos` with the case's detection
settings; a photo that cannot be used is a warning of the run folder, and a case left without
a usable reference photo or population identity is refused with a message saying what to do.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from likeness import embeddings
from likeness.case import Case, population_exclude
from likeness.errors import CaseError, EvidenceError, record_warning
from likeness.files import write_parquet_atomic


def embed_case_photos(
    case: Case, run_dir: Path, model, detector, *, progress: bool = True
) -> None:
    """references.parquet and population.parquet, with their problems recorded as warnings."""
    params = case.analysis
    common = dict(
        model_name=params.model,
        device=params.device,
        model=model,
        detector=detector,
        min_face_size=params.min_face_size,
        min_prob=params.min_detection_prob,
        progress=progress,
    )
    refs_file = Path(run_dir) / "references.parquet"
    if not refs_file.exists():
        refs = embeddings.embed_photos(case.reference_paths, selection="dominant", **common)
        for warning in refs.loc[refs["warning"].fillna("") != "", "warning"]:
            record_warning(run_dir, "references", warning)
        if not (refs["status"] == "ok").any():
            raise EvidenceError(
                f"{case.case_file}: no usable reference photo of {case.claimant_name}: "
                + "; ".join(refs["warning"].fillna(""))
            )
        write_parquet_atomic(refs, refs_file)
    perf_file = Path(run_dir) / "performers.parquet"
    if case.performers and not perf_file.exists():
        parts = []
        for performer in case.performers:
            photos = embeddings.embed_photos(
                performer.reference_paths, selection="dominant", **common
            )
            for warning in photos.loc[photos["warning"].fillna("") != "", "warning"]:
                record_warning(run_dir, f"performer {performer.name}", warning)
            photos.insert(0, "identity", performer.name)
            parts.append(photos)
        write_parquet_atomic(pd.concat(parts, ignore_index=True), perf_file)
    pop_file = Path(run_dir) / "population.parquet"
    if not pop_file.exists():
        if case.population_root is None:
            raise CaseError(f"{case.case_file}: population: needed to calibrate the scores")
        pop = embeddings.embed_population(
            case.population_root,
            population_exclude(case),
            max_per_identity=params.max_photos_per_identity,
            **common,
        )
        usable = pop.groupby("identity")["status"].apply(lambda s: (s == "ok").any())
        if not usable.any():
            raise CaseError(
                f"{case.case_file}: population.path: {case.population_root} holds no identity "
                f"with a usable face photo ({len(usable)} identities, {len(pop)} photos, the "
                "claimant excluded), so no likelihood ratio can be calibrated; name a folder "
                "with one sub-folder of face photos per person"
            )
        for identity in usable.index[~usable]:
            record_warning(
                run_dir,
                "population",
                f"{case.population_root / identity}: identity has no usable photo; "
                "left out of the population",
            )
        write_parquet_atomic(pop, pop_file)
