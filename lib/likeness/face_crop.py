"""The aligned crop of a face, as the embedders take it.

A crop is cut the way the FaceNet models were trained and evaluated (the MTCNN box widened by a
margin, resized to 160x160; see ``CROP_MARGIN``), and additionally *aligned*: the frame is
rotated about the box centre so that the eyes are level, which removes in-plane head tilt
(roll) without changing what the box covers. Needs neither torch nor the models.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CROP_SIZE = 160
# Pixels of the 160 px crop around MTCNN's box: facenet-pytorch's LFW evaluation setting.
# benchmarks/crop_margin.py measured 14, 24, 32 and 40 (results/crop_margin.json): 32 separates
# better per comparison (LFW validation, 3 references: Cllr_min 0.0152 against 0.0187; the
# live-swap development series agrees), but the screening's flag rule finds fewer watchlisted
# people at the same false-flag rate (results/watchlist_margin32.json: 75.6% against 84.5% at
# about 1.8%; with 5 and 10 references validation then picks a logistic calibrator instead of
# isotonic, whose LRs stop lower). Kept at 14 until the calibrators are studied with it.
CROP_MARGIN = 14


def roll_degrees(landmarks: np.ndarray) -> np.ndarray:
    """In-plane head rotation from the eye line, in degrees (positive: right eye lower)."""
    d = landmarks[:, 1] - landmarks[:, 0]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0])).astype(np.float32)


def crop_faces(
    image: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int = CROP_SIZE,
    margin: float | None = None,
    align: bool = True,
) -> np.ndarray:
    """Cut (n, size, size, 3) uint8 crops: each box widened by the margin, rotated upright.

    The margin follows facenet-pytorch's ``extract_face``: ``margin`` pixels of the output
    crop, i.e. the box grows by the factor size / (size - margin). With ``align`` the crop is
    rotated by the eye-line angle about the box centre. ``margin`` None: CROP_MARGIN, read at
    call time (benchmarks/crop_margin.py varies it; every cache key reads it too).
    """
    margin = CROP_MARGIN if margin is None else margin
    crops = np.zeros((len(boxes), size, size, 3), np.uint8)
    if len(boxes) == 0:
        return crops
    angles = roll_degrees(landmarks) if align else np.zeros(len(boxes), np.float32)
    grow = size / (size - margin)
    height, width = image.shape[:2]
    for i, ((x1, y1, x2, y2), angle) in enumerate(zip(boxes, angles, strict=True)):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        bw, bh = max(x2 - x1, 1.0) * grow, max(y2 - y1, 1.0) * grow
        # Work on a padded region around the face only, pre-shrunk with area averaging when the
        # face is much larger than the crop, so that the final warp does not alias.
        half = 0.75 * max(bw, bh)
        rx1, ry1 = math.floor(cx - half), math.floor(cy - half)
        rx2, ry2 = math.ceil(cx + half), math.ceil(cy + half)
        region = cv2.copyMakeBorder(
            image[max(ry1, 0) : min(ry2, height), max(rx1, 0) : min(rx2, width)],
            max(-ry1, 0),
            max(ry2 - height, 0),
            max(-rx1, 0),
            max(rx2 - width, 0),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
        shrink = min(1.0, 2.0 * size / max(bw, bh))
        if shrink < 1.0:
            region = cv2.resize(region, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        scx, scy = (cx - rx1) * shrink, (cy - ry1) * shrink
        sx, sy = size / (bw * shrink), size / (bh * shrink)
        rad = math.radians(float(angle))
        cos, sin = math.cos(rad), math.sin(rad)
        # dst = S . R(-angle) . (src - centre) + size/2
        matrix = np.array(
            [
                [sx * cos, sx * sin, 0.0],
                [-sy * sin, sy * cos, 0.0],
            ]
        )
        matrix[:, 2] = np.array([size / 2, size / 2]) - matrix[:, :2] @ np.array([scx, scy])
        crops[i] = cv2.warpAffine(
            region, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    return crops
