"""Strict case.yaml: duplicate keys, anchors and aliases, numbers out of range, ids and paths
no file system accepts, a device that is not there; and a property over arbitrary YAML:
every document loads or raises CaseError, nothing else escapes.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casedata import ELON_REFERENCE, SWAP, write_case
from likeness.case import load_case
from likeness.errors import CaseError, LikenessError

# A fixed profile: the same examples on every run, a bounded time in CI.
PROFILE = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture()
def case_file(tmp_path) -> Path:
    return write_case(
        tmp_path, case_id="strict", claimant="Elon Musk", references=[ELON_REFERENCE],
        episodes={"ep01": SWAP / "derived/orig.mp4"}, exclude=["Elon_Musk"],
    )


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(CaseError) as caught:
        load_case(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_duplicate_key_is_refused(case_file):
    text = case_file.read_text()
    case_file.write_text(text + "case_id: second\n")
    _refused(case_file, "duplicate key 'case_id'", "line")


def test_duplicate_key_inside_a_section_is_refused(case_file):
    text = case_file.read_text().replace("sample_fps: 5", "sample_fps: 5\n  sample_fps: 1")
    case_file.write_text(text)
    _refused(case_file, "duplicate key 'sample_fps'")


def test_billion_laughs_is_refused_at_once(case_file):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    case_file.write_text("\n".join(lines) + "\n")
    _refused(case_file, "anchors (&name) and aliases (*name) are not allowed")


def test_alias_inside_a_real_case_is_refused(case_file):
    text = case_file.read_text().replace("case_id: strict", "case_id: &id strict\ntitle: *id")
    text = text.replace("title: Test case strict\n", "")
    case_file.write_text(text)
    _refused(case_file, "anchors (&name) and aliases (*name)")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("sample_fps", ".nan", "expected a finite number, got nan"),
        ("sample_fps", ".inf", "expected a finite number, got inf"),
        ("sample_fps", "-.inf", "expected a finite number"),
        ("sample_fps", "0", "expected a positive number in (0, 1000] or null, got 0"),
        ("seed", str(2**70), "seed: expected a whole number in [0, 4294967295], got "
                             "1180591620717411303424"),
        ("seed", "-1", "seed: expected a whole number in [0, 4294967295]"),
        ("seed", "1.5", "seed: expected a whole number, got 1.5"),
        ("top_k", "true", "top_k: expected a whole number, got True"),
        ("bootstrap_samples", "1e12", "bootstrap_samples: expected a whole number"),
        ("detect_batch_size", str(10**400), "detect_batch_size: expected a whole number in"),
        ("min_detection_prob", ".nan", "min_detection_prob: expected a finite number"),
        ("min_detection_prob", "1", "expected a positive number in (0, 1), got 1"),
        ("operating_point_log10_lr", "1.0e+308", "operating_point_log10_lr: expected a number in"),
        ("operating_point_log10_lr", "1e3", "YAML reads 1e3 as text: write it with a point"),
        ("model", "[a, b]", "model: expected a string"),
    ],
)
def test_every_number_is_range_checked(case_file, field, value, fragment):
    text = case_file.read_text().replace("sample_fps: 5", f"sample_fps: 5\n  {field}: {value}")
    if field == "sample_fps":
        text = case_file.read_text().replace("sample_fps: 5", f"sample_fps: {value}")
    case_file.write_text(text)
    _refused(case_file, f"analysis.{field}", fragment)


def test_300_character_episode_id_is_refused(case_file):
    long_id = "e" * 300
    case_file.write_text(case_file.read_text().replace("id: ep01", f"id: {long_id}"))
    _refused(case_file, "footage[0]: id is 300 characters long; at most 100")


def test_path_component_longer_than_file_systems_accept(case_file):
    name = "x" * 300 + ".mp4"
    text = case_file.read_text()
    text = text.replace(f"path: {SWAP / 'derived/orig.mp4'}", f"path: footage/{name}")
    case_file.write_text(text)
    _refused(case_file, "footage[0].path", "is 304 bytes long, more than the 255")


def test_nul_in_a_path_is_refused(case_file):
    text = case_file.read_text()
    text = text.replace(f"path: {SWAP / 'derived/orig.mp4'}", 'path: "ep\\0.mp4"')
    case_file.write_text(text)
    _refused(case_file, "footage[0].path", "NUL character")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_when_the_case_loads(case_file):
    case_file.write_text(case_file.read_text().replace("sample_fps: 5",
                                                       "sample_fps: 5\n  device: cuda"))
    _refused(case_file, "analysis.device: 'cuda' asked for, but this machine has no usable GPU",
             "set device: auto or cpu")


def test_cli_prints_one_line_and_exit_status_2(case_file):
    case_file.write_text(case_file.read_text() + "case_id: again\n")
    done = subprocess.run([sys.executable, "-m", "likeness.cli", "intake", str(case_file),
                           "--out", str(case_file.parent / "run")], capture_output=True,
                          text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"likeness: error: {case_file}: not valid "
                                                   "YAML: duplicate key 'case_id'"), done.stderr


# --------------------------------------------------------------------------------------------
# Property: arbitrary YAML documents and values


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.sampled_from(["", "~", ".nan", "-.inf", "${LIKENESS_TESTDATA}", "${NOPE}", "all",
                       "cuda", "cuda:7", "cpu", "a" * 400, "x/" * 3000, "\x00", "&a", "*a"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
FIELDS = ["case_id", "title", "claimant", "footage", "population", "analysis", "name",
          "references", "id", "path", "exclude", "sample_fps", "seed", "top_k", "device", "model"]


@PROFILE
@given(data=st.data())
def test_any_yaml_value_in_a_case_loads_or_raises_case_error(case_file, data):
    """Replace one field of a valid case (at any depth) by an arbitrary value."""
    doc = yaml.safe_load(case_file.read_text())
    where = data.draw(st.sampled_from(["top", "claimant", "footage", "population", "analysis"]))
    key = data.draw(st.sampled_from(FIELDS))
    value = data.draw(values)
    target = {"top": doc, "footage": doc["footage"][0]}.get(where, doc.get(where))
    target[key] = value
    path = case_file.parent / "prop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    _loads_or_case_error(path)


yaml_text = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(["case_id: a", "footage:", "- id: x", "  path: y", "claimant:",
                              "  name: n", "  references: [r]", "&a [1, *a]", "? [a]\n: 1",
                              "!!python/object:os.system", "!!binary AAAA", "<<: *b",
                              "analysis: {seed: 1e400}", "\t", "[[[[[[[", "'", '"\\ud800"',
                              "%YAML 1.1\n---", "--- !!set {a, b}", "x: !!timestamp 2020-01-01"]),
             max_size=12).map("\n".join),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@PROFILE
@given(text=yaml_text)
def test_any_text_as_case_file_loads_or_raises_case_error(case_file, text):
    path = case_file.parent / "raw.yaml"
    path.write_text(text, "utf-8", errors="surrogatepass")
    _loads_or_case_error(path)


def test_deeply_nested_document_is_refused(case_file):
    path = case_file.parent / "deep.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(path)


def _loads_or_case_error(path: Path) -> None:
    try:
        case = load_case(path)
    except LikenessError as exc:
        assert isinstance(exc, CaseError), exc
        assert str(path) in str(exc) or "case file" in str(exc)
        return
    # What loads is valid: finite, in-range numbers.
    params = case.analysis.as_dict()
    for value in params.values():
        if isinstance(value, float):
            assert math.isfinite(value)
    assert 0 <= params["seed"] < 2**32
