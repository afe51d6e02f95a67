"""The one decoding path, pixel by pixel: every expected value is computed here from the colour the test painted,
never taken from the code under test."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from inference.preprocessing import WORKING_SIZE, ImageRejected, decode_image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def pixel(decoded_image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(decoded_image)[xy[1], xy[0]])


def close(got: tuple[int, ...], want: tuple[float, ...], tolerance: float = 1.0) -> bool:
    return all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True))


RED, BLUE = (220, 20, 30), (10, 40, 230)


def two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("orientation", "size", "top_left", "bottom_right"),
    [
        (1, (40, 20), RED, BLUE),  # as stored
        (3, (40, 20), BLUE, RED),  # turned 180°: the right half comes to the left
        # 6: the camera was turned 90° clockwise; upright, the stored left edge is at the top.
        (6, (20, 40), RED, BLUE),
        # 8: turned the other way; the stored right edge is at the top.
        (8, (20, 40), BLUE, RED),
    ],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_honoured(orientation, size, top_left, bottom_right, fmt):
    image = two_halves()
    exif = image.getexif()
    exif[0x0112] = orientation
    data = encode(image, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))

    decoded = decode_image(data)

    assert decoded.image.size == size and (decoded.width, decoded.height) == size
    tolerance = 1 if fmt == "PNG" else 12  # JPEG is lossy; the two colours are far apart
    assert close(pixel(decoded.image, (2, 2)), top_left, tolerance)
    assert close(pixel(decoded.image, (size[0] - 3, size[1] - 3)), bottom_right, tolerance)


def test_alpha_is_composited_onto_white():
    colour, alpha = (200, 100, 0), 128
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:, :4] = (*colour, alpha)  # half transparent
    pixels[:, 4:] = (*colour, 0)  # fully transparent
    decoded = decode_image(encode(Image.fromarray(pixels, "RGBA")))

    a = alpha / 255
    expected = tuple(a * c + (1 - a) * 255 for c in colour)  # "over" onto white
    assert close(pixel(decoded.image, (1, 1)), expected)
    assert pixel(decoded.image, (6, 6)) == (255, 255, 255)


def test_greyscale_with_alpha_is_composited_onto_white():
    pixels = np.zeros((4, 4, 2), np.uint8)
    pixels[...] = (0, 51)  # black at 20 %
    decoded = decode_image(encode(Image.fromarray(pixels, "LA")))
    grey = 0.2 * 0 + 0.8 * 255
    assert close(pixel(decoded.image, (0, 0)), (grey, grey, grey))


def test_palette_transparency_is_composited_onto_white():
    image = Image.new("P", (6, 6), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)  # index 0 red, index 1 blue
    for x in range(3, 6):
        for y in range(6):
            image.putpixel((x, y), 1)
    decoded = decode_image(encode(image, transparency=0))  # index 0 is transparent (a tRNS chunk)

    assert pixel(decoded.image, (0, 0)) == (255, 255, 255)  # the transparent red is not shown
    assert pixel(decoded.image, (5, 5)) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_greyscale_maps_its_full_range_to_eight_bits(fmt):
    levels = [0, 64, 128, 200, 255]
    samples = np.array([[level * 257 for level in levels]], dtype=np.uint16)  # 257 * v: v exactly in 8 bits
    image = Image.fromarray(samples)
    assert image.mode.startswith("I;16")

    decoded = decode_image(encode(image, fmt))

    assert [pixel(decoded.image, (x, 0)) for x in range(len(levels))] == [(v, v, v) for v in levels]


def test_a_uniform_sixteen_bit_grey_stays_grey():
    # A flat 16-bit field has no range of its own: it must keep its level, not become black.
    image = Image.fromarray(np.full((10, 10), 40_000, np.uint16))
    decoded = decode_image(encode(image))
    level = round(40_000 / 257)
    assert close(pixel(decoded.image, (5, 5)), (level, level, level))


@pytest.mark.parametrize(("fmt", "tolerance"), [("TIFF", 1), ("JPEG", 4)])
def test_cmyk_is_converted_to_the_right_rgb(fmt, tolerance):
    cmyk = (200, 30, 10, 40)
    options = {"quality": 100} if fmt == "JPEG" else {}
    decoded = decode_image(encode(Image.new("CMYK", (16, 16), cmyk), fmt, **options))

    c, m, y, k = (v / 255 for v in cmyk)
    expected = tuple(255 * (1 - ink) * (1 - k) for ink in (c, m, y))
    assert decoded.image.mode == "RGB"
    assert close(pixel(decoded.image, (8, 8)), expected, tolerance)


def png_declaring(width: int, height: int, rows: int) -> bytes:
    """A PNG whose header declares width × height but whose (cleanly ended) data holds only ``rows`` rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + b"\x80" * width * 3 for _ in range(rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_a_png_whose_data_ends_early_is_refused():
    assert len(png_declaring(7000, 7000, 2)) < 1000
    with pytest.raises(ImageRejected) as refused:
        decode_image(png_declaring(7000, 7000, 2))
    assert refused.value.reason == "truncated"
    # The same construction with every row is a good image (the check is not refusing the construction itself).
    assert decode_image(png_declaring(40, 30, 30)).image.size == (40, 30)


def test_a_cut_off_jpeg_is_refused():
    data = encode(two_halves(400, 300), "JPEG")
    with pytest.raises(ImageRejected) as refused:
        decode_image(data[: len(data) // 2])
    assert refused.value.reason == "truncated"


def test_the_configured_pixel_limit_applies_when_the_caller_gives_none(settings):
    settings.ARTSITE_MAX_IMAGE_PIXELS = 1000
    with pytest.raises(ImageRejected) as refused:
        decode_image(encode(Image.new("RGB", (40, 30))))  # 1,200 pixels
    assert refused.value.reason == "too_many_pixels"


def test_pillows_own_bomb_error_is_a_clear_refusal(monkeypatch):
    # Far above Pillow's limit, Image.open itself raises DecompressionBombError before our check sees the size.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ImageRejected) as refused:
        decode_image(encode(Image.new("L", (100, 100))), max_pixels=20_000)
    assert refused.value.reason == "too_many_pixels"
    assert "megapixels" in str(refused.value)


def test_pillows_limit_is_never_switched_off():
    from django.conf import settings

    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS == settings.ARTSITE_MAX_IMAGE_PIXELS


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "I;16"), ("PNG", "RGB"), ("JPEG", "RGB")])
def test_a_large_image_is_reduced_to_the_working_size_right_after_decoding(fmt, mode):
    width, height = 5 * WORKING_SIZE + 10, 3 * WORKING_SIZE + 7
    if mode == "I;16":
        image = Image.fromarray(np.full((height, width), 65535, np.uint16))
    else:
        image = Image.new("RGB", (width, height), (90, 160, 220))
    decoded = decode_image(encode(image, fmt))

    assert (decoded.width, decoded.height) == (width, height)  # the true size is kept
    assert WORKING_SIZE <= min(decoded.image.size) < 2 * WORKING_SIZE
    expected = (255, 255, 255) if mode == "I;16" else (90, 160, 220)
    assert close(pixel(decoded.image, (10, 10)), expected, 2)
