"""MTCNN's detection, step for step as facenet-pytorch computes it, without its slow parts.

facenet-pytorch's ``detect_face`` spends most of a CPU's time not in its three networks but in
resizing: an area resize of the whole float frame for every level of the P-Net pyramid, and
one Python iteration, two tensor copies and one kernel call per candidate box (thousands per
1080p frame) for the crops that R-Net and O-Net read. Here both come from one summed-area table
per frame (:mod:`likeness.area_resize`), equal bit for bit to ``interpolate(mode="area")``, and
so are the detections. On a GPU the crops are cut by the same arithmetic in PyTorch and the
pyramid is PyTorch's own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import (
    batched_nms,
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    imresample,
    pad,
    rerec,
)
from torch.profiler import record_function

from likeness import inference
from likeness.area_resize import (
    EXACT_WINDOW_PIXELS,
    STANDARD_OFFSET,
    STANDARD_SCALE,
    area_crops,
    area_crops_torch,
    area_resize,
    integral_table,
    largest_window,
)


def _each(work, items) -> None:
    """Run ``work`` on every item, on as many threads as PyTorch may use: the resizes are
    NumPy array operations that release the GIL, and each writes its own slice of the result,
    so the result does not depend on the threads."""
    threads = torch.get_num_threads()
    if threads < 2 or len(items) < 2:  # a single item: no hand-off
        for item in items:
            work(item)
        return
    global _POOL
    if _POOL is None or _POOL._max_workers != threads:
        _POOL = ThreadPoolExecutor(threads, thread_name_prefix="likeness-resize")
    for done in [_POOL.submit(work, item) for item in items]:
        done.result()


_POOL: ThreadPoolExecutor | None = None


def _standardise(im: torch.Tensor) -> torch.Tensor:
    """MTCNN's standardisation in PyTorch, the constants area_resize fuses into its loops."""
    return (im - float(STANDARD_OFFSET)) * float(STANDARD_SCALE)


def _pyramid_level(
    pixels: torch.Tensor,
    tables: list[np.ndarray] | None,
    out_h: int,
    out_w: int,
    dtype: torch.dtype,
    channels_first: bool,
) -> torch.Tensor:
    """One P-Net pyramid level of the uint8 NCHW batch, standardised, as facenet-pytorch
    computes it (``imresample`` of the float frames, then ``(x - 127.5) * 0.0078125``).

    ``channels_first``: laid out NCHW in memory, as OpenVINO and ONNX Runtime read it (they
    would otherwise copy it so). Otherwise channels last, as facenet-pytorch's own pyramid is
    (its frames are NHWC arrays viewed as NCHW): PyTorch's convolutions sum in another order
    for another memory layout, so for PyTorch the layout is part of giving P-Net exactly the
    input it gets in facenet-pytorch.
    """
    height, width = pixels.shape[2:4]
    window = largest_window(height, out_h) * largest_window(width, out_w)
    if tables is None or window > EXACT_WINDOW_PIXELS or dtype != torch.float32:
        return _standardise(imresample(pixels.type(dtype), (out_h, out_w)))
    channels = pixels.shape[1]
    if channels_first:
        level = np.empty((len(tables), channels, out_h, out_w), np.float32)
        planes = level.transpose(0, 2, 3, 1)  # (N, H, W, C) views of the planes
    else:
        level = planes = np.empty((len(tables), out_h, out_w, channels), np.float32)

    def resize(i: int) -> None:
        area_resize(tables[i], out_h, out_w, out=planes[i], standardise=True)

    _each(resize, range(len(tables)))
    tensor = torch.from_numpy(level)
    return tensor if channels_first else tensor.permute(0, 3, 1, 2)


