"""The catalogue as training examples: ready works with their effective types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage

from catalogue.models import Artwork, ArtworkType
from catalogue.selectors.artworks import artworks_with_prediction
from inference.models import ModelVersion
from inference.selectors import model_version_active


@dataclass(frozen=True)
class TrainingExample:
    """One artwork as a training example: where its image is, its effective type, and whether a curator said so."""

    artwork_id: int
    image_name: str  # the name in default_storage
    type_slug: str
    curator_labelled: bool

    def open(self) -> Any:
        """The stored image as a binary file (works with any storage backend); close it after use."""
        return default_storage.open(self.image_name, "rb")

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    @property
    def path(self) -> str | None:
        """A local filesystem path when the storage has one (FileSystemStorage), else ``None`` (S3: use open())."""
        try:
            return default_storage.path(self.image_name)
        except NotImplementedError:
            return None


def training_examples(
    *, version: ModelVersion | None = None, curator_only: bool = False
) -> list[TrainingExample]:
    """Ready artworks with their effective types, for training on the catalogue; curator labels first.

    The effective type is the curator's when there is one, else the prediction of ``version`` (default: the active
    version); ready works with neither are left out. Within each group, oldest first (a stable order, so a seeded
    split of the list is reproducible).
    """
    version = version if version is not None else model_version_active()
    qs = artworks_with_prediction(version).filter(
        status=Artwork.Status.READY, effective_type_id__isnull=False
    )
    if curator_only:
        qs = qs.filter(curator_type__isnull=False)
    slugs = dict(ArtworkType.objects.values_list("pk", "slug"))
    rows = qs.order_by("id").values_list("pk", "image", "effective_type_id", "curator_type_id")
    examples = [
        TrainingExample(
            artwork_id=pk, image_name=image, type_slug=slugs[type_id], curator_labelled=curated is not None
        )
        for pk, image, type_id, curated in rows
    ]
    # Curator labels first; sorted() is stable, so each group keeps the id order.
    return sorted(examples, key=lambda e: not e.curator_labelled)
