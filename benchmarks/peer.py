"""The peer: the same work done the way facenet-pytorch's examples do it, to compare with.

OpenCV decoding (what their ``mmcv.VideoReader`` wraps), a PIL image per frame, ``mtcnn``
with ``keep_all=True`` (detection and 160 px crops), then InceptionResnetV1: frame by frame
and face by face as the examples do, or in batches of frames (its batched pipeline, the
baseline on a GPU). And which of the peer's faces likeness found too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from likeness import faces
from measure import PeakMemory, clock, rate, resize_to


def opencv_frames(video: Path, wanted: set[int], height: int | None) -> Iterator[np.ndarray]:
    """The wanted frames (by decode index) as RGB arrays, read as facenet-pytorch's examples
    read them (mmcv.VideoReader is OpenCV's VideoCapture)."""
    capture = cv2.VideoCapture(str(video))
    try:
        index = 0
        last = max(wanted)
        while index <= last:
            ok, bgr = capture.read()
            if not ok:
                return
            if index in wanted:
                yield resize_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), height)
            index += 1
    finally:
        capture.release()


def peer_detector(device: torch.device) -> MTCNN:
    """MTCNN as facenet-pytorch's examples build it (keep_all, 160 px crops, standardised,
    its own default min_face_size of 20 px)."""
    return MTCNN(keep_all=True, device=device).eval()


def run_peer(
    video: Path, wanted: set[int], mtcnn: MTCNN, model, device: torch.device, *,
    batch_size: int = 1, height: int | None = None,
) -> dict:
    """Decode, PIL images, ``mtcnn(frames)`` (detect + crops), then the faces embedded.

    With ``--peer-batch 1`` (the default) this is facenet-pytorch's examples frame by frame,
    one embedding per face. With ``--peer-batch N`` it is its batched pipeline, the one to beat
    on a GPU: N frames per MTCNN call (facenet-pytorch accepts a list of equally sized images)
    and each batch's faces embedded in one call. ``mtcnn(frames)`` is spelled out as what its
    ``forward`` does with ``keep_all`` (``detect``, then ``extract``), so that the boxes can be
    compared with likeness's."""
    n_frames = n_faces = 0
    found = []
    batch_size = max(1, batch_size)
    frames = zip(sorted(wanted), opencv_frames(video, wanted, height), strict=False)
    with PeakMemory(device) as mem:
        start = clock(device)
        while batch := list(itertools.islice(frames, batch_size)):
            indices = [index for index, _ in batch]
            images = [Image.fromarray(rgb) for _, rgb in batch]
            if batch_size == 1:
                boxes, probs = mtcnn.detect(images[0])
                boxes, probs = [boxes], [probs]
                face_tensors = [mtcnn.extract(images[0], boxes[0], None)]
            else:
                boxes, probs = mtcnn.detect(images)
                face_tensors = mtcnn.extract(images, boxes, None)
            n_frames += len(batch)
            stacked = []
            for index, b, p, f in zip(indices, boxes, probs, face_tensors, strict=True):
                if f is None:
                    continue
                found += [(index, *map(float, bb), float(pp)) for bb, pp in zip(b, p, strict=True)]
                stacked.append(f)
            with torch.no_grad():
                if batch_size == 1:
                    for face in (stacked[0] if stacked else []):
                        model(face.unsqueeze(0).to(device))
                        n_faces += 1
                elif stacked:
                    all_faces = torch.cat(stacked).to(device)
                    model(all_faces)
                    n_faces += len(all_faces)
        seconds = clock(device) - start
    return {
        "frames": n_frames,
        "faces": n_faces,
        "batch": batch_size,
        "seconds": round(seconds, 3),
        "frames_per_s": rate(n_frames, seconds),
        "faces_per_s": rate(n_faces, seconds),
        **mem.record(),
        "boxes": found,
    }


def compare_faces(ours: pd.DataFrame, peer_boxes: list, min_prob: float, min_face: int) -> dict:
    """The peer's faces (probability >= min_prob) that likeness found too (IoU >= 0.5, same
    frame), and those it did not, each with its size (square root of the box area, px)."""
    peer = pd.DataFrame(peer_boxes, columns=["frame_index", "x1", "y1", "x2", "y2", "prob"])
    peer = peer[peer["prob"] >= min_prob]
    missed, matched = [], 0
    for row in peer.itertuples():
        mine = ours[ours["frame_index"] == row.frame_index]
        box = np.array([[row.x1, row.y1, row.x2, row.y2]])
        boxes = mine[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy(float)
        if len(boxes) and faces.box_iou(box, boxes).max() >= 0.5:
            matched += 1
        else:
            size = float(np.sqrt(max(row.x2 - row.x1, 0) * max(row.y2 - row.y1, 0)))
            missed.append({"frame_index": int(row.frame_index), "face_px": round(size, 1),
                           "prob": round(float(row.prob), 4)})
    return {
        "peer_faces": len(peer), "also_found_by_likeness": matched,
        "likeness_min_face_size": min_face,
        "missed": missed,
        "missed_below_min_face_size": sum(m["face_px"] < min_face for m in missed),
    }
