"""OpenVINO and ONNX Runtime give PyTorch's faces and embeddings, on real frames and photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from casedata import ELON_REFERENCE, LFW, TESTDATA
from likeness import embeddings, face_crop, faces, footage, inference, models
from likeness.photo_file import read_rgb

VIDEO = TESTDATA / "facenet-pytorch/examples/video.mp4"
COMPILED = ("openvino", "onnxruntime")


@pytest.fixture(scope="module")
def torch_nets():
    return faces.load_detector("cpu", runtime="torch"), inference.load_embedder(
        device="cpu", runtime="torch"
    )


@pytest.fixture(scope="module", params=COMPILED)
def compiled_nets(request):
    runtime = request.param
    return runtime, faces.load_detector("cpu", runtime=runtime), inference.load_embedder(
        device="cpu", runtime=runtime
    )


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames 0 and 25 of the peer's 1080p video (several faces each)."""
    wanted = {0, 25}
    for batch in footage.iter_frames(VIDEO, None, batch_size=26):
        return [img for i, img in zip(batch.frame_index, batch.images, strict=True) if i in wanted]
    raise AssertionError("no frames")


@pytest.fixture(scope="module")
def lfw_paths() -> list:
    """Sixteen LFW photos of eight people (some hold background faces)."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:8]
    return [photo for person in people for photo in sorted(person.glob("*.jpg"))[:2]]


def _assert_same_faces(ours: faces.Detections, ref: faces.Detections) -> None:
    """The same faces: each reference face has its twin (box IoU >= 0.99, probability and
    landmarks within 1e-4 and 1e-3 px), and no face more or less."""
    assert len(ours) == len(ref)
    if not len(ref):
        return
    iou = faces.box_iou(ref.boxes, ours.boxes)
    twin = iou.argmax(axis=1)
    assert sorted(twin) == list(range(len(ref)))
    assert iou.max(axis=1).min() >= 0.99
    np.testing.assert_allclose(ours.probs[twin], ref.probs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.landmarks[twin], ref.landmarks, rtol=0, atol=1e-3)


def test_runtime_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv(inference.RUNTIME_ENV, "torch")
    assert inference.runtime_name("cpu") == "torch"
    monkeypatch.delenv(inference.RUNTIME_ENV)
    assert inference.runtime_name("cpu") == inference.DEFAULT_CPU_RUNTIME
    assert inference.runtime_name("cuda") == "torch"
    monkeypatch.setenv(inference.RUNTIME_ENV, "tensorrt")
    with pytest.raises(inference.RuntimeChoiceError, match="LIKENESS_INFERENCE"):
        inference.runtime_name("cpu")


def test_gpu_precision_is_full_float32():
    # PyTorch's default lets cuDNN convolutions use TF32; the GPU path pins full float32.
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        inference.pin_gpu_precision()
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_exported_networks_are_cached_by_their_weights_hash(compiled_nets):
    runtime, detector, model = compiled_nets
    assert inference.runtime_of(detector) == inference.runtime_of(model) == runtime
    sha = models.state_dict_sha256(detector.pnet.reference.state_dict())
    exported = inference._onnx_file("mtcnn-pnet", detector.pnet.reference)
    assert exported.exists() and sha[:16] in exported.name
    assert exported.parent == models.cache_dir() / "compiled"


def test_detection_matches_torch_on_1080p_frames(torch_nets, compiled_nets, frames):
    _, detector, _ = compiled_nets
    for frame in frames:
        ref = faces.detect_batch(torch_nets[0], [frame])[0]
        assert len(ref) >= 3
        _assert_same_faces(faces.detect_batch(detector, [frame])[0], ref)


def test_detection_matches_torch_on_batched_photos(torch_nets, compiled_nets, lfw_paths):
    _, detector, _ = compiled_nets
    images = [read_rgb(p) for p in lfw_paths]
    refs = faces.detect_batch(torch_nets[0], images)
    assert sum(map(len, refs)) >= len(images)
    for ours, ref in zip(faces.detect_batch(detector, images), refs, strict=True):
        _assert_same_faces(ours, ref)


def test_embedder_matches_torch_on_real_crops(torch_nets, compiled_nets, frames):
    _, _, model = compiled_nets
    detector = torch_nets[0]
    crops = np.concatenate(
        [face_crop.crop_faces(f, d.boxes, d.landmarks)
         for f, d in zip(frames, faces.detect_batch(detector, frames), strict=True)]
    )
    assert len(crops) >= 6
    ref = embeddings.embed_crops(torch_nets[1], crops)
    ours = embeddings.embed_crops(model, crops)
    assert np.abs(ours - ref).max() <= 1e-4


def test_embed_photos_matches_the_torch_path(torch_nets, compiled_nets, lfw_paths):
    """Whole photo path (streamed, batched): same statuses and faces, embeddings within 1e-3.

    The embedder alone stays within 1e-4 of PyTorch on the same crops
    (:func:`test_embedder_matches_torch_on_real_crops`; 9e-8 measured). End to end, the
    detector's float rounding moves a box by about 1e-5 px, which can flip the rounding of a
    few crop pixels by one level: 1.06e-4 with ONNX Runtime on an AVX-512 Xeon (4.8e-5 with
    OpenVINO), about 1e-5 on an AVX2 EPYC. A real fault (a crop moved by a pixel, another
    standardisation) moves embeddings by 1e-2 or more.
    """
    _, detector, model = compiled_nets
    paths = [*lfw_paths, ELON_REFERENCE, TESTDATA / "facenet-pytorch/data/multiface.jpg"]
    kw = dict(cache=False, progress=False, selection="centre", batch_size=8)
    ref = embeddings.embed_photos(paths, model=torch_nets[1], detector=torch_nets[0], **kw)
    ours = embeddings.embed_photos(paths, model=model, detector=detector, **kw)
    assert ours["path"].tolist() == ref["path"].tolist()
    assert ours["status"].tolist() == ref["status"].tolist()
    assert ours["n_faces"].tolist() == ref["n_faces"].tolist()
    ok = ref["status"] == "ok"
    assert ok.sum() >= len(lfw_paths)
    boxes = ["box_x1", "box_y1", "box_x2", "box_y2"]
    iou = np.diag(faces.box_iou(ours.loc[ok, boxes].to_numpy(float),
                                ref.loc[ok, boxes].to_numpy(float)))
    assert iou.min() >= 0.99
    np.testing.assert_allclose(ours.loc[ok, "prob"], ref.loc[ok, "prob"], rtol=0, atol=1e-4)
    diff = np.stack(ours.loc[ok, "embedding"]) - np.stack(ref.loc[ok, "embedding"])
    assert np.abs(diff).max() <= 1e-3


def test_photo_cache_keeps_runtimes_apart():
    torch_key = embeddings._detector_key(20)
    assert embeddings._detector_key(20, ("torch", "torch")) == torch_key
    assert embeddings._detector_key(20, ("openvino", "openvino")) != torch_key
