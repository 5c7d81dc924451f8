"""The case file: a folder holding ``case.yaml``.

The names of ``case.yaml`` are a contract outside users and checks rely on::

    case_id: demo-swap            # letters, digits, - and _
    title: Free text
    claimant:
      name: Elon Musk
      references: [references/]    # files and/or folders of still photos
    footage:                       # the episodes, in broadcast order
      - id: ep01
        path: footage/ep01.mp4
    population:                    # other people: one sub-folder per identity
      path: ${LIKENESS_TESTDATA}/lfw/images_deepfunneled
      exclude: [Elon_Musk]         # identities that must not be used
    analysis:                      # optional; every default is in ANALYSIS_DEFAULTS
      sample_fps: 5
      model: facenet-casia-webface

Relative paths are relative to the folder of ``case.yaml``; ``${VAR}`` is expanded from the
environment, and ``LIKENESS_TESTDATA`` defaults to :func:`testdata_root`. Every error names
the file, the field and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.case_yaml import (
    NUMBER_RANGES,
    check_fields,
    check_id,
    check_number,
    check_path_text,
    read_yaml,
    unknown_field_error,
)
from likeness.errors import CaseError
from likeness.provenance import Provenance, parse_provenance, reference_entry_path

CASE_FILE = "case.yaml"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Defaults of the optional ``analysis`` section, each with the reason for its value.
ANALYSIS_DEFAULTS: dict[str, Any] = {
    # 5 samples per second resolves screen time to 0.2 s, far below a shot's length,
    # at a sixth of the cost of every frame of 30 fps footage. null = every frame.
    "sample_fps": 5.0,
    "model": "facenet-casia-webface",
    # 'auto' uses the GPU when there is one.
    "device": "auto",
    # Frames per MTCNN call and crops per embedder call.
    "detect_batch_size": 16,
    "embed_batch_size": 64,
    # Decided by benchmarks/face_size.py (LFW, size-matched calibration): 20 px faces still
    # carry evidence (genuine median log10 LR +2.18, 4.7% of different people above LR 1),
    # 16 px hardly (16.4%, Cllr 0.49), 12 px not (Cllr 0.91). In pixels, not as a share of
    # the frame: what the embedder can use depends on the face's pixels.
    "min_face_size": 20,
    # Detections below this probability are not faces for the analysis.
    "min_detection_prob": 0.90,
    # Score of a face against a set of photos: mean of the k best cosine similarities.
    "top_k": 3,
    # The LR beyond which a face counts as supporting H1 in claimant_seconds (log10 LR > 1:
    # 'moderate support' on the verbal scale of ENFSI 2015).
    "operating_point_log10_lr": 1.0,
    "bootstrap_samples": 1000,
    "seed": 20260325,
    # At most this many photos per population identity (keeps the lineup balanced).
    "max_photos_per_identity": 20,
    # Scores are AS-norm normalised against a population cohort before calibration (see
    # likeness.cohort: raw similarity moves with the domain, e.g. live face-swaps in video;
    # its place among the population moves much less). 'none' calibrates raw scores.
    "normalisation": "as-norm",
    # 'auto': the calibrator chosen by validation (likeness.validation.CHOICE_RULE); or a
    # named method (logistic, kde, isotonic).
    "calibration_method": "auto",
    # Refits of the calibrator on population identities drawn with replacement: the
    # intervals then include the calibration's uncertainty, not only the faces' sampling.
    "calibration_bootstrap_samples": 200,
    # Further recognition models to run on the case for comparison (e.g. [dlib-resnet-v1]);
    # the first model ('model') gives the reported LRs.
    "compare_models": [],
    # The sensitivity table (leave one reference out, calibrator, population half, models).
    "sensitivity": True,
}
NORMALISATIONS = ("as-norm", "none")
CALIBRATION_METHODS = ("auto", "logistic", "kde", "isotonic")

REQUIRED_FIELDS = ("case_id", "claimant", "footage")
KNOWN_FIELDS = ("case_id", "title", "claimant", "footage", "population", "analysis",
                "examiner", "declaration", "instructed_by", "questions", "performers")
PERFORMER_FIELDS = ("name", "references")
CLAIMANT_FIELDS = ("name", "references", "attributes")
EPISODE_FIELDS = ("id", "path", "source", "obtained", "notes")
POPULATION_FIELDS = ("path", "exclude", "relevance", "min_matching_identities")


@dataclasses.dataclass(frozen=True)
class Episode:
    """One episode of the footage, in broadcast order."""

    id: str
    path: Path


@dataclasses.dataclass(frozen=True)
class Performer:
    """The original performer of a swapped role, with reference stills of their own face."""

    name: str
    reference_paths: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """The declared parameters of an analysis (see ANALYSIS_DEFAULTS for why each default)."""

    sample_fps: float | None
    model: str
    device: str
    detect_batch_size: int
    embed_batch_size: int
    min_face_size: int
    min_detection_prob: float
    top_k: int
    operating_point_log10_lr: float
    bootstrap_samples: int
    seed: int
    max_photos_per_identity: int
    normalisation: str
    calibration_method: str
    calibration_bootstrap_samples: int
    compare_models: tuple[str, ...]
    sensitivity: bool

    def as_dict(self) -> dict[str, Any]:
        """The parameters as JSON holds them (tuples as lists), so a record read back from
        analysis.json compares equal to the parameters that wrote it."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Case:
    """A loaded, validated case."""

    case_id: str
    title: str
    case_file: Path
    claimant_name: str
    reference_paths: tuple[Path, ...]
    episodes: tuple[Episode, ...]
    population_root: Path | None
    population_exclude: tuple[str, ...]
    analysis: AnalysisParams
    # Where the evidence came from, the examiner, the questions (likeness.provenance).
    provenance: Provenance = dataclasses.field(default_factory=Provenance)
    # Optional: the original performers of swapped roles (compared with every track, so the
    # report can show a face was replaced: low similarity to the performer, high to the
    # claimant).
    performers: tuple[Performer, ...] = ()

    @property
    def root(self) -> Path:
        return self.case_file.parent

    def evidence_paths(self) -> list[tuple[str, str, Path]]:
        """(role, id, path) of every evidence file: the footage, then the references."""
        rows = [("footage", ep.id, ep.path) for ep in self.episodes]
        rows += [("reference", p.name, p) for p in self.reference_paths]
        rows += [("performer", f"{perf.name}: {p.name}", p)
                 for perf in self.performers for p in perf.reference_paths]
        return rows


