"""Provenance of a case: where each piece of evidence came from, who examines it, and why.

Every field is optional in ``case.yaml``; a value that is absent stays None and the report
prints it as "not recorded" (``NOT_RECORDED``), so a reader sees what was never recorded::

    examiner: {name: Dr A. Expert, qualifications: "PhD, 12 years of facial comparison"}
    declaration: |                 # the expert's declaration, reported verbatim
      I understand my duty to the court ...
    instructed_by: Solicitors LLP, on behalf of the claimant
    questions:                     # the questions put to the expert, reported verbatim
      - Is the claimant recognizable in episodes 1 to 10?
    claimant:
      references:                  # a plain path, or a mapping with its provenance
        - path: refs/portrait.jpg
          source: https://example.org/press/portrait.jpg
          obtained: 2026-03-01
          notes: press kit
      attributes: {sex: female, ethnicity: East Asian}
    footage:
      - {id: ep01, path: ep01.mp4, source: "broadcaster's download", obtained: 2026-03-02}
    population:
      relevance: Why this population stands for "another person" of H2.
      min_matching_identities: 30  # warn below this many identities sharing the attributes

``parse_provenance`` reads these from the raw mapping of ``case.yaml``; ``likeness.case``
calls it once while loading a case.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from likeness.errors import CaseError

NOT_RECORDED = "not recorded"
SOURCE_FIELDS = ("source", "obtained", "notes")
EXAMINER_FIELDS = ("name", "qualifications")
# Attributes a population.csv may describe and a claimant may declare.
ATTRIBUTES = ("sex", "age_band", "ethnicity", "occupation")
# Below this many identities sharing every declared attribute, the report warns that the
# population barely represents people like the claimant (overridable per case).
MIN_MATCHING_IDENTITIES = 20


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """Where one evidence file (or folder of photos) came from."""

    source: str | None = None
    obtained: str | None = None  # ISO date (YYYY-MM-DD)
    notes: str | None = None


@dataclasses.dataclass(frozen=True)
class Examiner:
    name: str | None = None
    qualifications: str | None = None


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The case's provenance fields; every one may be absent."""

    examiner: Examiner = Examiner()
    declaration: str | None = None
    instructed_by: str | None = None
    questions: tuple[str, ...] = ()
    # Keyed by the reference photo's resolved path (str) and by the episode id.
    references: dict[str, SourceRecord] = dataclasses.field(default_factory=dict)
    episodes: dict[str, SourceRecord] = dataclasses.field(default_factory=dict)
    claimant_attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    population_relevance: str | None = None
    min_matching_identities: int = MIN_MATCHING_IDENTITIES

    def reference(self, path: Path) -> SourceRecord:
        return self.references.get(str(path), SourceRecord())

    def episode(self, episode_id: str) -> SourceRecord:
        return self.episodes.get(episode_id, SourceRecord())


def shown(value: Any) -> str:
    """A provenance value as the report prints it: the value, or "not recorded"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return NOT_RECORDED
    return str(value).strip()


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise CaseError(f"{where}: expected a text, got a {type(value).__name__}")
    return str(value).strip() or None


def _date(value: Any, where: str) -> str | None:
    """An ``obtained`` date: YAML reads 2026-03-01 as a date; a text must be ISO."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError as exc:
        raise CaseError(
            f"{where}: '{value}' is not a date; write it as YYYY-MM-DD (e.g. 2026-03-01)"
        ) from exc


def source_record(item: Any, where: str) -> SourceRecord:
    """The ``source``, ``obtained`` and ``notes`` of one mapping (other keys are the caller's)."""
    if not isinstance(item, dict):
        return SourceRecord()
    return SourceRecord(
        source=_text(item.get("source"), f"{where}.source"),
        obtained=_date(item.get("obtained"), f"{where}.obtained"),
        notes=_text(item.get("notes"), f"{where}.notes"),
    )


def reference_entry_path(entry: Any, where: str) -> str:
    """The path of one ``claimant.references`` entry: a plain text, or a mapping's ``path``."""
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"path", *SOURCE_FIELDS})
        if unknown:
            raise CaseError(
                f"{where}: unknown field '{unknown[0]}'; allowed fields: path, "
                + ", ".join(SOURCE_FIELDS)
            )
        if not entry.get("path"):
            raise CaseError(f"{where}: required field 'path' is missing or empty")
        return str(entry["path"])
    if not isinstance(entry, str):
        raise CaseError(f"{where}: expected a path or a mapping with 'path'")
    return entry


def parse_provenance(
    raw: dict[str, Any], where: str, reference_files: list[list[Path]]
) -> Provenance:
    """The provenance fields of a raw ``case.yaml`` mapping.

    ``reference_files`` holds, per ``claimant.references`` entry, the photo files it named (a
    folder entry names several; its provenance applies to each of them).
    """
    examiner_raw = raw.get("examiner") or {}
    if isinstance(examiner_raw, str):
        examiner_raw = {"name": examiner_raw}
    if not isinstance(examiner_raw, dict):
        raise CaseError(f"{where}: examiner: expected a mapping with name and qualifications")
    unknown = sorted(set(examiner_raw) - set(EXAMINER_FIELDS))
    if unknown:
        raise CaseError(f"{where}: examiner: unknown field '{unknown[0]}'; allowed fields: "
                        + ", ".join(EXAMINER_FIELDS))
    examiner = Examiner(
        name=_text(examiner_raw.get("name"), f"{where}: examiner.name"),
        qualifications=_text(examiner_raw.get("qualifications"),
                             f"{where}: examiner.qualifications"),
    )
    questions = raw.get("questions") or []
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, list):
        raise CaseError(f"{where}: questions: expected a list of the questions put to the expert")

    claimant = raw.get("claimant") or {}
    refs = claimant.get("references") or []
    refs = [refs] if isinstance(refs, str) else refs
    references: dict[str, SourceRecord] = {}
    for i, (entry, files) in enumerate(zip(refs, reference_files, strict=True)):
        record = source_record(entry, f"{where}: claimant.references[{i}]")
        for path in files:
            references[str(path)] = record
    attributes = claimant.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise CaseError(f"{where}: claimant.attributes: expected a mapping such as "
                        "{sex: female, ethnicity: East Asian}")
    unknown = sorted(set(attributes) - set(ATTRIBUTES))
    if unknown:
        raise CaseError(f"{where}: claimant.attributes: unknown attribute '{unknown[0]}'; "
                        f"allowed: {', '.join(ATTRIBUTES)}")

    episodes = {
        str(item.get("id")): source_record(item, f"{where}: footage[{i}]")
        for i, item in enumerate(raw.get("footage") or [])
        if isinstance(item, dict)
    }
    population = raw.get("population") or {}
    minimum = population.get("min_matching_identities", MIN_MATCHING_IDENTITIES)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        raise CaseError(f"{where}: population.min_matching_identities: expected a whole "
                        f"number of identities, got {minimum!r}")
    return Provenance(
        examiner=examiner,
        declaration=_text(raw.get("declaration"), f"{where}: declaration"),
        instructed_by=_text(raw.get("instructed_by"), f"{where}: instructed_by"),
        questions=tuple(str(q).strip() for q in questions if str(q).strip()),
        references=references,
        episodes=episodes,
        claimant_attributes={k: str(v) for k, v in attributes.items() if v is not None},
        population_relevance=_text(population.get("relevance"), f"{where}: population.relevance"),
        min_matching_identities=minimum,
    )
