"""The one image preprocessing path, shared by uploads, imports, training, evaluation, the worker and the API.

Two steps:

* :func:`decode_image` turns bytes into a fully decoded RGB ``PIL.Image``: format checked, pixel count checked
  *before* decoding (decompression bombs; Pillow's own check stays on as a backstop), every pixel forced to decode
  and files whose data ends early refused (including a PNG whose compressed stream ends cleanly after two rows of a
  declared 7000×7000), the pixels reduced to a working size right after decoding (``Image.draft`` for JPEG, an
  integer box reduction for the rest), 16-bit samples mapped to 8 bits by their full range, EXIF orientation
  applied, and every mode (greyscale, palette, alpha, CMYK) converted to 8-bit RGB. Errors are
  :class:`ImageRejected` with a message a curator can read.
* :func:`to_model_input` resizes a decoded image to the model's square input and returns float32 pixels in
  [0, 255]; each model normalises inside its own graph, so the same function serves every model version.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image, ImageFile

# Formats a curator may upload. Pillow decodes many more; anything else is refused with a clear message.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif"}
ALLOWED_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}

# Never silently accept a cut-off file: a truncated JPEG is an error, not a grey half-image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# The pixel limit when neither the caller nor the settings give one (ARTSITE_MAX_IMAGE_PIXELS). Pillow's own bomb
# check stays on in every process that imports this module (the worker, re-embedding, training): it warns above
# this and raises above twice this; inference/apps.py sets it from the settings. Our check fires first, with a
# clearer message.
DEFAULT_MAX_PIXELS = 60_000_000
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
# Decoded pixels are reduced right away until the shorter side is at most twice this (never below it): everything
# downstream (thumbnail 320 px, model input 224-240 px, display copy, explanation overlay) needs no more, and a
# 60-megapixel upload then holds a few megabytes instead of hundreds while it is converted and resized.
WORKING_SIZE = 1024

RESAMPLE = Image.Resampling.BILINEAR
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose does).
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageRejected(ValueError):
    """The file is not an image we can store and classify; ``str(exc)`` is the message for the curator."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = (
            reason  # short machine-readable code: not_image, truncated, too_large, too_many_pixels...
        )


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF-orientation applied, fully loaded, reduced to the working size
    format: str  # Pillow's format name of the original file, e.g. "JPEG"
    extension: str  # canonical extension for storage, e.g. "jpg"
    width: int  # the true size of the image as shown (orientation applied), not of the reduced pixels
    height: int


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: the caller's, else ``ARTSITE_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.
    Never unlimited."""
    if max_pixels:
        return max_pixels
    configured = getattr(settings, "ARTSITE_MAX_IMAGE_PIXELS", None) if settings.configured else None
    return int(configured or DEFAULT_MAX_PIXELS)


def _too_many_pixels(width: int, height: int, limit: int) -> ImageRejected:
    return ImageRejected(
        f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
        f"the limit is {limit / 1e6:.0f} megapixels.",
        reason="too_many_pixels",
    )


def _open(data: bytes, limit: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb *warning*: our own check below says it better
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Above twice Pillow's limit it refuses before we see the size.
        raise ImageRejected(
            f"The image has far more pixels than the limit of {limit / 1e6:.0f} megapixels.",
            reason="too_many_pixels",
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected(
            "The file is not an image we can read (JPEG, PNG, WebP or TIFF).", reason="not_image"
        ) from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageRejected(f"The image could not be read: {exc}.", reason="corrupt") from None


def decode_image(
    data: bytes,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    draft: int | None = None,
    working_size: int = WORKING_SIZE,
) -> DecodedImage:
    """Decode and check an image. Raises :class:`ImageRejected` with a readable reason.

    ``max_pixels``: the pixel limit (default :func:`pixel_limit`, never none). ``draft``: when only smaller copies
    are needed (a thumbnail, the model input), the pixels are reduced until both sides are at least ``draft``
    pixels (a JPEG is decoded at 1/2, 1/4 or 1/8 scale directly by libjpeg, much faster for large photographs);
    otherwise down to ``working_size``. ``width`` and ``height`` are still the true size of the image.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRejected(
            f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.",
            reason="too_large",
        )
    if not data:
        raise ImageRejected("The file is empty.", reason="empty")
    limit = pixel_limit(max_pixels)
    image = _open(data, limit)
    fmt = image.format or ""
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(
            f"{fmt or 'This'} images are not accepted; upload a JPEG, PNG, WebP or TIFF.",
            reason="unsupported_format",
        )
    width, height = image.size
    if width * height > limit:
        raise _too_many_pixels(width, height, limit)
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # a damaged EXIF block: the image is shown as stored
        orientation = None
    transpose = ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    quarter_turn = orientation in (5, 6, 7, 8)
    side = draft or working_size
    if fmt == "JPEG" and min(width, height) >= 2 * side:
        image.draft(None, (side, side))
    pixels = _load(image, data=data, fmt=fmt)
    if pixels.mode in ("1", "P"):  # no box reduction for these: to RGB first
        pixels = to_rgb(pixels)
    factor = min(pixels.size) // side
    if factor >= 2:
        pixels = pixels.reduce(factor)
    rgb = to_rgb(pixels)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    true_width, true_height = (height, width) if quarter_turn else (width, height)
    return DecodedImage(
        image=rgb, format=fmt, extension=ALLOWED_FORMATS[fmt], width=true_width, height=true_height
    )


