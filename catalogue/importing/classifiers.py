"""The model side of an import: the serving model versions (the active one, and one being rolled out), each loaded on
first use, run on whole batches in a thread of their own while the main thread stores the batch before."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from catalogue.importing.results import ImportFailed
from catalogue.importing.sources import ImportItem
from catalogue.services.imports import VersionPredictions
from inference.loader import get_classifier
from inference.models import ModelVersion
from inference.registry import MODEL_FILE, ModelUnavailable, find_version, read_card
from inference.selectors import model_versions_serving
from inference.services import model_ensure_active

if TYPE_CHECKING:
    from inference.loader import Classifier

logger = logging.getLogger(__name__)

NO_ACTIVE_VERSION = (
    "No model version is active: the artworks are stored pending and are classified once a version is activated "
    "(run the import again, or let the workers' sweep queue them)."
)


@dataclass
class ServingVersion:
    model_version: ModelVersion
    input_size: int
    classifier: Classifier | None = (
        None  # loaded when the first batch needs it (a run with nothing new never does)
    )


class ServingModels:
    """The versions an import classifies with. :meth:`find` looks them up (input sizes from their cards, so the
    decoders know what to make before any model is loaded); :meth:`predict_later` runs them on a batch in the
    model thread. Use as a context manager: the thread stops with it."""

    def __init__(self) -> None:
        self.versions: list[ServingVersion] = []
        self.load_seconds = 0.0  # loading (and compiling) the models on first use
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-model")

    def __enter__(self) -> ServingModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    @property
    def sizes(self) -> list[int]:
        """The model input sizes (pixels a side) the decoders make for every image."""
        return sorted({v.input_size for v in self.versions})

    def find(self) -> str | None:
        """Look up the serving versions, activating the default one on a fresh database. Returns a warning when
        no version is active (the run then stores its artworks pending); raises :class:`ImportFailed` when a
        version's files are missing."""

        versions = model_versions_serving()
        if not versions:  # a fresh database: activate the default version, if there is one
            try:
                model_ensure_active()
            except ObjectDoesNotExist:  # ARTSITE_DEFAULT_MODEL names a version with no folder
                logger.warning("the default model version is not in %s", settings.ARTSITE_MODEL_DIRS)
            versions = model_versions_serving()
        if not versions:
            return NO_ACTIVE_VERSION
        for version in versions:
            entry = ServingVersion(model_version=version, input_size=0)
            try:
                path = find_version(version.version)
                if not (path / MODEL_FILE).is_file():
                    raise ModelUnavailable(version.version, f"{path / MODEL_FILE} is missing")
                entry.input_size = int(read_card(path).get("input_size") or 0)
            except (ModelUnavailable, ValueError) as exc:
                raise ImportFailed(
                    f"{exc} Fix it, or import with --async and let the workers retry."
                ) from None
            if not entry.input_size:  # a card without it: the model itself says
                self.classifier(entry)
            self.versions.append(entry)
        return None

    def classifier(self, version: ServingVersion) -> Classifier:
        """The version's classifier, loaded (and timed) on first use."""

        if version.classifier is None:
            started = time.perf_counter()
            try:
                version.classifier = get_classifier(version.model_version.version)
            except ModelUnavailable as exc:
                # Nothing of the batch that needed it has been written yet.
                raise ImportFailed(
                    f"{exc} Fix it, or import with --async and let the workers retry."
                ) from None
            self.load_seconds += time.perf_counter() - started
            if version.input_size and version.classifier.input_size != version.input_size:
                raise ImportFailed(f"Model {version.model_version.version}: the card and the model disagree.")
            version.input_size = version.classifier.input_size
        return version.classifier

    def predict_later(self, items: list[ImportItem]) -> Future[None]:
        """Classify and embed a batch in the model thread; its outputs land in each ``item.predictions``."""
        return self._thread.submit(self._predict, items)

    def _predict(self, items: list[ImportItem]) -> None:
        """Every serving version on the whole batch (the loader's batched fast path)."""
        if not items:
            return
        for version in self.versions:
            classifier = self.classifier(version)
            pixels = np.stack([item.inputs[classifier.input_size] for item in items])
            probabilities, embeddings = classifier.predict_arrays(pixels)
            for item, probs, embedding in zip(items, probabilities, embeddings, strict=True):
                item.predictions[version.model_version.pk] = (probs, embedding)

    def predictions(self, items: Sequence[ImportItem]) -> list[VersionPredictions]:
        """The predicted batch, one entry per version, shaped for the import services."""
        out = []
        for version in self.versions:
            key = version.model_version.pk
            out.append(
                VersionPredictions(
                    model_version=version.model_version,
                    classes=self.classifier(version).classes,
                    probabilities=np.stack([item.predictions[key][0] for item in items]),
                    embeddings=np.stack([item.predictions[key][1] for item in items]),
                )
            )
        return out

    def active_types(self, items: Sequence[ImportItem]) -> list[str]:
        """The type slug the active version predicts for each predicted item (none when no serving version is
        the active one)."""
        for version in self.versions:
            if version.model_version.is_active:
                key, classes = version.model_version.pk, self.classifier(version).classes
                return [classes[int(np.argmax(item.predictions[key][0]))] for item in items]
        return []
