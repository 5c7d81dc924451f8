"""MTCNN's detection, step for step as facenet-pytorch computes it, without its slow parts.

facenet-pytorch's ``detect_face`` spends most of a CPU's time not in its three networks but in
resizing: an area resize of the whole float frame for every level of the P-Net pyramid, and
one Python iteration, two tensor copies and one kernel call per candidate box (thousands per
1080p frame) for the crops that R-Net and O-Net read. Here both come from one summed-area table
per frame (OpenCV's ``integral``, a few milliseconds at 1080p): an area resize is the mean over
the window ``[floor(i h / s), ceil((i + 1) h / s))`` of each output cell, a window sum is four
look-ups in the integer table, and sums of 8-bit pixels below 2**24 are exact in float32
whatever the order of addition; the mean is then ``sum / kh / kw`` in float32, as PyTorch's
kernels compute it. The pyramid and the crops are therefore equal, bit for bit, to
``interpolate(mode="area")`` (tested on real frames), and so are the detections.

On a GPU the crops are cut by the same arithmetic in PyTorch and the pyramid is PyTorch's own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
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

# Windows of at most this many pixels sum 8-bit values exactly in float32 (255 * n < 2**24),
# which is what makes the table's resizes identical to PyTorch's own area resize.
EXACT_WINDOW_PIXELS = (1 << 24) // 255


def integral_table(image: np.ndarray) -> np.ndarray:
    """The (H + 1, W + 1, C) summed-area table of an (H, W, C) uint8 image.

    int32 holds sums of 8-bit pixels up to 8.4 Mpixel (4K); larger images get float64, which
    holds such integer sums exactly too.
    """
    height, width = image.shape[:2]
    depth = cv2.CV_32S if 255 * height * width < 2**31 else cv2.CV_64F
    table = cv2.integral(np.ascontiguousarray(image), sdepth=depth)
    return table.reshape(height + 1, width + 1, -1)


def _windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive-pooling windows: [floor(i n_in / n_out), ceil((i + 1) n_in / n_out))."""
    cell = np.arange(n_out)
    return cell * n_in // n_out, -(-(cell + 1) * n_in // n_out)


