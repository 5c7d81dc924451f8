"""The area resize of PyTorch's ``interpolate(mode="area")``, bit for bit, from summed-area tables.

facenet-pytorch's MTCNN area-resizes the whole float frame for every level of P-Net's pyramid,
and every candidate box for R-Net and O-Net, one kernel call per box. Here both come from one
summed-area table per frame (OpenCV's ``integral``, a few milliseconds at 1080p). An area resize
is the mean over the window ``[floor(i h / s), ceil((i + 1) h / s))`` of each output cell
(PyTorch's adaptive pooling), a window sum is four look-ups in the integer table, and sums of
8-bit pixels below 2**24 are exact in float32 whatever the order of addition; the mean is then
``sum / kh / kw`` in float32, as PyTorch's kernels compute it. So the results equal PyTorch's,
bit for bit (tested on real frames), whenever a window holds at most
:data:`EXACT_WINDOW_PIXELS` pixels; callers fall back to PyTorch otherwise.

The CPU's resizes are compiled loops (numba, no fast-math: IEEE float32 division and rounding,
as in NumPy): the pyramid 1.7x faster than the same arithmetic in NumPy passes over megabyte
arrays, written in any layout, so a pyramid level reaches P-Net without a transposing copy.
numba is imported and the loops compiled (or loaded from numba's cache) on first use only: a
GPU, which resizes in PyTorch, never needs them.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

# Windows of at most this many pixels sum 8-bit values exactly in float32 (255 * n < 2**24),
# which is what makes the table's resizes identical to PyTorch's own area resize.
EXACT_WINDOW_PIXELS = (1 << 24) // 255

# MTCNN's standardisation of pixels, (x - 127.5) * 0.0078125, fused into the resize.
STANDARD_OFFSET = np.float32(127.5)
STANDARD_SCALE = np.float32(0.0078125)


def integral_table(image: np.ndarray) -> np.ndarray:
    """The (H + 1, W + 1, C) summed-area table of an (H, W, C) uint8 image.

    int32 holds sums of 8-bit pixels up to 8.4 Mpixel (4K); larger images get float64, which
    holds such integer sums exactly too.
    """
    height, width = image.shape[:2]
    depth = cv2.CV_32S if 255 * height * width < 2**31 else cv2.CV_64F
    table = cv2.integral(np.ascontiguousarray(image), sdepth=depth)
    return table.reshape(height + 1, width + 1, -1)


def windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive-pooling windows: [floor(i n_in / n_out), ceil((i + 1) n_in / n_out))."""
    cell = np.arange(n_out)
    return cell * n_in // n_out, -(-(cell + 1) * n_in // n_out)


