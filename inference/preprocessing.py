"""The one image preprocessing path, shared by uploads, imports, training, evaluation, the worker and the API.

Two steps:

* :func:`decode_image` turns bytes into a fully decoded RGB ``PIL.Image``: format checked, pixel count checked
  *before* decoding (decompression bombs), truncated files refused, EXIF orientation applied, and every mode
  (greyscale, palette, alpha, CMYK, 16-bit) converted to 8-bit RGB. Errors are :class:`ImageRejected` with a
  message a curator can read.
* :func:`to_model_input` resizes a decoded image to the model's square input and returns float32 pixels in
  [0, 255]; each model normalises inside its own graph, so the same function serves every model version.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

# Formats a curator may upload. Pillow decodes many more; anything else is refused with a clear message.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif"}
ALLOWED_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}

# Never silently accept a cut-off file: a truncated JPEG is an error, not a grey half-image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# We check the pixel count ourselves against our own limit; Pillow's own check must not fire first with a
# less helpful message (its error is still our backstop at twice its limit).
Image.MAX_IMAGE_PIXELS = None

RESAMPLE = Image.Resampling.BILINEAR
EXIF_ORIENTATION = 0x0112


class ImageRejected(ValueError):
    """The file is not an image we can store and classify; ``str(exc)`` is the message for the curator."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = (
            reason  # short machine-readable code: not_image, truncated, too_large, too_many_pixels...
        )


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF-orientation applied, fully loaded
    format: str  # Pillow's format name of the original file, e.g. "JPEG"
    extension: str  # canonical extension for storage, e.g. "jpg"
    width: int
    height: int


def decode_image(
    data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None, draft: int | None = None
) -> DecodedImage:
    """Decode and check an uploaded image. Raises :class:`ImageRejected` with a readable reason.

    ``draft``: when only smaller copies are needed (a thumbnail, the model input), a JPEG may be decoded at 1/2,
    1/4 or 1/8 scale directly by libjpeg, as long as both sides stay at least ``draft`` pixels; much faster for
    large photographs. ``width`` and ``height`` are still the true size of the image; other formats ignore it.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRejected(
            f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.",
            reason="too_large",
        )
    if not data:
        raise ImageRejected("The file is empty.", reason="empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            fmt = image.format or ""
    except Image.UnidentifiedImageError:
        raise ImageRejected(
            "The file is not an image we can read (JPEG, PNG, WebP or TIFF).", reason="not_image"
        ) from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageRejected(f"The image could not be read: {exc}.", reason="corrupt") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(
            f"{fmt or 'This'} images are not accepted; upload a JPEG, PNG, WebP or TIFF.",
            reason="unsupported_format",
        )
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageRejected(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels.",
            reason="too_many_pixels",
        )
    true_size: tuple[int, int] | None = None
    if draft and fmt == "JPEG" and min(width, height) >= 2 * draft:
        try:
            quarter_turn = image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)
        except Exception:  # a damaged EXIF block: exif_transpose below ignores it too
            quarter_turn = False
        true_size = (height, width) if quarter_turn else (width, height)
        image.draft(None, (draft, draft))
    try:
        image.load()
        rgb = to_rgb(ImageOps.exif_transpose(image) or image)
    except OSError as exc:
        message = str(exc)
        if "truncated" in message or "image file is" in message or "broken data stream" in message:
            raise ImageRejected("The image file is truncated or damaged.", reason="truncated") from None
        raise ImageRejected(f"The image could not be decoded: {message}.", reason="corrupt") from None
    except (Image.DecompressionBombError, ValueError, SyntaxError) as exc:
        raise ImageRejected(f"The image could not be decoded: {exc}.", reason="corrupt") from None
    true_width, true_height = true_size or rgb.size
    return DecodedImage(
        image=rgb, format=fmt, extension=ALLOWED_FORMATS[fmt], width=true_width, height=true_height
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB. Transparency is composited on white, as a print would show it."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits by the actual range instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
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
