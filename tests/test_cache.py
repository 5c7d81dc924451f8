"""Cache integrity: every user-cache entry carries its SHA-256 and is checked before it is read.

Real photos embedded and real clips analysed into a temporary cache (LIKENESS_CACHE), whose
entries the tests then damage the way a disk, a crash or an editor would: a truncated or
bit-flipped photo-embedding ``.npz``, a faces-cache Parquet rewritten as a valid but different
table. Each is detected, discarded with a warning naming the file, and made again; the result
equals the clean run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from casedata import ELON_REFERENCE, LFW, SWAP, TESTDATA, write_case
from likeness import cache, embeddings, faces, inference, models, processing_log, runfolder
from likeness.analysis import analyze_case
from likeness.case import load_case
from likeness.faces_table import read_faces

OBAMA = TESTDATA / "face_recognition/examples/obama.jpg"


@pytest.fixture()
def temp_cache(tmp_path, monkeypatch) -> Path:
    """An empty likeness cache holding only the verified weights of the default model."""
    weights = models.weights_path(models.DEFAULT_MODEL)
    root = tmp_path / "cache"
    (root / "models").mkdir(parents=True)
    shutil.copyfile(weights, root / "models" / weights.name)
    monkeypatch.setenv("LIKENESS_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def embedder():
    return inference.load_embedder(models.DEFAULT_MODEL, "cpu"), faces.load_detector("cpu")


def embed(paths, embedder):
    model, detector = embedder
    return embeddings.embed_photos(paths, model=model, detector=detector, progress=False)


def test_entry_round_trip_and_seal(tmp_path):
    entry = tmp_path / "ab" / "entry.bin"
    cache.write_entry(entry, lambda tmp: tmp.write_bytes(b"faces"))
    assert cache.read_entry(entry) == b"faces"
    digest, name = cache.seal_path(entry).read_text("ascii").split()
    assert (digest, name) == (hashlib.sha256(b"faces").hexdigest(), "entry.bin")
    assert cache.read_entry(tmp_path / "absent.bin") is None  # no entry: nothing to warn of


def test_damaged_photo_entries_are_rebuilt(temp_cache, embedder, tmp_path):
    photos = [ELON_REFERENCE, OBAMA]
    clean = embed(photos, embedder)
    entries = sorted(temp_cache.rglob("*.npz"))
    assert len(entries) == 2 and all(cache.seal_path(e).is_file() for e in entries)
    clean_bytes = {e: e.read_bytes() for e in entries}

    truncated, flipped = entries
    truncated.write_bytes(clean_bytes[truncated][: len(clean_bytes[truncated]) // 2])
    data = bytearray(clean_bytes[flipped])
    data[len(data) // 2] ^= 0x01  # one bit, inside an array's bytes
    flipped.write_bytes(bytes(data))

    run_dir = tmp_path / "run"
    with runfolder.writer_lock(run_dir, "analyze"), pytest.warns(cache.CacheWarning) as caught:
        again = embed(photos, embedder)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any(m.startswith(f"{truncated}:") for m in messages)
    assert any(m.startswith(f"{flipped}:") and "damaged or edited" in m for m in messages)
    # The processing log of the run folder being worked on says so too.
    log = processing_log.read_log(run_dir)
    discarded = log[log["event"] == "cache_discarded"]
    assert sorted(discarded["message"]) == sorted(messages)

    assert list(again["status"]) == list(clean["status"]) == ["ok", "ok"]
    for a, b in zip(clean["embedding"], again["embedding"], strict=True):
        assert np.array_equal(a, b)
    # Rebuilt: the same bytes as the clean entries, sealed again, read without a warning.
    assert {e: e.read_bytes() for e in entries} == clean_bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        third = embeddings.embed_photos(photos, model=None, detector=None, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(clean["embedding"], third["embedding"],
                                                     strict=True))


def test_unsealed_photo_entry_is_not_trusted(temp_cache, embedder):
    embed([ELON_REFERENCE], embedder)
    (entry,) = temp_cache.rglob("*.npz")
    cache.seal_path(entry).unlink()  # as an older likeness, or a crash, would leave it
    with pytest.warns(cache.CacheWarning, match="carries no SHA-256"):
        embed([ELON_REFERENCE], embedder)
    assert cache.read_entry(entry) is not None  # made again, with its seal


def small_case(folder: Path) -> Path:
    population = folder / "population"
    for name in ("Colin_Powell", "Tony_Blair"):
        (population / name).mkdir(parents=True)
        for photo in sorted((LFW / name).iterdir())[:2]:
            os.symlink(photo, population / name / photo.name)
    return write_case(
        folder / "case", case_id="cache", claimant="Elon Musk", references=[ELON_REFERENCE],
        episodes={"orig": SWAP / "derived/orig.mp4", "elon": SWAP / "derived/elon.mp4"},
        population=population, analysis={"bootstrap_samples": 50},
    )


def test_rewritten_faces_cache_entry_is_rebuilt(temp_cache, tmp_path):
    case = load_case(small_case(tmp_path))
    analyze_case(case, tmp_path / "run1", progress=False)
    entries = sorted((temp_cache / "faces").glob("*.parquet"))
    assert len(entries) == 2
    clean_bytes = {e: e.read_bytes() for e in entries}

    # A valid faces table, with its status, but not the one that was written: half its rows.
    edited, truncated = entries
    table = pq.read_table(edited)
    pq.write_table(table.slice(0, table.num_rows // 2), edited)
    assert pq.read_table(edited).schema.equals(table.schema)
    truncated.write_bytes(clean_bytes[truncated][:-100])

    with pytest.warns(cache.CacheWarning) as caught:
        analyze_case(case, tmp_path / "run2", progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]
    assert sorted(m.split(": ", 1)[0] for m in messages) == sorted(map(str, entries))
    log = processing_log.read_log(tmp_path / "run2")
    assert (log["event"] == "cache_discarded").sum() == 2

    for episode in ("orig", "elon"):
        assert read_faces(tmp_path / "run2", episode).equals(read_faces(tmp_path / "run1", episode))
    assert {e: e.read_bytes() for e in entries} == clean_bytes
    for name in ("episodes.csv", "population.parquet", "references.parquet"):
        assert (tmp_path / "run2" / name).read_bytes() == (tmp_path / "run1" / name).read_bytes()

    # Intact entries are reused as they are, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        statuses = analyze_case(case, tmp_path / "run3", progress=False)
    assert {s["message"] for s in statuses.values()} == {"faces reused from the cache"}
    for episode in ("orig", "elon"):
        assert read_faces(tmp_path / "run3", episode).equals(read_faces(tmp_path / "run1", episode))


def test_damaged_exported_network_is_exported_again(temp_cache):
    """An ONNX network in the cache that was damaged is exported again, never compiled."""
    import torch

    pnet = faces.load_detector("cpu", runtime="torch").pnet
    example, dynamic = torch.zeros(2, 3, 48, 64), {0: "n", 2: "h", 3: "w"}
    path = inference.export_onnx("mtcnn-pnet", pnet, example, dynamic)
    assert path.parent == temp_cache / "compiled" and cache.verify_entry(path)
    clean = path.read_bytes()
    data = bytearray(clean)
    data[-200] ^= 0x80  # inside the weights at the end of the file
    path.write_bytes(bytes(data))
    with pytest.warns(cache.CacheWarning, match="damaged or edited") as caught:
        again = inference.export_onnx("mtcnn-pnet", pnet, example, dynamic)
    assert again == path and str(caught[0].message).startswith(f"{path}:")
    assert cache.verify_entry(path) and hashlib.sha256(path.read_bytes()).hexdigest() == (
        hashlib.sha256(clean).hexdigest()
    )
    run = inference.compile_net("mtcnn-pnet", pnet, example, dynamic, "onnxruntime")
    frame = torch.rand(1, 3, 60, 80)
    with torch.inference_mode():
        for ours, ref in zip(run(frame), pnet(frame), strict=True):
            assert torch.allclose(ours, ref, atol=1e-5)
