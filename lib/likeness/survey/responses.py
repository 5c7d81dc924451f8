"""Survey responses: their format, their validation against the design, and their store.

A response is one JSON object (``RESPONSE_FORMAT``), the same whether the page posts it to the
collector or the respondent downloads it to send by other means. Every field is checked
against the design before anything is stored; a response that fails any check is rejected as
a whole (:class:`ResponseError`, which says which field and why).

The store is one SQLite database in WAL mode with ``synchronous=FULL``: a response
acknowledged to the respondent survives a crash. Each response is written once; its
``response_id`` is the primary key, so a replay (a retry, a re-import) is refused, never
stored twice. All SQL is parameterised.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from likeness.files import atomic_path, sha256_file, write_csv_atomic
from likeness.survey import SurveyError

RESPONSE_FORMAT = "likeness-survey-response/1"
RESPONSE_FIELDS = {
    "format", "survey_id", "design_sha256", "response_id", "seed", "consent", "complete",
    "started_utc", "finished_utc", "attention", "recognition_order", "lineup_order",
    "positions", "recognition", "lineup",
}
RESPONSE_ID = re.compile(r"^[0-9a-f]{32}$")
NOT_PRESENT = "none"
MAX_NAME_CHARS = 200
MAX_SEED = 2**32 - 1
SQLITE_MAGIC = b"SQLite format 3\x00"


class ResponseError(SurveyError):
    """A response that does not fit the design (a bad field, an unknown stimulus...)."""


class DuplicateResponseError(SurveyError):
    """A response whose response_id is already stored."""


def mulberry32(seed: int):
    """The page's random generator (mulberry32), bit for bit: floats in [0, 1)."""
    state = seed & 0xFFFFFFFF

    def draw() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & 0xFFFFFFFF
        t = ((state ^ (state >> 15)) * (state | 1)) & 0xFFFFFFFF
        t = ((t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF) ^ t
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return draw


def _shuffled(items: list[str], draw) -> list[str]:
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(draw() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


def respondent_layout(design: dict, seed: int) -> dict[str, Any]:
    """What the page shows a respondent with this seed: the order of the open-recognition
    block, the order of the lineup block and each lineup's positions (left to right)."""
    draw = mulberry32(seed)
    ids = [s["id"] for s in design["stimuli"]]
    recognition_order = _shuffled(ids, draw)
    lineup_order = _shuffled(ids, draw)
    positions = {s["id"]: _shuffled(s["lineup"]["options"], draw) for s in design["stimuli"]}
    return {"recognition_order": recognition_order, "lineup_order": lineup_order,
            "positions": positions}


def _fail(field: str, why: str) -> ResponseError:
    return ResponseError(f"field '{field}': {why}")


def _check_time(value: Any, field: str) -> None:
    if not isinstance(value, str) or len(value) > 40:
        raise _fail(field, "expected an ISO 8601 UTC time")
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail(field, "expected an ISO 8601 UTC time") from exc


def validate_response(design: dict, response: Any) -> dict:
    """Check every field of a response against the design; return it unchanged if valid.

    Raises ResponseError naming the first field that is wrong. A response may be incomplete
    (``complete`` false: the respondent stopped); it is stored and excluded at analysis.
    """
    if not isinstance(response, dict):
        raise ResponseError("a response must be a JSON object")
    unknown = sorted(set(response) - RESPONSE_FIELDS)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    missing = sorted(RESPONSE_FIELDS - set(response))
    if missing:
        raise _fail(missing[0], "missing")
    if response["format"] != RESPONSE_FORMAT:
        raise _fail("format", f"expected '{RESPONSE_FORMAT}'")
    if response["survey_id"] != design["survey_id"]:
        raise _fail("survey_id", f"this collector holds survey '{design['survey_id']}'")
    if response["design_sha256"] != design["design_sha256"]:
        raise _fail("design_sha256", "the response was made with another version of the design")
    rid = response["response_id"]
    if not isinstance(rid, str) or not RESPONSE_ID.match(rid):
        raise _fail("response_id", "expected 32 lower-case hexadecimal digits")
    seed = response["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise _fail("seed", f"expected a whole number from 0 to {MAX_SEED}")
    if response["consent"] is not True:
        raise _fail("consent", "only responses given with consent are accepted")
    if not isinstance(response["complete"], bool):
        raise _fail("complete", "expected true or false")
    _check_time(response["started_utc"], "started_utc")
    _check_time(response["finished_utc"], "finished_utc")
    attention = response["attention"]
    if attention is not None and attention not in design["options"]["attention"]["options"]:
        raise _fail("attention", "not one of the attention check's options")

    layout = respondent_layout(design, seed)
    for key in ("recognition_order", "lineup_order", "positions"):
        if response[key] != layout[key]:
            raise _fail(key, "does not match the layout of the recorded seed")

    stimuli = {s["id"]: s for s in design["stimuli"]}
    levels = design["options"]["confidence_levels"]
    answers = {"recognition": response["recognition"], "lineup": response["lineup"]}
    for block, items in answers.items():
        if not isinstance(items, list) or len(items) > len(stimuli):
            raise _fail(block, "expected a list with at most one answer per stimulus")
        seen: set[str] = set()
        for i, item in enumerate(items):
            where = f"{block}[{i}]"
            keys = {"stimulus", "recognised", "name"} if block == "recognition" else {
                "stimulus", "choice", "confidence"}
            if not isinstance(item, dict) or set(item) != keys:
                raise _fail(where, f"expected exactly the fields {', '.join(sorted(keys))}")
            sid = item["stimulus"]
            if not isinstance(sid, str) or sid not in stimuli:
                raise _fail(f"{where}.stimulus", "unknown stimulus id")
            if sid in seen:
                raise _fail(f"{where}.stimulus", "answered twice")
            seen.add(sid)
            if block == "recognition":
                if item["recognised"] not in ("yes", "no"):
                    raise _fail(f"{where}.recognised", "expected 'yes' or 'no'")
                name = item["name"]
                if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
                    raise _fail(f"{where}.name", f"expected a text of at most {MAX_NAME_CHARS}"
                                " characters")
                if item["recognised"] == "no" and name.strip():
                    raise _fail(f"{where}.name", "a name is given for a face not recognised")
            else:
                if item["choice"] not in [*stimuli[sid]["lineup"]["options"], NOT_PRESENT]:
                    raise _fail(f"{where}.choice", "not a photo of this stimulus's lineup")
                conf = item["confidence"]
                if isinstance(conf, bool) or not isinstance(conf, int) or not 1 <= conf <= levels:
                    raise _fail(f"{where}.confidence", f"expected a whole number 1 to {levels}")
        if response["complete"] and seen != set(stimuli):
            raise _fail(block, "a complete response answers every stimulus")
    if response["complete"] and attention is None:
        raise _fail("attention", "a complete response answers the attention check")
    return response


SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    response_id TEXT PRIMARY KEY,
    survey_id TEXT NOT NULL,
    design_sha256 TEXT NOT NULL,
    received_utc TEXT NOT NULL,
    source TEXT NOT NULL,
    body TEXT NOT NULL
)
"""


class ResponseStore:
    """The responses of one survey in SQLite (WAL, synchronous=FULL, one connection per call,
    so any number of collector threads may use one store)."""

    def __init__(self, path: str | Path, design: dict):
        self.path = Path(path)
        self.design = design
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def add(self, response: Any, source: str) -> str:
        """Validate and store a response once; return its id.

        Raises ResponseError (invalid, nothing stored) or DuplicateResponseError (its id is
        already stored; the stored one is kept unchanged).
        """
        validate_response(self.design, response)
        body = json.dumps(response, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        db = self._connect()
        try:
            db.execute("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                       (response["response_id"], response["survey_id"],
                        response["design_sha256"], now, source, body))
        except sqlite3.IntegrityError as exc:
            raise DuplicateResponseError(
                f"response {response['response_id']} is already stored; nothing changed") from exc
        finally:
            db.close()
        return response["response_id"]

    def responses(self) -> list[dict]:
        """Every stored response, in the order of their ids (reproducible)."""
        db = self._connect()
        try:
            rows = db.execute("SELECT body FROM responses ORDER BY response_id").fetchall()
        finally:
            db.close()
        return [json.loads(body) for (body,) in rows]

    def count(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        finally:
            db.close()


ANSWER_COLUMNS = ["response_id", "seed", "complete", "attention_passed", "stimulus", "group",
                  "role", "recognised", "name", "lineup_choice", "lineup_position", "confidence"]


def answers_table(design: dict, responses: Iterable[dict]) -> pd.DataFrame:
    """One row per response and stimulus: the open answer, the lineup choice and its position
    (1 = leftmost), the confidence; plus the response's consent, completeness and attention."""
    attention_answer = design["options"]["attention"]["answer"]
    rows = []
    for r in sorted(responses, key=lambda r: r["response_id"]):
        recog = {a["stimulus"]: a for a in r["recognition"]}
        lineup = {a["stimulus"]: a for a in r["lineup"]}
        for s in design["stimuli"]:
            sid = s["id"]
            a, b = recog.get(sid), lineup.get(sid)
            choice = b["choice"] if b else None
            rows.append({
                "response_id": r["response_id"], "seed": r["seed"], "complete": r["complete"],
                "attention_passed": r["attention"] == attention_answer,
                "stimulus": sid, "group": s["group"], "role": s["role"],
                "recognised": a["recognised"] if a else None, "name": a["name"] if a else None,
                "lineup_choice": choice,
                "lineup_position": (r["positions"][sid].index(choice) + 1
                                    if choice not in (None, NOT_PRESENT) else None),
                "confidence": b["confidence"] if b else None,
            })
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def export_csv(design: dict, db_path: str | Path, out: str | Path) -> Path:
    """Write the stored responses as one CSV row per response and stimulus."""
    table = answers_table(design, open_responses(design, db_path))
    write_csv_atomic(table, out)
    return Path(out)


def read_response_files(paths: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """The responses in downloaded files: each file holds one response or a list of them."""
    out = []
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SurveyError(f"{path}: not a readable JSON response file ({exc})") from exc
        for item in data if isinstance(data, list) else [data]:
            out.append((path, item))
    return out


def import_files(design: dict, db_path: str | Path, paths: Iterable[str | Path]
                 ) -> dict[str, list[str]]:
    """Store the responses of downloaded files (validated as the collector does).

    Returns {"stored": [...ids], "duplicate": [...ids], "invalid": ["file: why", ...]}; an
    invalid or duplicate response is skipped and the others are still imported.
    """
    store = ResponseStore(db_path, design)
    result: dict[str, list[str]] = {"stored": [], "duplicate": [], "invalid": []}
    for path, response in read_response_files(paths):
        try:
            result["stored"].append(store.add(response, f"import:{path.name}:"
                                                        f"{sha256_file(path)[:16]}"))
        except DuplicateResponseError:
            result["duplicate"].append(str(response.get("response_id")))
        except ResponseError as exc:
            result["invalid"].append(f"{path}: {exc}")
    return result


def open_responses(design: dict, source: str | Path) -> list[dict]:
    """The responses of a SQLite store, a JSON file or a folder of JSON files, validated.

    A response that fails validation stops the analysis with its file and field: a store only
    ever holds valid responses, so an invalid one means the wrong file or a changed design.
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(source.glob("*.json"))
        if not files:
            raise SurveyError(f"{source}: no *.json response files in this folder")
        items = read_response_files(files)
    elif source.is_file():
        with source.open("rb") as f:
            is_db = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
        if is_db:
            db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT body FROM responses ORDER BY response_id").fetchall()
            except sqlite3.DatabaseError as exc:
                raise SurveyError(f"{source}: not a likeness survey store ({exc})") from exc
            finally:
                db.close()
            items = [(source, json.loads(body)) for (body,) in rows]
        else:
            items = read_response_files([source])
    else:
        raise SurveyError(f"{source}: no such responses file or folder")
    seen: set[str] = set()
    out = []
    for path, response in items:
        try:
            validate_response(design, response)
        except ResponseError as exc:
            raise SurveyError(f"{path}: {exc}") from exc
        if response["response_id"] in seen:
            raise SurveyError(f"{path}: response {response['response_id']} appears twice")
        seen.add(response["response_id"])
        out.append(response)
    return out


def write_response_file(response: dict, path: str | Path) -> None:
    """Write one response as the page's download does (for tests and other platforms)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(response, ensure_ascii=False), "utf-8")
