"""Faces: real MTCNN detection, aligned crops, quality and track linking on real images."""

from __future__ import annotations

import numpy as np
import pytest

from casedata import TESTDATA
from likeness import face_crop, faces
from likeness.photo_file import read_rgb


@pytest.fixture(scope="module")
def detector():
    return faces.load_detector("cpu")


@pytest.fixture(scope="module")
def multiface():
    return read_rgb(TESTDATA / "facenet-pytorch/data/multiface.jpg")


def test_multiface_gives_six_faces(detector, multiface):
    (det,) = faces.detect_batch(detector, [multiface], min_prob=0.9)
    assert len(det) == 6
    assert det.boxes.dtype == np.float32 and det.landmarks.shape == (6, 5, 2)
    # Left to right, so that tables come out in a stable order.
    assert np.all(np.diff(det.boxes[:, 0]) > 0)


def test_batched_detection_equals_one_by_one(detector, multiface):
    flipped = np.ascontiguousarray(multiface[:, ::-1])
    together = faces.detect_batch(detector, [multiface, flipped])
    alone = [faces.detect_batch(detector, [img])[0] for img in (multiface, flipped)]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_crops_are_aligned_and_sized(detector, multiface):
    (det,) = faces.detect_batch(detector, [multiface], min_prob=0.9)
    crops = face_crop.crop_faces(multiface, det.boxes, det.landmarks)
    assert crops.shape == (6, 160, 160, 3) and crops.dtype == np.uint8
    # After alignment the eyes are level: re-detecting on the crops finds ~0 degrees of roll,
    # while the original faces are tilted by up to 11 degrees.
    redetected = faces.detect_batch(detector, list(crops), min_prob=0.9)
    assert all(len(d) >= 1 for d in redetected)
    roll_after = np.array([abs(face_crop.roll_degrees(d.landmarks[:1]))[0] for d in redetected])
    roll_before = np.abs(face_crop.roll_degrees(det.landmarks))
    assert roll_before.max() > 5
    assert roll_after.max() < 3


def test_quality_drops_for_small_and_blurred_faces(detector, multiface):
    import cv2

    (det,) = faces.detect_batch(detector, [multiface], min_prob=0.9)
    sharp_rows = faces.face_rows(det, face_crop.crop_faces(multiface, det.boxes, det.landmarks))
    blurred = cv2.GaussianBlur(multiface, (0, 0), 4)
    (det_b,) = faces.detect_batch(detector, [blurred], min_prob=0.9)
    blur_rows = faces.face_rows(det_b, face_crop.crop_faces(blurred, det_b.boxes, det_b.landmarks))
    assert blur_rows["sharpness"].mean() < 0.5 * sharp_rows["sharpness"].mean()
    assert blur_rows["quality"].mean() < sharp_rows["quality"].mean()
    assert sharp_rows["quality"].between(0, 1).all()
    # Frontal portraits: small yaw estimates.
    assert sharp_rows["yaw"].abs().max() < 25


def test_link_faces_follows_a_face_and_splits_at_a_gap():
    state = faces.TrackState(max_gap_s=1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 512)).astype(np.float32)
    a /= np.linalg.norm(a)
    b /= np.linalg.norm(b)
    box_a = np.array([[10, 10, 60, 60]], np.float32)
    box_b = np.array([[200, 10, 250, 60]], np.float32)
    first = faces.link_faces(state, 0.0, np.concatenate([box_a, box_b]), np.stack([a, b]))
    # Same faces, listed in the other order and slightly moved: ids follow the faces.
    second = faces.link_faces(state, 0.2, np.concatenate([box_b + 2, box_a + 2]), np.stack([b, a]))
    assert list(second) == [first[1], first[0]]
    # After a gap longer than max_gap_s, a new track starts.
    third = faces.link_faces(state, 2.0, box_a, a[None])
    assert third[0] not in set(first)
