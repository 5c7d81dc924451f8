"""The strict reading of ``case.yaml``: the YAML loader and the checks of single values.

A case file is untrusted input that decides what an expert report says, so it is read
strictly, before :mod:`likeness.case` gives its fields meaning:

- YAML without aliases, anchors, merge keys or duplicate keys (:class:`StrictLoader`), and
  at most ``MAX_CASE_FILE_BYTES`` (:func:`read_yaml`);
- every number range-checked, NaN and infinities included (:data:`NUMBER_RANGES`,
  :func:`check_number`);
- ids and paths bounded to what file systems accept (:func:`check_id`,
  :func:`check_path_text`);
- mappings holding only known fields, with the required ones (:func:`check_fields`).

Every error is a :class:`~likeness.errors.CaseError` naming the file, the field and the fix.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from likeness.errors import CaseError

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
EPISODE_ID_PATTERN = CASE_ID_PATTERN
# What file systems accept: ids become file names, paths are opened.
MAX_ID_CHARS = 100
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
# A case file is a page of settings; anything much larger is not one.
MAX_CASE_FILE_BYTES = 1 << 20

# The range of every number of the ``analysis`` section: (kind, lowest, highest), bounds
# included except where the kind says "open". A new parameter gets a line here; a number
# without a line is still checked to be finite and to fit 64 bits (see check_number).
NUMBER_RANGES: dict[str, tuple[str, float, float]] = {
    "sample_fps": ("float", 0.0, 1000.0),  # 0 excluded: 0 fps samples nothing
    "detect_batch_size": ("int", 1, 1024),
    "embed_batch_size": ("int", 1, 4096),
    "min_face_size": ("int", 1, 4096),
    "min_detection_prob": ("float open", 0.0, 1.0),
    "top_k": ("int", 1, 1000),
    "operating_point_log10_lr": ("float", -20.0, 20.0),
    "bootstrap_samples": ("int", 1, 1_000_000),
    # numpy's legacy generators and many libraries take 32-bit seeds.
    "seed": ("int", 0, 2**32 - 1),
    "max_photos_per_identity": ("int", 1, 100_000),
    "calibration_bootstrap_samples": ("int", 0, 10_000),
}
# Numbers that may be null (sample_fps: null reads every frame); the lower bound is then open.
NULLABLE = ("sample_fps",)


def check_path_text(text: str, where: str) -> None:
    """Refuse a path no file system accepts (NUL, not encodable, over-long names)."""
    if "\x00" in text:
        raise CaseError(f"{where}: the path holds a NUL character; write the file's real path")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise CaseError(
            f"{where}: the path holds characters this system cannot encode; rename the file"
        ) from None
    if len(raw) > MAX_PATH_BYTES:
        raise CaseError(f"{where}: the path is {len(raw)} bytes long, more than the "
                        f"{MAX_PATH_BYTES} file systems accept; use a shorter path")
    for part in raw.split(b"/"):
        if len(part) > MAX_NAME_BYTES:
            raise CaseError(
                f"{where}: the name '{os.fsdecode(part)[:40]}...' is {len(part)} bytes long, "
                f"more than the {MAX_NAME_BYTES} file systems accept; rename it"
            )


def check_id(value: Any, where: str, what: str) -> str:
    """An id that becomes a file or folder name: letters, digits, - and _, at most 100."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CaseError(f"{where}: {what} must be a name (letters, digits, - and _), got "
                        f"{type(value).__name__}")
    text = str(value)
    if not CASE_ID_PATTERN.match(text):
        raise CaseError(f"{where}: {what} '{text[:60]}' may hold only letters, digits, - and _")
    if len(text) > MAX_ID_CHARS:
        raise CaseError(f"{where}: {what} is {len(text)} characters long; at most "
                        f"{MAX_ID_CHARS} are allowed (it becomes a file name), shorten it")
    return text


def unknown_field_error(where: str, key: str, known: tuple[str, ...]) -> CaseError:
    hint = difflib.get_close_matches(key, known, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return CaseError(
        f"{where}: unknown field '{key}'{suggestion}; allowed fields: {', '.join(known)}"
    )


def check_fields(
    mapping: Any, where: str, known: tuple[str, ...], required: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise CaseError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in known:
            raise unknown_field_error(where, str(key), known)
    for key in required:
        if mapping.get(key) in (None, "", []):
            raise CaseError(f"{where}: required field '{key}' is missing or empty")
    return mapping


def check_number(key: str, value: Any, where: str) -> int | float:
    """A number of the analysis section, range-checked by NUMBER_RANGES (NaN, inf refused)."""
    kind, low, high = NUMBER_RANGES.get(key, ("any", -(2.0**63), 2.0**63 - 1))
    whole = kind == "int"
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "any" and not is_number:
        return value  # a text or list parameter: its own check is elsewhere
    wanted = "a whole number" if whole else "a number"
    if not is_number or (whole and not isinstance(value, int)):
        hint = ""
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value.strip()):
            hint = f" (YAML reads {value} as text: write it with a point, e.g. 1.0e+5)"
        raise CaseError(f"{where}.{key}: expected {wanted}, got {value!r}{hint}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CaseError(f"{where}.{key}: expected a finite number, got {value!r}")
    open_low = kind == "float open" or key in NULLABLE
    open_high = kind == "float open"
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        lo, hi = (f"{int(low)}", f"{int(high)}") if whole else (f"{low:g}", f"{high:g}")
        interval = f"{'(' if open_low else '['}{lo}, {hi}{')' if open_high else ']'}"
        shown = f"{value!r}" if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        positive = "a positive " if open_low and low == 0 else ""
        what = f"{positive or 'a '}{'whole number' if whole else 'number'}"
        null = " or null" if key in NULLABLE else ""
        raise CaseError(f"{where}.{key}: expected {what} in {interval}{null}, got {shown}")
    return value if whole else float(value)


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases, anchors or duplicate keys.

    Aliases make a small file expand into a huge document ("billion laughs"); a duplicate key
    silently drops one of two values. A case file needs neither, so both are refused.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "anchors (&name) and aliases (*name) are not allowed in a case file; "
                "write each value out", event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not allowed in a case file",
                    key_node.start_mark,
                )
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class says so
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (the second would silently replace the "
                    "first); keep one", key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a case file with the strict loader; CaseError naming the file and the line."""
    try:
        size = path.stat().st_size
        if size > MAX_CASE_FILE_BYTES:
            raise CaseError(f"{path}: {size} bytes is too large for a case file (at most "
                            f"{MAX_CASE_FILE_BYTES}); name the right file")
        with path.open(encoding="utf-8") as stream:  # errors then point at the file's line
            return yaml.load(stream, Loader=StrictLoader)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise CaseError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError:
        raise CaseError(f"{path}: nested too deeply to be a case file") from None
    except OSError as exc:
        raise CaseError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from exc
