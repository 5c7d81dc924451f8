"""Orientation: how a video frame is turned and mirrored for display, and turning it upright.

Phones store portrait video as landscape pictures with a display matrix saying how to show
them. :func:`display_transform` reads that matrix as a signed permutation of the axes,
:func:`upright` applies it to a decoded image (so faces are upright for detection), and
:func:`rotation_of` says it in the words a probe records (clockwise degrees, mirrored).
"""

from __future__ import annotations

import math

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType


def display_transform(frame: av.VideoFrame) -> tuple[bool, int, int] | None:
    """Read the frame's display matrix as (swap axes, sign of new x, sign of new y).

    FFmpeg's display matrix maps a stored pixel (x, y) to its displayed position
    ``x' = a*x + c*y``, ``y' = b*x + d*y`` (plus a translation), with ``a, b, c, d`` the
    entries 0, 1, 3, 4 in 16.16 fixed point. For turns by quarter turns and mirrors this is a
    signed permutation; other angles are snapped to the nearest quarter turn. None: no matrix.
    The result is what the ffmpeg command line's autorotation does for quarter turns (its
    transpose/hflip/vflip choice reads the same entries); OpenCV agrees for plain turns.
    """
    try:
        side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    except ValueError:
        # PyAV cannot name some kinds of side data (the EXIF that JPEG frames of Motion-JPEG
        # carry: '31 is not a valid Type'); the turn it reads from the matrix itself still
        # holds, only a mirroring would be lost.
        return _TURNS.get(round(-frame.rotation / 90) * 90 % 360)
    if side_data is None:
        return None
    m = np.frombuffer(bytes(side_data), dtype=np.int32)
    a, b, c, d = (int(v) for v in (m[0], m[1], m[3], m[4]))
    if abs(a) + abs(d) >= abs(b) + abs(c):
        transform = (False, 1 if a >= 0 else -1, 1 if d >= 0 else -1)
    else:
        transform = (True, 1 if c >= 0 else -1, 1 if b >= 0 else -1)
    return None if transform == (False, 1, 1) else transform


# The transform that displays a picture turned clockwise by 0/90/180/270 degrees (the
# inverse of rotation_of for unmirrored pictures).
_TURNS: dict[int, tuple[bool, int, int] | None] = {
    0: None, 90: (True, -1, 1), 180: (False, -1, -1), 270: (True, 1, -1)
}


def upright(image: np.ndarray, transform: tuple[bool, int, int] | None) -> np.ndarray:
    """Apply a display transform from :func:`display_transform` to an (H, W, 3) image."""
    if transform is None:
        return image
    swap, sign_x, sign_y = transform
    if swap:
        image = image.transpose(1, 0, 2)
    if sign_x < 0:
        image = image[:, ::-1]
    if sign_y < 0:
        image = image[::-1]
    return image


def rotation_of(transform: tuple[bool, int, int] | None) -> tuple[int, bool]:
    """(clockwise degrees to display upright, whether the picture is also mirrored).

    A mirrored display is read as: mirror left-right first, then turn clockwise.
    """
    if transform is None:
        return 0, False
    # Where the stored picture's x axis (1, 0) and y axis (0, 1) point on the display.
    swap, sign_x, sign_y = transform
    x_axis = (0, sign_y) if swap else (sign_x, 0)
    y_axis = (sign_x, 0) if swap else (0, sign_y)
    mirrored = x_axis[0] * y_axis[1] - x_axis[1] * y_axis[0] < 0
    # A left-right mirror leaves the y axis alone, so the turn is where the y axis went.
    # Screen coordinates have y downwards, so atan2(y, x) grows clockwise.
    degrees = round(math.degrees(math.atan2(y_axis[1], y_axis[0]))) - 90
    return degrees % 360, mirrored