def area_resize(
    table: np.ndarray, out_h: int, out_w: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The whole image of ``table`` area-resized to (out_h, out_w, C) float32, bit for bit
    ``interpolate(mode="area")`` when every window holds at most EXACT_WINDOW_PIXELS pixels;
    written into ``out`` when given (a C-contiguous float32 array of that shape)."""
    r0, r1 = _windows(table.shape[0] - 1, out_h)
    c0, c1 = _windows(table.shape[1] - 1, out_w)
    # Sums over each row window, then over each column window: integers, exact in int32. In
    # place where possible: fewer passes over arrays of megabytes (43 instead of 60 ms for the
    # pyramid of a 1080x1920 frame).
    sums_rows = np.take(table, r1, axis=0)
    sums_rows -= np.take(table, r0, axis=0)
    # np.take along the columns is several times faster than fancy indexing there.
    sums = np.take(sums_rows, c1, axis=1)
    sums -= np.take(sums_rows, c0, axis=1)
    if out is None:
        out = np.empty(sums.shape, np.float32)
    np.copyto(out, sums, casting="unsafe")  # exact: window sums are below 2**24
    # The mean as PyTorch computes it: the sum divided by the height, then by the width.
    out /= (r1 - r0).astype(np.float32)[:, None, None]
    out /= (c1 - c0).astype(np.float32)[None, :, None]
    return out


def area_crops(
    table: np.ndarray, y: np.ndarray, ey: np.ndarray, x: np.ndarray, ex: np.ndarray, size: int
) -> np.ndarray:
    """Rows y-1:ey, columns x-1:ex of the image of ``table``, each area-resized to (size,
    size, C) float32: bit for bit ``interpolate(crop.float(), (size, size), mode="area")`` per
    crop (facenet-pytorch's ``imresample``, channels last), for all crops at once."""
    channels = table.shape[2]
    flat = table.reshape(-1, channels)
    stride = table.shape[1]
    cell = np.arange(size)

    def windows(start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first, length = (start - 1)[:, None], (stop - start + 1)[:, None]
        return first + cell * length // size, first + ((cell + 1) * length + size - 1) // size

    r0, r1 = windows(y, ey)
    c0, c1 = windows(x, ex)
    row0, row1 = (r0 * stride)[:, :, None], (r1 * stride)[:, :, None]
    col0, col1 = c0[:, None, :], c1[:, None, :]
    # np.take gathers rows of a 2-D array several times faster than fancy indexing.
    sums = np.take(flat, row1 + col1, axis=0) - np.take(flat, row0 + col1, axis=0)
    sums -= np.take(flat, row1 + col0, axis=0)
    sums += np.take(flat, row0 + col0, axis=0)
    kh = (r1 - r0).astype(np.float32)[:, :, None, None]
    kw = (c1 - c0).astype(np.float32)[:, None, :, None]
    return sums.astype(np.float32) / kh / kw


def area_crops_torch(
    image: torch.Tensor, y: np.ndarray, ey: np.ndarray, x: np.ndarray, ex: np.ndarray, size: int
) -> torch.Tensor:
    """:func:`area_crops` in PyTorch, on the device of the (C, H, W) uint8 ``image`` (a GPU)."""
    device = image.device
    # The table covers only the part of the image that the crops cover.
    top, left = int(y.min()) - 1, int(x.min()) - 1
    region = image[:, top : int(ey.max()), left : int(ex.max())]
    channels, height, width = region.shape
    dtype = torch.int32 if 255 * height * width < 2**31 else torch.int64
    table = torch.zeros((height + 1, width + 1, channels), dtype=dtype, device=device)
    table[1:, 1:] = region.permute(1, 2, 0).cumsum(0, dtype=dtype).cumsum(1, dtype=dtype)
    cell = torch.arange(size, device=device)

    def windows(start: np.ndarray, stop: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        first = torch.as_tensor(start - 1, device=device)[:, None]
        length = torch.as_tensor(stop - start + 1, device=device)[:, None]
        lo = first + torch.div(cell * length, size, rounding_mode="floor")
        hi = first + torch.div((cell + 1) * length + size - 1, size, rounding_mode="floor")
        return lo, hi

    r0, r1 = windows(y - top, ey - top)
    c0, c1 = windows(x - left, ex - left)
    r0, r1, c0, c1 = r0[:, :, None], r1[:, :, None], c0[:, None, :], c1[:, None, :]
    sums = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]  # (K, s, s, C)
    kh, kw = (r1 - r0)[..., None].float(), (c1 - c0)[..., None].float()
    return (sums.float() / kh / kw).permute(0, 3, 1, 2).contiguous()


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
    return (im - 127.5) * 0.0078125


def _standardise_in_place(array: np.ndarray) -> None:
    """:func:`_standardise` on a float32 array, in place: the same float32 operations."""
    array -= np.float32(127.5)
    array *= np.float32(0.0078125)


def _pyramid_level(
    pixels: torch.Tensor, tables: list[np.ndarray] | None, out_h: int, out_w: int, dtype
) -> torch.Tensor:
    """One P-Net pyramid level of the uint8 NCHW batch, standardised, as facenet-pytorch
    computes it (``imresample`` of the float frames, then ``(x - 127.5) * 0.0078125``)."""
    height, width = pixels.shape[2:4]
    window = (-(-height // out_h) + 1) * (-(-width // out_w) + 1)
    if tables is None or window > EXACT_WINDOW_PIXELS or dtype != torch.float32:
        return _standardise(imresample(pixels.type(dtype), (out_h, out_w)))
    level = np.empty((len(tables), out_h, out_w, pixels.shape[1]), np.float32)

    def resize(i: int) -> None:
        area_resize(tables[i], out_h, out_w, out=level[i])
        _standardise_in_place(level[i])

    _each(resize, range(len(tables)))
    # Channels last, as facenet-pytorch's own pyramid is (its frames are NHWC arrays viewed as
    # NCHW): PyTorch's convolutions sum in another order for another memory layout, so the
    # layout is part of giving P-Net exactly the input it gets in facenet-pytorch.
    return torch.from_numpy(level).permute(0, 3, 1, 2)


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
        # All crops gathered channels last into one array, standardised in place and made NCHW
        # by one copy.
        cut = np.empty((len(y), size, size, pixels.shape[1]), np.float32)

        def crop(n: int) -> None:
            sel = np.flatnonzero(inds == n)
            cut[sel] = area_crops(tables[n], y[sel], ey[sel], x[sel], ex[sel], size)

        _each(crop, np.unique(inds))
        _standardise_in_place(cut)
        return torch.from_numpy(np.ascontiguousarray(cut.transpose(0, 3, 1, 2)))
    crops = torch.empty((len(y), pixels.shape[1], size, size), dtype=dtype, device=device)
    if not exact:
        # Windows too large to sum exactly: resize crop by crop, exactly as facenet-pytorch.
        for k in range(len(y)):
            crop = pixels[inds[k], :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].unsqueeze(0)
            crops[k] = imresample(crop.type(dtype), (size, size))[0]
    else:
        for n in np.unique(inds):
            sel = np.flatnonzero(inds == n)
            cut = area_crops_torch(pixels[int(n)], y[sel], ey[sel], x[sel], ex[sel], size)
            crops[torch.as_tensor(sel, device=device)] = cut.to(dtype)
    return _standardise(crops)


def detect(detector: MTCNN, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's ``MTCNN.detect`` on a (N, H, W, 3) uint8 batch, faster, same result.

    Returns, per image, ``(boxes, points)``: boxes (n, 5) float32 x1, y1, x2, y2, probability
    and landmarks (n, 5, 2), as ``facenet_pytorch.models.utils.detect_face.detect_face``
    computes them, step for step with its own functions, except for the resizes (see the
    module's docstring). Runs under ``torch.inference_mode``.
    """
    device = detector.device
    threshold, factor = detector.thresholds, detector.factor
    with torch.inference_mode():
        # No copy unless the array is read-only (PyTorch wants writable memory).
        images = np.require(images, np.uint8, ["C", "W"])
        pixels = torch.as_tensor(images, device=device).permute(0, 3, 1, 2)  # uint8 NCHW view
        dtype = next(detector.pnet.parameters()).dtype
        tables = [integral_table(img) for img in images] if device.type == "cpu" else None
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

        # First stage: P-Net over the scale pyramid.
        boxes_list, inds_list, picks = [], [], []
        offset = 0
        for scale in scales:
            im_data = _pyramid_level(pixels, tables, int(h * scale + 1), int(w * scale + 1), dtype)
            reg, probs = detector.pnet(im_data)
            boxes_scale, inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
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
        boxes = rerec(boxes)

        # Second stage: R-Net on 24 px crops.
        if len(boxes) > 0:
            im_data = _stage_input(pixels, tables, dtype, image_inds, boxes, 24)
            out = fixed_batch_process(im_data, detector.rnet)
            out0 = out[0].permute(1, 0)
            score = out[1].permute(1, 0)[1, :]
            ipass = score > threshold[1]
            boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
            image_inds = image_inds[ipass]
            mv = out0[:, ipass].permute(1, 0)
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
            boxes = bbreg(boxes, mv)
            boxes = rerec(boxes)

        # Third stage: O-Net on 48 px crops, landmarks.
        points = torch.zeros(0, 5, 2, device=device)
        if len(boxes) > 0:
            im_data = _stage_input(pixels, tables, dtype, image_inds, boxes, 48)
            out = fixed_batch_process(im_data, detector.onet)
            out0 = out[0].permute(1, 0)
            points = out[1].permute(1, 0)
            score = out[2].permute(1, 0)[1, :]
            ipass = score > threshold[2]
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
            boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

        boxes_np, points_np = boxes.cpu().numpy(), points.cpu().numpy()
        inds_np = image_inds.cpu().numpy()
    return [
        (boxes_np[inds_np == i].copy(), points_np[inds_np == i].copy())
        for i in range(batch_size)
    ]
