"""Images made by the tests themselves (the suite never needs the real data set)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def make_image(seed: int = 0, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A deterministic, distinct image per seed: smooth colour gradients plus noise, so every seed hashes apart."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = rng.uniform(0, 255, size=(1, 1, 3))
    tilt = rng.uniform(-120, 120, size=(1, 1, 3))
    pixels = base + tilt * x + tilt[..., ::-1] * y + rng.normal(0, 12, size=(h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image if mode == "RGB" else image.convert(mode)


def image_bytes(
    seed: int = 0, size: tuple[int, int] = (64, 48), fmt: str = "JPEG", mode: str = "RGB", **save: object
) -> bytes:
    out = io.BytesIO()
    make_image(seed, size, mode).save(out, format=fmt, **save)
    return out.getvalue()


def truncated_jpeg(seed: int = 0) -> bytes:
    data = image_bytes(seed, size=(200, 160))
    return data[: len(data) // 2]


def decompression_bomb_png() -> bytes:
    """A small file that decodes to 144 megapixels (1-bit pixels compress to almost nothing)."""
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, format="PNG")
    return out.getvalue()
