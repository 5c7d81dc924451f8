"""The fast detection path gives facenet-pytorch's own MTCNN.detect results, on real frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from casedata import TESTDATA
from likeness import area_resize, faces, footage, mtcnn
from likeness.photo_file import read_rgb

VIDEO = TESTDATA / "facenet-pytorch/examples/video.mp4"


@pytest.fixture(scope="module")
def detector():
    return faces.load_detector("cpu")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Two 1080p frames of the peer's benchmark video, a second apart (several faces each)."""
    wanted = {0, 25}
    out = []
    for batch in footage.iter_frames(VIDEO, None, batch_size=26):
        out += [img for i, img in zip(batch.frame_index, batch.images, strict=True) if i in wanted]
        break
    assert len(out) == 2
    return out


def _peer(detector, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """facenet-pytorch's MTCNN.detect, as plain float arrays per image."""
    boxes, probs, points = detector.detect(images, landmarks=True)
    out = []
    for b, p, pt in zip(boxes, probs, points, strict=True):
        if b is None:
            out.append((np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))))
        else:
            out.append(
                (
                    np.asarray(b, np.float64),
                    np.asarray(p, np.float64),
                    np.asarray(pt, np.float64),
                )
            )
    return out


def _ours(detector, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [
        (b[:, :4].astype(np.float64), b[:, 4].astype(np.float64), pt.astype(np.float64))
        for b, pt in mtcnn.detect(detector, images)
    ]


def _assert_same(ours, peer) -> None:
    assert len(ours) == len(peer)
    for (b1, p1, l1), (b2, p2, l2) in zip(ours, peer, strict=True):
        assert b1.shape == b2.shape and l1.shape == l2.shape
        np.testing.assert_allclose(b1, b2, rtol=0, atol=1e-4)
        np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-4)
        np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-4)


def test_area_crops_equal_torch_area_resize(frames):
    """Every crop size, near the borders too, resizes bit for bit as interpolate(mode='area')."""
    image = torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2)
    as_float = image.float()
    rng = np.random.default_rng(7)
    n = 150
    size = np.concatenate([np.arange(1, 81), rng.integers(81, 1080, n - 80)])
    height, width = image.shape[2:]
    x = rng.integers(1, width - size + 2)
    y = rng.integers(1, height - size + 2)
    ex, ey = x + size - 1, y + size - 1
    table = area_resize.integral_table(frames[1])
    # The GPU cuts every image's crops at once: here from frames 0 and 1, interleaved.
    inds = np.where(np.arange(n) % 3 == 0, 0, 1)
    for out_size in (24, 48):
        got = torch.from_numpy(area_resize.area_crops(table, y, ey, x, ex, out_size))
        standardised = area_resize.area_crops(table, y, ey, x, ex, out_size, standardise=True)
        # The GPU's arithmetic, run here on the CPU.
        got_torch = area_resize.area_crops_torch(image, inds, y, ey, x, ex, out_size)
        for k in range(n):
            crop = as_float[1, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].unsqueeze(0)
            want = interpolate(crop, size=(out_size, out_size), mode="area")[0]
            assert torch.equal(got[k], want), (k, size[k], out_size)
            assert np.array_equal(standardised[k], ((want - 127.5) * 0.0078125).numpy())
            crop = as_float[inds[k], :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].unsqueeze(0)
            want = interpolate(crop, size=(out_size, out_size), mode="area")[0]
            assert torch.equal(got_torch[k], want), (k, inds[k], size[k], out_size)


def test_gpu_stage_input_equals_the_cpus(frames):
    """R-Net's and O-Net's input as a GPU cuts it (PyTorch, every image's crops in one pass),
    run here on the CPU, equals the CPU's (compiled loops over the summed-area tables), bit
    for bit, for candidate boxes spread over both frames and their borders."""
    images = np.stack(frames)
    pixels = torch.as_tensor(images).permute(0, 3, 1, 2)
    tables = [area_resize.integral_table(f) for f in frames]
    rng = np.random.default_rng(11)
    n = 400
    side = rng.uniform(8, 400, n)
    x1 = rng.uniform(-20, images.shape[2] - 10, n)
    y1 = rng.uniform(-20, images.shape[1] - 10, n)
    boxes = torch.as_tensor(np.stack([x1, y1, x1 + side, y1 + side, rng.uniform(0, 1, n)], 1),
                            dtype=torch.float32)
    image_inds = torch.as_tensor(rng.integers(0, 2, n))
    for size in (24, 48):
        cpu = mtcnn._stage_input(pixels, tables, torch.float32, image_inds, boxes, size)
        gpu_way = mtcnn._stage_input(pixels, None, torch.float32, image_inds, boxes, size)
        assert cpu.shape == (n, 3, size, size)
        assert torch.equal(cpu, gpu_way), size