def _stage_input(
    pixels: torch.Tensor,
    tables: list[np.ndarray] | None,
    dtype: torch.dtype,
    image_inds: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """The (K, 3, size, size) standardised crops that R-Net or O-Net read, one per box.
    ``pixels`` is the uint8 NCHW batch,
    ``tables`` its frames' summed-area tables (None on a GPU)."""
    height, width = pixels.shape[2:4]
    y, ey, x, ex = pad(boxes, width, height)
    if not ((ey > (y - 1)) & (ex > (x - 1))).all():
        # facenet-pytorch skips empty boxes and then fails on mismatched lengths; say why.
        raise ValueError(f"MTCNN: a candidate box lies outside the {width}x{height} image")
    inds = image_inds.cpu().numpy()
    device = pixels.device
    largest = max(int(np.max(ey - y + 1, initial=0)), int(np.max(ex - x + 1, initial=0)))
    exact = (largest // size + 2) ** 2 <= EXACT_WINDOW_PIXELS
    if tables is not None and exact and dtype == torch.float32:
        # All crops, standardised, straight into one NCHW array.
        cut = np.empty((len(y), pixels.shape[1], size, size), np.float32)

        def crop(n: int) -> None:
            sel = np.flatnonzero(inds == n)
            cut[sel] = area_crops(tables[n], y[sel], ey[sel], x[sel], ex[sel], size,
                                  standardise=True)

        _each(crop, np.unique(inds))
        return torch.from_numpy(cut)
    if exact:
        return _standardise(area_crops_torch(pixels, inds, y, ey, x, ex, size).to(dtype))
    # Windows too large to sum exactly: resize crop by crop, exactly as facenet-pytorch.
    crops = torch.empty((len(y), pixels.shape[1], size, size), dtype=dtype, device=device)
    for k in range(len(y)):
        crop = pixels[inds[k], :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].unsqueeze(0)
        crops[k] = imresample(crop.type(dtype), (size, size))[0]
    return _standardise(crops)


def _pnet_candidates(levels, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net's boxes from every pyramid level, NMS within and across levels, regressed and
    squared: ``(boxes (n, 5), image_inds)``, as facenet-pytorch's first stage ends."""
    boxes_list, inds_list, picks = [], [], []
    offset = 0
    for scale, (reg, probs) in levels:
        boxes_scale, inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold)
        boxes_list.append(boxes_scale)
        inds_list.append(inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], inds_scale, 0.5)
        picks.append(pick + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes_list, dim=0)
    image_inds = torch.cat(inds_list, dim=0)
    scale_picks = torch.cat(picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    return rerec(boxes), image_inds


def _rnet_candidates(boxes, image_inds, out, threshold: float):
    """The boxes R-Net keeps, NMS, regressed and squared, as facenet-pytorch's second stage."""
    out0 = out[0].permute(1, 0)
    score = out[1].permute(1, 0)[1, :]
    ipass = score > threshold
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds = image_inds[ipass]
    mv = out0[:, ipass].permute(1, 0)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
    boxes = bbreg(boxes, mv)
    return rerec(boxes), image_inds


def _onet_faces(boxes, image_inds, out, threshold: float):
    """The faces O-Net keeps, with their landmarks, regressed, NMS ("Min"), as
    facenet-pytorch's third stage: ``(boxes, image_inds, points)``."""
    out0 = out[0].permute(1, 0)
    points = out[1].permute(1, 0)
    score = out[2].permute(1, 0)[1, :]
    ipass = score > threshold
    points = points[:, ipass]
    boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    image_inds = image_inds[ipass]
    mv = out0[:, ipass].permute(1, 0)
    w_i = boxes[:, 2] - boxes[:, 0] + 1
    h_i = boxes[:, 3] - boxes[:, 1] + 1
    points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
    points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
    points = torch.stack((points_x, points_y)).permute(2, 1, 0)
    boxes = bbreg(boxes, mv)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
    return boxes[pick], image_inds[pick], points[pick]


def detect(detector: MTCNN, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's ``MTCNN.detect`` on a (N, H, W, 3) uint8 batch, faster, same result.

    Returns, per image, ``(boxes, points)``: boxes (n, 5) float32 x1, y1, x2, y2, probability
    and landmarks (n, 5, 2), as ``facenet_pytorch.models.utils.detect_face.detect_face``
    computes them, step for step with its own functions, except for the resizes (see the
    module's docstring). Runs under ``torch.inference_mode``. Each stage is labelled
    (``mtcnn.*``) for ``torch.profiler`` (``benchmarks/gpu/detection_trace.py``); outside a
    profiler a label costs about 8 µs (34 a batch at 1080p).
    """
    device = detector.device
    threshold, factor = detector.thresholds, detector.factor
    with torch.inference_mode():
        # No copy unless the array is read-only (PyTorch wants writable memory).
        images = np.require(images, np.uint8, ["C", "W"])
        with record_function("mtcnn.upload"):
            pixels = torch.as_tensor(images, device=device).permute(0, 3, 1, 2)  # uint8 NCHW
        dtype = next(detector.pnet.parameters()).dtype
        with record_function("mtcnn.integral_tables"):
            tables = ([integral_table(img) for img in images] if device.type == "cpu"
                      else None)
        channels_first = inference.runtime_of(detector) != "torch"
        batch_size = len(images)
        h, w = images.shape[1:3]
        m = 12.0 / detector.min_face_size
        minl = min(h, w) * m
        scales = []
        scale_i = m
        while minl >= 12:
            scales.append(scale_i)
            scale_i = scale_i * factor
            minl = minl * factor
        if not scales:  # smaller than P-Net's 12 px window at min_face_size: no face fits
            empty = (np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))
            return [empty for _ in range(batch_size)]

        # First stage: P-Net over the scale pyramid. Every level's P-Net is run before any
        # level's candidates are read: on a GPU, reading them (nonzero, NMS) waits for the
        # device, and the levels' kernels then run back to back instead of between waits.
        # The same operations on the same inputs, so the same results.
        levels = []
        for scale in scales:
            with record_function("mtcnn.pyramid"):
                im_data = _pyramid_level(pixels, tables, int(h * scale + 1),
                                         int(w * scale + 1), dtype, channels_first)
            with record_function("mtcnn.pnet"):
                levels.append((scale, detector.pnet(im_data)))
            del im_data
        with record_function("mtcnn.pnet_candidates"):
            boxes, image_inds = _pnet_candidates(levels, threshold[0])
        del levels

        # Second stage: R-Net on 24 px crops.
        if len(boxes) > 0:
            with record_function("mtcnn.rnet_crops"):
                im_data = _stage_input(pixels, tables, dtype, image_inds, boxes, 24)
            with record_function("mtcnn.rnet"):
                out = fixed_batch_process(im_data, detector.rnet)
            with record_function("mtcnn.rnet_candidates"):
                boxes, image_inds = _rnet_candidates(boxes, image_inds, out, threshold[1])

        # Third stage: O-Net on 48 px crops, landmarks.
        points = torch.zeros(0, 5, 2, device=device)
        if len(boxes) > 0:
            with record_function("mtcnn.onet_crops"):
                im_data = _stage_input(pixels, tables, dtype, image_inds, boxes, 48)
            with record_function("mtcnn.onet"):
                out = fixed_batch_process(im_data, detector.onet)
            with record_function("mtcnn.onet_faces"):
                boxes, image_inds, points = _onet_faces(boxes, image_inds, out, threshold[2])

        with record_function("mtcnn.download"):
            boxes_np, points_np = boxes.cpu().numpy(), points.cpu().numpy()
            inds_np = image_inds.cpu().numpy()
    return [
        (boxes_np[inds_np == i].copy(), points_np[inds_np == i].copy())
        for i in range(batch_size)
    ]