def _load(image: Image.Image, *, data: bytes, fmt: str) -> Image.Image:
    """Decode every pixel (a file whose data ends early is refused); samples deeper than 8 bits become 8-bit
    greyscale at once, before anything else copies them."""
    try:
        image.load()  # forced here, inside the check: Image.open only reads the header
        if fmt == "PNG" and not png_data_complete(data):
            raise OSError("image file is truncated (the compressed data ends before the last row)")
        if image.mode in SIXTEEN_BIT_MODES:
            return _sixteen_to_eight(image)
        if image.mode in ("I", "F"):
            return _stretch_to_eight(image)
        return image
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"The image has too many pixels: {exc}.", reason="too_many_pixels") from None
    except OSError as exc:
        message = str(exc)
        if "truncated" in message or "image file is" in message or "broken data stream" in message:
            raise ImageRejected("The image file is truncated or damaged.", reason="truncated") from None
        raise ImageRejected(f"The image could not be decoded: {message}.", reason="corrupt") from None
    except (ValueError, SyntaxError, zlib.error) as exc:
        raise ImageRejected(f"The image could not be decoded: {exc}.", reason="corrupt") from None


# Samples per pixel of each PNG colour type, and the Adam7 passes (x0, y0, dx, dy).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_data_complete(data: bytes) -> bool:
    """Whether a PNG's image data holds every row its header declares.

    Pillow's zlib decoder stops without an error when the compressed stream *ends cleanly* early, leaving the
    missing rows black (LOAD_TRUNCATED_IMAGES does not cover it), so the declared size is checked here: the IDAT
    stream is inflated once more, counting bytes without keeping them.
    """
    width, height, depth, colour, interlace = struct.unpack(">IIBBxxB", data[16:29])
    bits = _PNG_CHANNELS.get(colour, 1) * depth

    def size(w: int, h: int) -> int:
        return 0 if w <= 0 or h <= 0 else h * (1 + math.ceil(w * bits / 8))

    if interlace:
        expected = sum(
            size(math.ceil((width - x0) / dx), math.ceil((height - y0) / dy)) for x0, y0, dx, dy in _ADAM7
        )
    else:
        expected = size(width, height)
    inflater = zlib.decompressobj()
    produced, position = 0, 8
    while position + 8 <= len(data) and produced < expected:
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"IDAT":
            chunk = data[position + 8 : position + 8 + length]
            while chunk and produced < expected:
                produced += len(inflater.decompress(chunk, 1 << 20))
                chunk = inflater.unconsumed_tail
        elif kind == b"IEND":
            break
        position += 12 + length
    return produced >= expected


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """16-bit greyscale to 8 bits by the full 16-bit range (0 -> 0, 65535 -> 255): the top byte of each sample, so
    a mid-grey stays mid-grey. In NumPy's uint16, shifted in place, not in float64: a 60-megapixel image costs one
    more copy of its samples (120 MB), not gigabytes."""
    # A writable copy: np.asarray's view of a Pillow image is read-only.
    samples = np.array(image, dtype=np.uint16)
    np.right_shift(samples, 8, out=samples)
    return Image.fromarray(samples.astype(np.uint8), mode="L")


def _stretch_to_eight(image: Image.Image) -> Image.Image:
    """32-bit integer or float greyscale: integers within 16 bits as 16-bit samples; anything else scaled by its
    actual range (there is no standard white for such files)."""
    array = np.asarray(image, dtype=np.float32)
    low, high = float(array.min()), float(array.max())
    if image.mode == "I" and low >= 0 and high <= 65535:
        return Image.fromarray((array.astype(np.uint16) >> 8).astype(np.uint8), mode="L")
    if image.mode == "F" and low >= 0 and high <= 1:
        return Image.fromarray(np.round(array * 255).astype(np.uint8), mode="L")
    scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB. Transparency is composited on white, as a print would show it."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        return _sixteen_to_eight(image).convert("RGB")
    if image.mode in ("I", "F"):
        return _stretch_to_eight(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "L" and "transparency" in image.info:
        return to_rgb(image.convert("LA"))
    return image.convert("RGB")


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """The model's input for one decoded RGB image: ``(size, size, 3)`` float32 pixels in [0, 255].

    The whole image is resized to the square (no crop), so a sculpture's plinth or a drawing's margin is never cut
    away; the models are trained on exactly this view.
    """
    if image.mode != "RGB":
        image = to_rgb(image)
    resized = image.resize((size, size), RESAMPLE, reducing_gap=3.0)
    return np.asarray(resized, dtype=np.float32)
