"""dlib's 128-d face-recognition ResNet as a likeness embedder, behind MTCNN's detections.

Detection stays MTCNN for every model, so that the same faces are compared by every model.
dlib's network needs dlib's own alignment, not MTCNN's 160x160 crop: inside each MTCNN box
(a ``dlib.rectangle`` in the frame's own pixels) dlib's 5-point ``shape_predictor`` finds the
eye corners and the nose, and ``dlib.get_face_chip`` cuts the face upright at 150x150 pixels
with padding 0.25, exactly as ``compute_face_descriptor(img, shape)`` does inside dlib (its
documented alignment for this network). The chips go through the network in one batch with
``num_jitters=0``: no random jitter, so the same image gives the same descriptor.

dlib's descriptors are not exactly unit length (dlib compares them by Euclidean distance,
threshold 0.6); they are L2-normalised here like every likeness embedding, so that scores
are cosine similarities for every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25
NUM_JITTERS = 0
EMBEDDING_DIM = 128


class DlibEmbedder:
    """dlib's ``face_recognition_model_v1`` and 5-point ``shape_predictor``, loaded from files
    that the caller has verified (see :func:`likeness.models.load_embedder`)."""

    embedding_dim = EMBEDDING_DIM

    def __init__(self, recognition_file: Path, shape_predictor_file: Path) -> None:
        import dlib

        self.recognition_file = Path(recognition_file)
        self.shape_predictor_file = Path(shape_predictor_file)
        self._net = dlib.face_recognition_model_v1(str(self.recognition_file))
        self._predictor = dlib.shape_predictor(str(self.shape_predictor_file))

    def face_chips(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        """The aligned 150x150 RGB uint8 chip of each box (x1, y1, x2, y2) of ``image``."""
        import dlib

        image = np.ascontiguousarray(image, dtype=np.uint8)
        chips = []
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            rect = dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
            shape = self._predictor(image, rect)
            chips.append(dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING))
        return chips

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 L2-normalised descriptors of aligned 150x150 chips."""
        if not len(chips):
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        vectors = self._net.compute_face_descriptor(
            [np.ascontiguousarray(c, dtype=np.uint8) for c in chips], NUM_JITTERS
        )
        matrix = np.asarray([np.asarray(v) for v in vectors], dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def embed_faces(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> np.ndarray:
        """Embed every box of every image, in order: (sum of boxes, 128) float32."""
        chips = [
            chip
            for image, image_boxes in zip(images, boxes, strict=True)
            for chip in self.face_chips(image, image_boxes)
        ]
        return self.embed_chips(chips)
