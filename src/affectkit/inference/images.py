"""Decode untrusted image bytes into RGB uint8 arrays, refusing empty, oversized, truncated and non-image input.

The same decoder serves the command line and the HTTP server, so a photo gets the same prediction through both.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from affectkit.errors import AffectkitError, one_line
from affectkit.imaging import HEIF_MISSING, register_photo_decoders

# Formats Pillow decodes in-process (its own code, or a library linked in: libwebp, libavif, libheif); EPS/PDF-like
# formats would hand the bytes to external programs.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "PPM", "AVIF", "HEIF")
UPLOAD_MAX_PIXELS = 40_000_000  # the server decodes what strangers send
# A file's limit: one's own photos, up to a 108-MP phone's, within Pillow's own bomb limit (2 x its MAX_IMAGE_PIXELS).
FILE_MAX_PIXELS = 150_000_000

ImageProblem = Literal["empty", "not_image", "too_large", "corrupt"]


class ImageError(AffectkitError):
    """A file that cannot be used as an image; ``kind`` lets the server choose the HTTP status."""

    def __init__(self, kind: ImageProblem, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.kind = kind
        self.reason = reason


def decode_image(data: bytes, name: str = "image", max_pixels: int = UPLOAD_MAX_PIXELS) -> np.ndarray:
    """Bytes -> RGB uint8 ``H x W x 3`` with EXIF orientation applied.

    The pixel count comes from the header before any pixel data is decoded, which stops decompression bombs.
    """
    if not data:
        raise ImageError("empty", name, "the file is empty.")
    heif = register_photo_decoders()
    formats = ALLOWED_FORMATS if heif else tuple(f for f in ALLOWED_FORMATS if f != "HEIF")
    try:
        with warnings.catch_warnings():  # Pillow warns from half its limit on; the explicit check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", name, f"too large to decode safely ({exc}).") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError("not_image", name, f"not an image (supported: {', '.join(formats)})"
                         + ("" if heif else f"; {HEIF_MISSING}") + ".") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            pixels = f"{width}x{height} = {width * height:,} pixels"
            raise ImageError("too_large", name, f"{pixels} exceeds the limit of {max_pixels:,}.")
        if width == 0 or height == 0:
            raise ImageError("corrupt", name, f"the image header declares a {width}x{height} image.")
        try:
            image.load()  # Pillow raises here on truncated data; cv2.imdecode would silently grey-fill it
            rgb = rgb_image(ImageOps.exif_transpose(image))
        except Image.DecompressionBombError:
            raise ImageError("too_large", name, "image exceeds the decompression-bomb limit.") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError("corrupt", name, f"truncated or corrupt image data ({one_line(exc)}).") from None
    return np.asarray(rgb, dtype=np.uint8)


def rgb_image(image: Image.Image) -> Image.Image:
    """A Pillow image in RGB. Pillow's own conversion clips 16-bit grey (PNG, TIFF, PGM) at 255, which whitens the
    face; this keeps the top 8 bits, as OpenCV does when it reads the same file into the training cache."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        grey = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | Path, max_pixels: int = FILE_MAX_PIXELS) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError("corrupt", str(path), f"cannot be read ({exc.strerror or exc}).") from None
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 ``H x W x 3`` array from what callers hold: grey (``H x W``, ``H x W x 1``), RGB or RGBA; uint8,
    16-bit (its top 8 bits, as files of that depth are read), other integers within 0..255 (FER2013's pixels parsed
    as numbers), or floats in [0, 1] (scikit-image's and torchvision's convention)."""
    image = _as_uint8(np.asarray(image))
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    if image.ndim == 3 and image.shape[0] in (1, 3, 4):
        raise AffectkitError(f"Expected an H x W x 3 RGB image array, got shape {image.shape}: channels first, as "
                             "PyTorch holds images; give image.transpose(1, 2, 0).")
    raise AffectkitError(f"Expected an H x W x 3 RGB image array, got shape {image.shape}.")


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.size == 0:
        raise AffectkitError(f"Expected an image array, got an empty one (shape {image.shape}).")
    low, high = float(image.min()), float(image.max())
    if np.issubdtype(image.dtype, np.integer) and 0 <= low and high <= 255:
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) and 0 <= low and high <= 1:  # NaN fails both comparisons
        return np.round(image * 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) and 0 <= low and high <= 255:
        hint = "values of 0..255 as floats: give image.astype(np.uint8), or image / 255"
    elif np.issubdtype(image.dtype, np.floating) and low < 0 and math.isfinite(low) and math.isfinite(high):
        hint = "negative values, as a network's normalised input has: give the image before normalisation"
    else:
        hint = "give uint8 values 0..255, or floats in [0, 1]"
    raise AffectkitError(f"Expected a uint8 image array or floats in [0, 1], got {image.dtype} values from {low:g} "
                         f"to {high:g} ({hint}).")