def largest_window(n_in: int, n_out: int) -> int:
    """The most input cells one of :func:`windows`' windows covers (along one axis)."""
    return -(-n_in // n_out) + 1


def _resize_planes(table, r0, r1, c0, c1, standardise, out):  # pragma: no cover - compiled
    """out[c, i, j] = the mean of table's image over rows [r0[i], r1[i]) and columns
    [c0[j], c1[j]), in float32 as PyTorch computes it; standardised when asked."""
    channels, out_h, out_w = out.shape
    width = table.shape[1]
    kw = (c1 - c0).astype(np.float32)
    rows = np.empty((channels, width), table.dtype)
    for i in range(out_h):
        top, bottom = r0[i], r1[i]
        kh = np.float32(bottom - top)
        for c in range(channels):
            for q in range(width):
                rows[c, q] = table[bottom, q, c] - table[top, q, c]
        for c in range(channels):
            row, plane_row = rows[c], out[c, i]
            for j in range(out_w):
                # Exact integer sum, then float32 division by the height, then by the width.
                mean = np.float32(row[c1[j]] - row[c0[j]]) / kh / kw[j]
                if standardise:
                    mean = (mean - STANDARD_OFFSET) * STANDARD_SCALE
                plane_row[j] = mean


@functools.cache
def _compiled(loop):
    """``loop`` compiled by numba (without the GIL, cached on disk by numba)."""
    import numba

    return numba.njit(nogil=True, cache=True)(loop)


def area_resize(
    table: np.ndarray,
    out_h: int,
    out_w: int,
    out: np.ndarray | None = None,
    *,
    standardise: bool = False,
) -> np.ndarray:
    """The whole image of ``table`` area-resized to (out_h, out_w, C) float32: bit for bit
    ``interpolate(mode="area")`` when every window holds at most EXACT_WINDOW_PIXELS pixels.

    Written into ``out`` when given: any float32 array of that shape, a strided view too (the
    (H, W, C) view of a (C, H, W) plane block gives channel-first output without a copy).
    ``standardise`` applies MTCNN's ``(x - 127.5) * 0.0078125`` in float32 after the mean.
    """
    r0, r1 = windows(table.shape[0] - 1, out_h)
    c0, c1 = windows(table.shape[1] - 1, out_w)
    if out is None:
        out = np.empty((out_h, out_w, table.shape[2]), np.float32)
    _compiled(_resize_planes)(table, r0, r1, c0, c1, standardise, out.transpose(2, 0, 1))
    return out


def _crop_planes(table, y, ey, x, ex, standardise, out):  # pragma: no cover - compiled
    """out[k] = rows y[k]-1:ey[k], columns x[k]-1:ex[k] of table's image, area-resized to
    out's (C, size, size) planes in float32 as PyTorch computes it; standardised when asked."""
    channels, size = out.shape[1], out.shape[2]
    for k in range(len(y)):
        top, height = y[k] - 1, ey[k] - y[k] + 1
        left, width = x[k] - 1, ex[k] - x[k] + 1
        for i in range(size):
            r0 = top + i * height // size
            r1 = top + ((i + 1) * height + size - 1) // size
            kh = np.float32(r1 - r0)
            for j in range(size):
                c0 = left + j * width // size
                c1 = left + ((j + 1) * width + size - 1) // size
                kw = np.float32(c1 - c0)
                for c in range(channels):
                    total = table[r1, c1, c] - table[r0, c1, c]
                    total += table[r0, c0, c] - table[r1, c0, c]
                    mean = np.float32(total) / kh / kw
                    if standardise:
                        mean = (mean - STANDARD_OFFSET) * STANDARD_SCALE
                    out[k, c, i, j] = mean


def area_crops(
    table: np.ndarray,
    y: np.ndarray,
    ey: np.ndarray,
    x: np.ndarray,
    ex: np.ndarray,
    size: int,
    *,
    standardise: bool = False,
) -> np.ndarray:
    """Rows y-1:ey, columns x-1:ex of the image of ``table`` (1-based, inclusive, as
    facenet-pytorch's ``pad`` gives them), each area-resized to (C, size, size) float32: bit
    for bit ``interpolate(crop.float(), (size, size), mode="area")`` per crop (facenet-pytorch's
    ``imresample``), for all crops at once; (K, C, size, size). ``standardise`` as in
    :func:`area_resize`."""
    out = np.empty((len(y), table.shape[2], size, size), np.float32)
    as_index = [np.ascontiguousarray(v, np.int64) for v in (y, ey, x, ex)]
    _compiled(_crop_planes)(table, *as_index, standardise, out)
    return out


def area_crops_torch(
    images: torch.Tensor,
    inds: np.ndarray,
    y: np.ndarray,
    ey: np.ndarray,
    x: np.ndarray,
    ex: np.ndarray,
    size: int,
) -> torch.Tensor:
    """:func:`area_crops` in PyTorch on the device of the (N, C, H, W) uint8 ``images`` (a GPU),
    crop k cut from image ``inds[k]``: all the batch's crops in one pass, with no step per
    image. (K, C, size, size) float32, bit for bit as :func:`area_crops` computes them."""
    device = images.device
    # One table per image that has crops, over the part of the images the crops cover.
    used, slot = np.unique(inds, return_inverse=True)
    top, left = int(y.min()) - 1, int(x.min()) - 1
    region = images[torch.as_tensor(used, device=device), :, top : int(ey.max()),
                    left : int(ex.max())]
    n, channels, height, width = region.shape
    dtype = torch.int32 if 255 * height * width < 2**31 else torch.int64
    table = torch.zeros((n, height + 1, width + 1, channels), dtype=dtype, device=device)
    table[:, 1:, 1:] = region.permute(0, 2, 3, 1).cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    # The crops' coordinates in one host-to-device copy: image slot, y, ey, x, ex.
    coords = torch.as_tensor(np.stack([slot, y - top, ey - top, x - left, ex - left]),
                             dtype=torch.int64, device=device)
    cell = torch.arange(size, device=device)

    def crop_windows(start: torch.Tensor, stop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, length = (start - 1)[:, None], (stop - start + 1)[:, None]
        lo = first + torch.div(cell * length, size, rounding_mode="floor")
        hi = first + torch.div((cell + 1) * length + size - 1, size, rounding_mode="floor")
        return lo, hi

    r0, r1 = crop_windows(coords[1], coords[2])
    c0, c1 = crop_windows(coords[3], coords[4])
    f = coords[0][:, None, None]
    r0, r1, c0, c1 = r0[:, :, None], r1[:, :, None], c0[:, None, :], c1[:, None, :]
    sums = table[f, r1, c1] - table[f, r0, c1] - table[f, r1, c0] + table[f, r0, c0]  # (K,s,s,C)
    kh, kw = (r1 - r0)[..., None].float(), (c1 - c0)[..., None].float()
    return (sums.float() / kh / kw).permute(0, 3, 1, 2).contiguous()
