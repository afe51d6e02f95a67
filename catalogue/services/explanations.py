"""Explanation maps: where in an artwork's image the model finds (or misses) a type, as a PNG over the image.

The map is computed on demand with the version's serving model (:func:`inference.explain.occlusion_map`, ~65 images
in one call) and kept as a file in the default storage, keyed by what it depends on (the image's sha256, the model
version, the method and the type), so a page reload, another web worker or a restart serves it at once. A label
change does not touch it: the map explains the model, not the label. The files go with the artwork
(:func:`catalogue.services.artworks.artwork_delete`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from catalogue.models import Artwork, ArtworkType
from inference.explain import DEFAULT_GRID, DEFAULT_PATCH, occlusion_map, overlay_png
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.preprocessing import ImageRejected, decode_image

logger = logging.getLogger(__name__)

EXPLANATION_DIR = "explanations"
# Part of every file name: a change of method or parameters must never serve an old map.
METHOD_TAG = f"occlusion-g{DEFAULT_GRID}-p{round(DEFAULT_PATCH * 100)}"
OVERLAY_SIDE = 384  # px, the longest side of the PNG
PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every complete PNG


class ExplanationUnavailable(Exception):
    """No map can be made (the version does not know the type, the stored image cannot be read); ``str(exc)``
    says why."""


@dataclass(frozen=True)
class Explanation:
    png: bytes
    cached: bool
    timings: dict[str, float]  # seconds: decode, model (the occlusion batch), render (overlay + PNG), store


def explanation_files(*, sha256: str) -> list[str]:
    """Storage names of every map kept for the image with this sha256 (any version, type or method)."""
    folder = _folder(sha256)
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [f"{folder}/{name}" for name in files]


def artwork_explain(*, artwork: Artwork, artwork_type: ArtworkType, version: ModelVersion) -> Explanation:
    """The occlusion map of ``artwork_type`` over ``artwork``'s image, by ``version``: from storage when it was made
    before, else computed and stored. Raises :class:`ExplanationUnavailable`, or ``ModelUnavailable`` when the
    version cannot load."""
    name = f"{_folder(artwork.sha256)}/{version.version}-{METHOD_TAG}-{artwork_type.slug}.png"
    started = time.perf_counter()
    stored = _read_complete(name)
    if stored is not None:
        return Explanation(png=stored, cached=True, timings={"cache": time.perf_counter() - started})

    classifier = get_classifier(version.version)
    if artwork_type.slug not in classifier.classes:
        raise ExplanationUnavailable(f"Model {version.version} does not know the type {artwork_type.name}.")
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    try:
        with artwork.image.open("rb") as handle:
            image = decode_image(handle.read(), draft=OVERLAY_SIDE).image
    except (ImageRejected, OSError, ValueError) as exc:
        raise ExplanationUnavailable(f"The stored image cannot be read: {exc}") from None
    mark = _lap(timings, "decode", mark)
    result = occlusion_map(classifier, image, types=[artwork_type.slug])
    mark = _lap(timings, "model", mark)
    png = overlay_png(image, result.heat[artwork_type.slug], max_side=OVERLAY_SIDE)
    mark = _lap(timings, "render", mark)
    _store(name, png)
    _lap(timings, "store", mark)
    logger.info(
        "explained artwork %s as %s with model %s in %.0f ms (%d images in %d model call(s))",
        artwork.pk,
        artwork_type.slug,
        version.version,
        1000 * sum(timings.values()),
        result.model_images,
        result.model_calls,
    )
    return Explanation(png=png, cached=False, timings=timings)


def _folder(sha256: str) -> str:
    return f"{EXPLANATION_DIR}/{sha256[:2]}/{sha256}"


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    now = time.perf_counter()
    timings[stage] = now - since
    return now


def _read_complete(name: str) -> bytes | None:
    """The stored PNG, or None when there is none yet or it is incomplete (another request is still writing it)."""
    try:
        if not default_storage.exists(name):
            return None
        with default_storage.open(name, "rb") as handle:
            data = bytes(handle.read())
    except OSError:
        return None
    return data if data.endswith(PNG_END) else None


def _store(name: str, png: bytes) -> None:
    """Keep the map; a map that cannot be stored is still shown (it is only a cache), and when another request
    stored the same map first, the copy the storage renamed is removed again."""
    try:
        saved = default_storage.save(name, ContentFile(png))
        if saved != name:
            default_storage.delete(saved)
    except OSError:
        logger.warning("could not store the explanation map %s", name, exc_info=True)