def project_root() -> Path:
    """The project's folder (the one holding lib/)."""
    return Path(__file__).resolve().parents[2]


def testdata_root() -> Path:
    """The real test data: ``$LIKENESS_TESTDATA``, else ``shared/testdata`` beside the project."""
    env = os.environ.get("LIKENESS_TESTDATA")
    if env:
        return Path(env).expanduser().resolve()
    return (project_root().parent / "shared" / "testdata").resolve()


def expand_path(value: str, base: Path, *, where: str) -> Path:
    """Expand ``${VAR}`` and ``~`` in a case file's path; a relative path is relative to base."""
    if not isinstance(value, str) or not value.strip():
        raise CaseError(f"{where}: expected a path (text), got {value!r}")
    env = dict(os.environ)
    env.setdefault("LIKENESS_TESTDATA", str(testdata_root()))

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise CaseError(f"{where}: environment variable ${{{name}}} is not set")
        return env[name]

    expanded = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, str(value))
    check_path_text(expanded, where)
    try:
        path = Path(expanded).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        path.stat()
    except FileNotFoundError:
        pass  # the caller says what is missing
    except (OSError, RuntimeError, ValueError) as exc:
        raise CaseError(f"{where}: {expanded} cannot be used as a path ({exc})") from exc
    check_path_text(str(path), where)
    return path


def _image_files(path: Path, where: str) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CaseError(f"{where}: folder {path} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if path.is_file():
        return [path]
    raise CaseError(f"{where}: {path} does not exist")


def _reference_files(refs: Any, base: Path, where: str) -> list[list[Path]]:
    """The photo files of each entry of a ``references`` list of files and folders (an entry
    is a path or a mapping with ``path`` and its provenance)."""
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list):
        raise CaseError(f"{where}.references: expected a list of files and folders")
    files: list[list[Path]] = []
    for i, ref in enumerate(refs):
        ref_where = f"{where}.references[{i}]"
        ref = reference_entry_path(ref, ref_where)
        files.append(_image_files(expand_path(ref, base, where=ref_where), ref_where))
    return files


