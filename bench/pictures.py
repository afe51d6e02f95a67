"""Generated pictures for the benchmarks: picture-like enough that decoding and the model cost what a photograph's
would, and reproducible from a seed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def synthetic_picture(seed: int, size: tuple[int, int] = (300, 320)) -> Image.Image:
    """A picture-like image: smooth colour fields, a few shapes and grain (JPEG cost is like a photograph's)."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = rng.uniform(30, 220, size=(1, 1, 3)) + rng.uniform(-90, 90, size=(1, 1, 3)) * x
    base = base + rng.uniform(-90, 90, size=(1, 1, 3)) * y + rng.normal(0, 10, size=(h, w, 3))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        box = (x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image.filter(ImageFilter.GaussianBlur(0.8))


def jpeg_bytes(image: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
