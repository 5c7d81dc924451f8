"""Faces: detection (MTCNN), quality and tracks.

Detection is facenet-pytorch's MTCNN, called on batches of equally sized frames; the aligned
crops that the embedders take are cut by :mod:`likeness.face_crop`.

Quality is reported per face so that an expert can see, and the scores can weight, how much
each face is worth: detection probability, face size in pixels, sharpness and a pose estimate
from the five landmarks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from facenet_pytorch import MTCNN
from scipy.optimize import linear_sum_assignment

from likeness import inference, mtcnn
from likeness.face_crop import roll_degrees

# Where MTCNN's nose-tip landmark sits between the eye line (0) and the mouth line (1) on a
# frontal face: 0.72 on average over the six frontal faces of facenet-pytorch's multiface.jpg.
PITCH_FRONTAL_RATIO = 0.72
# Depth of the nose tip in front of the eyes, in inter-ocular distances (adult anthropometry:
# about 0.6).
NOSE_DEPTH = 0.6

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Frames per MTCNN call on a CPU. Measured on this project's 2-core machine (detection alone,
# 32 sampled frames, median of 5 interleaved rounds, ms per frame): 1080x1920 frames 149 one by
# one, 125 in fours, 130 in eights; the 1080p peer video (5 faces a frame) 217, 175 and 178. In
# fours the pyramid and crop resizes of two frames run side by side on the two cores; larger
# batches' pyramids outgrow the caches (16 frames: 157 ms). On a GPU the whole batch goes.
CPU_FRAMES_PER_DETECTION = 4


@dataclasses.dataclass(frozen=True)
class Detections:
    """The faces found in one image (arrays of length n, n may be 0)."""

    boxes: np.ndarray  # (n, 4) float32 x1, y1, x2, y2
    probs: np.ndarray  # (n,) float32
    landmarks: np.ndarray  # (n, 5, 2) float32, order of LANDMARK_NAMES

    def __len__(self) -> int:
        return len(self.probs)


EMPTY_DETECTIONS = Detections(
    np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' is the GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_detector(
    device: str = "auto", min_face_size: int = 20, runtime: str | None = None
) -> MTCNN:
    """facenet-pytorch's MTCNN with its shipped weights, returning every face it finds.

    Its three networks run in ``runtime`` (default :func:`likeness.inference.runtime_name`:
    OpenVINO on a CPU, PyTorch on a GPU); 'torch' is facenet-pytorch's MTCNN untouched.
    """
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        inference.pin_gpu_precision()
    detector = MTCNN(
        keep_all=True,
        post_process=False,
        select_largest=False,
        min_face_size=min_face_size,
        device=torch_device,
    ).eval()
    return inference.compile_detector(detector, runtime or inference.runtime_name(torch_device))


def frames_per_detection(device: torch.device, detect_batch_size: int) -> int:
    """How many frames go through MTCNN in one call: ``detect_batch_size`` on a GPU, at most
    :data:`CPU_FRAMES_PER_DETECTION` on a CPU. Part of what decides the numbers (OpenVINO's and
    PyTorch's kernels may sum in another order for another batch), so it is recorded."""
    if device.type == "cuda":
        return detect_batch_size
    return min(detect_batch_size, CPU_FRAMES_PER_DETECTION)


def _to_detections(boxes, probs, points, min_prob: float) -> Detections:
    if boxes is None or len(boxes) == 0:
        return EMPTY_DETECTIONS
    # MTCNN.detect returns object arrays: make them plain floats.
    boxes = np.asarray(boxes).astype(np.float32).reshape(-1, 4)
    probs = np.asarray(probs).astype(np.float32).reshape(-1)
    points = np.asarray(points).astype(np.float32).reshape(-1, 5, 2)
    keep = probs >= min_prob
    # A stable order (left to right, then top to bottom) keeps tables reproducible.
    order = np.lexsort((boxes[keep, 1], boxes[keep, 0]))
    return Detections(boxes[keep][order], probs[keep][order], points[keep][order])


def detect_batch(
    detector: MTCNN, images: Sequence[np.ndarray], min_prob: float = 0.0
) -> list[Detections]:
    """Detect faces in RGB uint8 images; equally sized images go through MTCNN in one call.

    The result is that of facenet-pytorch's ``MTCNN.detect`` (see :func:`likeness.mtcnn.detect`);
    images that are not (H, W, 3) uint8, or a detector that is not float32, go through
    ``MTCNN.detect`` itself.
    """
    if not images:
        return []
    if next(detector.pnet.parameters()).dtype != torch.float32 or not all(
        img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 for img in images
    ):
        return [_to_detections(*detector.detect(img, landmarks=True), min_prob) for img in images]
    if len({img.shape for img in images}) == 1:
        found = mtcnn.detect(detector, np.stack(images))
    else:
        found = [mtcnn.detect(detector, img[None])[0] for img in images]
    return [_from_mtcnn(detector, boxes, points, min_prob) for boxes, points in found]


def _from_mtcnn(
    detector: MTCNN, boxes: np.ndarray, points: np.ndarray, min_prob: float
) -> Detections:
    """What ``MTCNN.detect`` does with one image's raw boxes, then :func:`_to_detections`."""
    if len(boxes) == 0:
        return EMPTY_DETECTIONS
    if detector.select_largest:
        order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
        boxes, points = boxes[order], points[order]
    return _to_detections(boxes[:, :4], boxes[:, 4], points, min_prob)


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey crop: low for blurred or heavily compressed faces."""
    out = np.zeros(len(crops), np.float32)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        out[i] = cv2.Laplacian(grey, cv2.CV_64F).var()
    return out


def pose_degrees(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rough yaw, pitch and roll in degrees from the five landmarks.

    Yaw: with the eyes at depth 0 and the nose tip NOSE_DEPTH inter-ocular distances in front
    of them, a head turned by yaw shows the nose offset from the eyes' midpoint by
    NOSE_DEPTH * tan(yaw) projected eye distances, so yaw = atan(offset / (NOSE_DEPTH * iod)).
    Pitch: the nose's vertical position between the eye line and the mouth line against its
    frontal value (PITCH_FRONTAL_RATIO). Roll: the eye line.
    These are estimates for quality weighting and filtering, not measurements.
    """
    left, right, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    mouth = (landmarks[:, 3] + landmarks[:, 4]) / 2
    eyes = (left + right) / 2
    iod = np.maximum(np.linalg.norm(right - left, axis=1), 1e-6)
    yaw = np.degrees(np.arctan((nose[:, 0] - eyes[:, 0]) / (NOSE_DEPTH * iod)))
    span = np.maximum(mouth[:, 1] - eyes[:, 1], 1e-6)
    rel = (nose[:, 1] - eyes[:, 1]) / span
    pitch = np.degrees(np.arcsin(np.clip((rel - PITCH_FRONTAL_RATIO) * 2, -1, 1)))
    return yaw.astype(np.float32), pitch.astype(np.float32), roll_degrees(landmarks)


def face_quality(
    probs: np.ndarray, face_px: np.ndarray, sharp: np.ndarray, yaw: np.ndarray, pitch: np.ndarray
) -> np.ndarray:
    """A quality in [0, 1]: the product of four factors, each 1 for a good face.

    - probability: the detector's confidence, as it is;
    - size: 0 at 20 px (MTCNN's smallest face), 1 from 80 px (faces below about 80 px lose the
      detail that face models rely on);
    - sharpness: s / (s + 100) with s the Laplacian variance of the 160 px crop (100 is about
      where compressed video faces turn visibly soft);
    - pose: cos(yaw) * cos(pitch), since profile views match frontal references poorly.
    """
    size = np.clip((face_px - 20.0) / 60.0, 0.0, 1.0)
    sharp_f = sharp / (sharp + 100.0)
    pose = np.cos(np.radians(yaw)) * np.cos(np.radians(pitch))
    return (probs * size * sharp_f * np.clip(pose, 0.0, 1.0)).astype(np.float32)


def face_rows(det: Detections, crops: np.ndarray) -> pd.DataFrame:
    """The per-face columns of the faces table that come from one image's detections."""
    return pd.DataFrame(face_columns(det, crops))


def face_columns(det: Detections, crops: np.ndarray) -> dict[str, Any]:
    """:func:`face_rows` as columns (arrays, and a list for the landmarks), for tables built
    from many images at once."""
    boxes = det.boxes
    face_px = np.sqrt(
        np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    ).astype(np.float32)
    sharp = sharpness(crops)
    yaw, pitch, roll = pose_degrees(det.landmarks) if len(det) else (np.zeros(0, np.float32),) * 3
    return {
        "box_x1": boxes[:, 0],
        "box_y1": boxes[:, 1],
        "box_x2": boxes[:, 2],
        "box_y2": boxes[:, 3],
        "prob": det.probs,
        "landmarks": list(det.landmarks.reshape(-1, 10)),
        "face_px": face_px,
        "sharpness": sharp,
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "quality": face_quality(det.probs, face_px, sharp, yaw, pitch),
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in a (n, 4) with every box in b (m, 4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


# A face continues a track when it overlaps the track's last box and looks alike, or, across a
# cut or a fast move, when it looks very alike. Cosine thresholds are for L2-normalised FaceNet
# embeddings, where the same person in neighbouring frames is typically above 0.8; a model
# whose cosines lie elsewhere passes its own to TrackState (see ModelSpec.link_cosines).
LINK_MIN_IOU = 0.3
LINK_MIN_COSINE_WITH_OVERLAP = 0.3
LINK_MIN_COSINE_ALONE = 0.7


@dataclasses.dataclass
class TrackState:
    """The open tracks of one episode while its frames stream by (small: one row per track)."""

    max_gap_s: float = 1.0
    min_cosine_with_overlap: float = LINK_MIN_COSINE_WITH_OVERLAP
    min_cosine_alone: float = LINK_MIN_COSINE_ALONE
    next_id: int = 0
    ids: list[int] = dataclasses.field(default_factory=list)
    boxes: list[np.ndarray] = dataclasses.field(default_factory=list)
    embeddings: list[np.ndarray] = dataclasses.field(default_factory=list)
    last_time: list[float] = dataclasses.field(default_factory=list)



def link_faces(
    state: TrackState, time_s: float, boxes: np.ndarray, embeddings: np.ndarray
) -> np.ndarray:
    """Assign track ids to the faces of one frame, updating ``state``; returns the ids.

    Frames must come in time order. Matching is a maximum-weight assignment (Hungarian) on
    IoU + cosine similarity between the frame's faces and the tracks seen within max_gap_s.
    """
    n = len(boxes)
    ids = np.full(n, -1, np.int64)
    live = [i for i, t in enumerate(state.last_time) if time_s - t <= state.max_gap_s]
    if n and live:
        iou = box_iou(boxes, np.stack([state.boxes[i] for i in live]))
        cos = embeddings @ np.stack([state.embeddings[i] for i in live]).T
        allowed = ((iou >= LINK_MIN_IOU) & (cos >= state.min_cosine_with_overlap)) | (
            cos >= state.min_cosine_alone
        )
        weight = np.where(allowed, iou + cos, -1e6)
        rows, cols = linear_sum_assignment(-weight)
        for r, c in zip(rows, cols, strict=True):
            if allowed[r, c]:
                k = live[c]
                ids[r] = state.ids[k]
                state.boxes[k], state.embeddings[k], state.last_time[k] = (
                    boxes[r],
                    embeddings[r],
                    time_s,
                )
    for r in np.flatnonzero(ids < 0):
        ids[r] = state.next_id
        state.next_id += 1
        state.ids.append(int(ids[r]))
        state.boxes.append(boxes[r])
        state.embeddings.append(embeddings[r])
        state.last_time.append(time_s)
    # Forget tracks that can no longer be continued, so the state stays small.
    keep = [i for i, t in enumerate(state.last_time) if time_s - t <= state.max_gap_s]
    for name in ("ids", "boxes", "embeddings", "last_time"):
        setattr(state, name, [getattr(state, name)[i] for i in keep])
    return ids