def _performers(raw: Any, base: Path, where: str) -> tuple[Performer, ...]:
    """The optional ``performers`` list: ``- {name: ..., references: [...]}``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CaseError(f"{where}: performers: expected a list of {{name, references}}")
    out: list[Performer] = []
    for i, item in enumerate(raw):
        p_where = f"{where}: performers[{i}]"
        item = check_fields(item, p_where, PERFORMER_FIELDS, PERFORMER_FIELDS)
        files = _reference_files(item["references"], base, p_where)
        out.append(Performer(str(item["name"]), tuple(p for group in files for p in group)))
    return tuple(out)


def check_device(device: str, where: str) -> str:
    """'auto', 'cpu' or 'cuda[:N]' naming a GPU that is present."""
    match = re.fullmatch(r"cuda(?::(\d{1,3}))?", device)
    if device in ("auto", "cpu"):
        return device
    if match is None:
        raise CaseError(f"{where}.device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    import torch  # late: only a GPU request needs it here

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        have = f"{count} GPU(s) (cuda:0..cuda:{count - 1})" if count else "no usable GPU"
        raise CaseError(f"{where}.device: '{device}' asked for, but this machine has {have}; "
                        "set device: auto or cpu")
    return device


def analysis_params(raw: Any, where: str) -> AnalysisParams:
    """Validate an ``analysis`` mapping (defaults filled in); ``where`` prefixes errors."""
    raw = {} if raw is None else raw
    check_fields(raw, where, tuple(ANALYSIS_DEFAULTS), ())
    values = {**ANALYSIS_DEFAULTS, **raw}
    # Each value is checked for type and range: a typo'd number must not silently change results.
    if values["sample_fps"] in (None, "all"):
        values["sample_fps"] = None
    for key, value in values.items():
        if value is not None or (key in NUMBER_RANGES and key != "sample_fps"):
            values[key] = check_number(key, value, where)
    for key in ("model", "device"):
        if not isinstance(values[key], str):
            raise CaseError(f"{where}.{key}: expected a string, got {values[key]!r}")
    from likeness.models import MODELS  # late import: models pulls in torch

    if values["model"] not in MODELS:
        raise CaseError(
            f"{where}.model: unknown model '{values['model'][:60]}'; known: {', '.join(MODELS)}"
        )
    values["device"] = check_device(values["device"], where)
    _evidence_params(values, where, MODELS)
    return AnalysisParams(**values)


def _evidence_params(values: dict[str, Any], where: str, models: Any) -> None:
    """Check (in place) the parameters of the evidence model that are not numbers:
    normalisation, calibrator, the models compared and the sensitivity switch."""
    for key, allowed in (("normalisation", NORMALISATIONS),
                         ("calibration_method", CALIBRATION_METHODS)):
        if values[key] not in allowed:
            raise CaseError(f"{where}.{key}: expected one of {', '.join(allowed)}, "
                            f"got {values[key]!r}")
    compare = values["compare_models"] or []
    if isinstance(compare, str):
        compare = [compare]
    if not isinstance(compare, list | tuple) or any(m not in models for m in compare):
        raise CaseError(f"{where}.compare_models: expected a list of model names from "
                        f"{', '.join(models)}, got {values['compare_models']!r}")
    values["compare_models"] = tuple(m for m in compare if m != values["model"])
    if not isinstance(values["sensitivity"], bool):
        raise CaseError(f"{where}.sensitivity: expected true or false")


def load_case(path: str | os.PathLike[str]) -> Case:
    """Load and validate a case from its ``case.yaml`` (or the folder holding it)."""
    check_path_text(os.fspath(path), f"{os.fspath(path)[:200]}: case file")
    case_file = Path(path).expanduser().resolve()
    if case_file.is_dir():
        case_file = case_file / CASE_FILE
    if not case_file.is_file():
        raise CaseError(f"{case_file}: case file not found")
    raw = read_yaml(case_file)
    where = str(case_file)
    check_fields(raw, where, KNOWN_FIELDS, REQUIRED_FIELDS)
    base = case_file.parent

    case_id = check_id(raw["case_id"], where, "case_id")

    claimant = check_fields(
        raw["claimant"], f"{where}: claimant", CLAIMANT_FIELDS, CLAIMANT_FIELDS[:2]
    )
    reference_files = _reference_files(claimant["references"], base, f"{where}: claimant")
    reference_paths = [path for files in reference_files for path in files]

    footage = raw["footage"]
    if not isinstance(footage, list):
        raise CaseError(f"{where}: footage: expected a list of episodes with 'id' and 'path'")
    episodes: list[Episode] = []
    for i, item in enumerate(footage):
        ep_where = f"{where}: footage[{i}]"
        item = check_fields(item, ep_where, EPISODE_FIELDS, EPISODE_FIELDS[:2])
        ep_id = check_id(item["id"], ep_where, "id")
        if ep_id in {e.id for e in episodes}:
            raise CaseError(f"{ep_where}.id: episode id '{ep_id}' is used twice")
        ep_path = expand_path(item["path"], base, where=f"{ep_where}.path")
        if not ep_path.is_file():
            raise CaseError(f"{ep_where}.path: {ep_path} does not exist or is not a file")
        episodes.append(Episode(ep_id, ep_path))

    population_root = None
    exclude: tuple[str, ...] = ()
    if raw.get("population") is not None:
        pop_where = f"{where}: population"
        pop = check_fields(raw["population"], pop_where, POPULATION_FIELDS, ("path",))
        population_root = expand_path(pop["path"], base, where=f"{pop_where}.path")
        if not population_root.is_dir():
            raise CaseError(f"{pop_where}.path: {population_root} is not a folder")
        excl = pop.get("exclude") or []
        if not isinstance(excl, list) or not all(isinstance(x, str) for x in excl):
            raise CaseError(f"{pop_where}.exclude: expected a list of identity folder names")
        exclude = tuple(excl)

    return Case(
        case_id=case_id,
        title=str(raw.get("title") or case_id),
        case_file=case_file,
        claimant_name=str(claimant["name"]),
        reference_paths=tuple(reference_paths),
        episodes=tuple(episodes),
        population_root=population_root,
        population_exclude=exclude,
        analysis=analysis_params(raw.get("analysis"), f"{where}: analysis"),
        provenance=parse_provenance(raw, where, reference_files),
        performers=_performers(raw.get("performers"), base, where),
    )


def override_analysis(case: Case, overrides: dict[str, Any] | None) -> Case:
    """The case with some analysis parameters replaced, checked exactly as in case.yaml."""
    if not overrides:
        return case
    where = f"{case.case_file}: overrides"
    unknown = sorted(set(overrides) - set(ANALYSIS_DEFAULTS))
    if unknown:
        raise unknown_field_error(where, unknown[0], tuple(ANALYSIS_DEFAULTS))
    params = analysis_params({**case.analysis.as_dict(), **overrides}, where)
    return dataclasses.replace(case, analysis=params)


def claimant_identity_names(name: str) -> set[str]:
    """The folder names under which the claimant could appear in a population (e.g. Elon_Musk)."""
    return {name, name.replace(" ", "_"), name.replace(" ", "_").lower(), name.lower()}


def population_photos(
    root: Path, exclude: tuple[str, ...] | list[str] = (), *, max_per_identity: int | None = None
) -> pd.DataFrame:
    """List the population: one row per photo with columns ``identity`` and ``path``.

    Each sub-folder of ``root`` is one identity. Identities named in ``exclude`` are left out
    (the claimant must never be part of the population). Photos are sorted by name and, when
    ``max_per_identity`` is given, the first ones are kept, so the choice is reproducible.
    """
    excluded = {e.lower() for e in exclude}
    rows = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        if folder.name.lower() in excluded:
            continue
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_identity is not None:
            photos = photos[:max_per_identity]
        rows += [(folder.name, p) for p in photos]
        if not photos:
            rows.append((folder.name, None))
    return pd.DataFrame(rows, columns=["identity", "path"])


def population_exclude(case: Case) -> tuple[str, ...]:
    """The case's exclude list plus the claimant's own name spelled as a folder name."""
    return tuple(sorted(set(case.population_exclude) | claimant_identity_names(case.claimant_name)))
