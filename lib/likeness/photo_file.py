"""A still photo read from disk: upright RGB uint8 pixels, with the guards a forensic tool
needs against photos that are too large, too small or not images at all.

Torch-free, so that the figures and the survey read photos without loading the networks.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from likeness.errors import ImageError

# Photos above this many pixels are refused before they are decoded: a decompression bomb (a
# small PNG that decodes to gigabytes) or a scan far beyond what a face needs.
MAX_PHOTO_PIXELS = 300_000_000
# Larger photos are reduced (aspect kept) to this longest side while they are decoded: a face
# in them is still hundreds of pixels wide, and MTCNN's pyramid of a 16000 px photo would
# take many GiB.
MAX_PHOTO_SIDE = 8192
# A photo whose shorter side is below this cannot hold a face MTCNN finds (its smallest
# window is 12 px at min_face_size 20); refused with a message instead of reaching MTCNN.
MIN_PHOTO_SIDE = 20
# PIL refuses to open images over twice its MAX_IMAGE_PIXELS (and warns over it): set so that
# it refuses exactly what is over MAX_PHOTO_PIXELS (179 M pixels by default, which would refuse
# a 16000 x 12000 photo that is safely reduced here).
Image.MAX_IMAGE_PIXELS = MAX_PHOTO_PIXELS // 2


def read_rgb(path: Path) -> np.ndarray:
    """Read a still photo as upright RGB uint8, whatever its mode.

    EXIF orientation is applied; CMYK and palette images are converted; transparency is
    composited on white (a transparent background must not read as black); 16-bit images are
    scaled to 8 bits rather than clipped. Photos over MAX_PHOTO_PIXELS or under MIN_PHOTO_SIDE
    are refused; photos over MAX_PHOTO_SIDE are reduced while decoding. Raises ImageError
    naming the file.
    """
    def too_large(pixels: str) -> ImageError:
        return ImageError(
            f"{path}: {pixels} pixels is more than the {MAX_PHOTO_PIXELS:,} a photo may have (a "
            "decompression bomb or an over-large scan); use a smaller copy of the photo"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PHOTO_PIXELS:
                    raise too_large(f"{width}x{height}")
                if min(width, height) < MIN_PHOTO_SIDE:
                    raise ImageError(
                        f"{path}: {width}x{height} pixels is too small to hold a usable face "
                        f"(at least {MIN_PHOTO_SIDE} px on each side); use a larger photo"
                    )
                if max(width, height) > MAX_PHOTO_SIDE:
                    # JPEG decodes straight at 1/2, 1/4 or 1/8 scale; then an exact reduction.
                    target = (MAX_PHOTO_SIDE * width // max(width, height),
                              MAX_PHOTO_SIDE * height // max(width, height))
                    img.draft(img.mode, target)
                    img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
                img = ImageOps.exif_transpose(img)
                img.load()
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: file not found") from exc
    except Image.DecompressionBombError as exc:  # PIL's check, made before ours can run
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise too_large(f"{int(found.group(1)):,}" if found else "too many") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    except MemoryError as exc:
        raise ImageError(f"{path}: too large to decode in the memory available") from exc
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        grey = np.clip(np.round(arr * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255)
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
