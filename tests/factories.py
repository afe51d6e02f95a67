from __future__ import annotations

import itertools

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from catalogue.models import Artwork, ArtworkType, LabelCheck, LabelIssue, Prediction, prediction_uncertainty
from catalogue.services.artworks import artwork_create
from catalogue.services.moved_embeddings import moved_embeddings_sync
from tests.images import image_bytes

_seeds = itertools.count(1000)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class CuratorFactory(UserFactory):
    is_staff = True

    @factory.post_generation
    def groups(self, create: bool, extracted: object, **kwargs: object) -> None:
        self.groups.add(Group.objects.get(name="Curators"))


class ViewerFactory(UserFactory):
    @factory.post_generation
    def groups(self, create: bool, extracted: object, **kwargs: object) -> None:
        self.groups.add(Group.objects.get(name="Viewers"))


class ArtworkFactory(factory.django.DjangoModelFactory):
    """An artwork stored through the real upload service (file, thumbnail, histogram), not enqueued."""

    class Meta:
        model = Artwork

    title = factory.Sequence(lambda n: f"Artwork {n}")
    artist = "Unknown"

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> Artwork:
        status = kwargs.pop("status", None)
        data = kwargs.pop("data", None) or image_bytes(next(_seeds))
        artwork = artwork_create(data=data, enqueue=False, **kwargs)  # type: ignore[arg-type]
        if status:
            Artwork.objects.filter(pk=artwork.pk).update(status=status)
            artwork.status = status
        return artwork


def prediction_for(
    artwork: Artwork, *, version: object, type_slug: str, embedding: np.ndarray, confidence: float = 0.9
) -> Prediction:
    """Give an artwork a prediction with a chosen embedding (selector tests compare against numpy)."""
    artwork_type = ArtworkType.objects.get(slug=type_slug)
    slugs = list(ArtworkType.objects.values_list("slug", flat=True))
    rest = (1 - confidence) / (len(slugs) - 1)
    probabilities = {s: (confidence if s == type_slug else rest) for s in slugs}
    prediction = Prediction.objects.create(
        artwork=artwork,
        model_version=version,
        predicted_type=artwork_type,
        confidence=confidence,
        probabilities=probabilities,
        embedding=np.asarray(embedding, dtype=np.float32),
        **prediction_uncertainty(probabilities.values()),  # as prediction_store stores them
    )
    moved_embeddings_sync(artwork_ids=[artwork.pk])  # as prediction_store does
    return prediction


class LabelCheckFactory(factory.django.DjangoModelFactory):
    """A finished label check (pass ``status`` for a queued, running or failed one)."""

    class Meta:
        model = LabelCheck

    status = LabelCheck.Status.DONE
    stage = "done"
    folds = 5
    finished_at = factory.LazyAttribute(
        lambda o: timezone.now() if o.status == LabelCheck.Status.DONE else None
    )


def label_issue_for(
    artwork: Artwork,
    *,
    check: LabelCheck,
    suggested: str,
    label_probability: float,
    suggested_probability: float,
    quality: float,
    flagged: bool = True,
) -> LabelIssue:
    """What a label check says of a labelled artwork, as the detector would write it: the label as it was, the
    suggested type and the out-of-fold probabilities (the rest shared evenly by the other types)."""
    label_type = artwork.curator_type
    assert label_type is not None, "label issues are written for labelled works only"
    slugs = list(ArtworkType.objects.values_list("slug", flat=True))
    probabilities = {label_type.slug: label_probability, suggested: suggested_probability}
    rest = (1 - sum(probabilities.values())) / (len(slugs) - len(probabilities))
    probabilities.update({s: rest for s in slugs if s not in probabilities})
    return LabelIssue.objects.create(
        check_run=check,
        artwork=artwork,
        label_type=label_type,
        suggested_type=ArtworkType.objects.get(slug=suggested),
        label_probability=label_probability,
        suggested_probability=suggested_probability,
        probabilities=probabilities,
        quality=quality,
        flagged=flagged,
    )