def test_pyramid_levels_equal_torch_area_resize(frames):
    """Every P-Net pyramid level of a 1080p frame at min_face_size 20 (12 levels, 649x1153 down
    to 15x27), resized from the summed-area table, equals interpolate(mode='area') bit for bit:
    channels last and channels first, plain and standardised as MTCNN standardises."""
    image = torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2).float()
    tables = [area_resize.integral_table(f) for f in frames]
    height, width = image.shape[2:]
    scale, levels = 12 / 20, 0
    while min(height, width) * scale >= 12:
        size = (int(height * scale + 1), int(width * scale + 1))
        want = interpolate(image, size=size, mode="area")
        got = np.stack([area_resize.area_resize(t, *size) for t in tables]).transpose(0, 3, 1, 2)
        assert np.array_equal(got, want.numpy()), size
        planes = np.empty((len(tables), 3, *size), np.float32)
        for table, plane in zip(tables, planes, strict=True):
            area_resize.area_resize(table, *size, out=plane.transpose(1, 2, 0), standardise=True)
        assert np.array_equal(planes, ((want - 127.5) * 0.0078125).numpy()), size
        scale, levels = scale * 0.709, levels + 1
    assert levels == 12


def test_detection_equals_facenet_pytorch_on_video_frames(detector, frames):
    batch = np.stack(frames)
    ours = _ours(detector, batch)
    assert all(len(b) >= 3 for b, _, _ in ours)  # the frames do hold several faces
    _assert_same(ours, _peer(detector, batch))


def test_detection_equals_facenet_pytorch_on_a_photo_and_an_empty_image(detector):
    multiface = read_rgb(TESTDATA / "facenet-pytorch/data/multiface.jpg")
    ours = _ours(detector, multiface[None])
    assert len(ours[0][0]) >= 6
    _assert_same(ours, _peer(detector, multiface[None]))
    blank = np.full((200, 300, 3), 128, np.uint8)
    assert len(mtcnn.detect(detector, blank[None])[0][0]) == 0
    assert faces.detect_batch(detector, [blank])[0] is faces.EMPTY_DETECTIONS


def test_detect_batch_matches_mtcnn_detect_with_mixed_sizes(detector, frames):
    """Mixed sizes go one by one, as before; the tables come out in the same order."""
    images = [
        np.ascontiguousarray(frames[1][::2, ::2]),
        np.ascontiguousarray(frames[0][::2, 60::2]),
    ]
    dets = faces.detect_batch(detector, images, min_prob=0.9)
    for det, img in zip(dets, images, strict=True):
        ref = faces._to_detections(*detector.detect(img, landmarks=True), 0.9)
        assert len(det) == len(ref) > 0
        np.testing.assert_allclose(det.boxes, ref.boxes, rtol=0, atol=1e-4)
        np.testing.assert_allclose(det.probs, ref.probs, rtol=0, atol=1e-4)
        np.testing.assert_allclose(det.landmarks, ref.landmarks, rtol=0, atol=1e-4)


def test_torch_runtime_detection_is_facenet_pytorch_bit_for_bit():
    """With PyTorch running the networks, the fast path gives MTCNN.detect's boxes and
    probabilities exactly: same resizes and the same (channels-last) input layout for P-Net,
    whose convolutions sum in another order for another layout."""
    detector = faces.load_detector("cpu", runtime="torch")
    for image in (read_rgb(TESTDATA / "facenet-pytorch/data/multiface.jpg"),
                  read_rgb(TESTDATA / "sber-swap/examples/images/elon_musk.jpg")):
        boxes, probs = detector.detect(image[None])
        ours = mtcnn.detect(detector, image[None])[0][0]
        assert np.array_equal(np.asarray(boxes[0], np.float32), ours[:, :4])
        assert np.array_equal(np.asarray(probs[0], np.float32), ours[:, 4])
