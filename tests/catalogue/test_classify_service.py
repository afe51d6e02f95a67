"""Classification with a real (tiny) Keras model: predictions, idempotence, failures with reasons, curation."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.models import Artwork, LabelCorrection, Prediction
from catalogue.services.classification import artwork_classify, artwork_retry, artworks_requeue_pending
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def test_classify_writes_prediction_embedding_and_ready(active_model):
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)

    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.READY
    assert artwork.processed_at is not None and artwork.error == ""
    prediction = Prediction.objects.get(artwork=artwork)
    assert prediction.model_version == active_model
    assert set(prediction.probabilities) == {"drawings", "engraving", "iconography", "painting", "sculpture"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert prediction.confidence == pytest.approx(max(prediction.probabilities.values()), abs=1e-5)
    assert prediction.predicted_type.slug == max(prediction.probabilities, key=prediction.probabilities.get)
    embedding = np.asarray(prediction.embedding)
    assert embedding.shape == (128,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-3)


def test_classify_is_idempotent(active_model):
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    first = Prediction.objects.get(artwork=artwork)
    artwork_classify(artwork_id=artwork.pk)
    assert Prediction.objects.filter(artwork=artwork).count() == 1
    again = Prediction.objects.get(artwork=artwork)
    assert again.pk == first.pk and again.probabilities == first.probabilities


def test_classify_same_image_gives_same_result_as_batch_path(active_model):
    from PIL import Image

    from inference.loader import get_classifier

    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    prediction = Prediction.objects.get(artwork=artwork)
    image = Image.open(artwork.image.open()).convert("RGB")
    probs, emb = get_classifier(active_model.version).predict_images([image])
    assert np.allclose(np.asarray(prediction.embedding), emb[0], atol=1e-4)


def test_unreadable_stored_image_ends_failed_with_reason(active_model):
    artwork = ArtworkFactory()
    with open(artwork.image.path, "wb") as handle:
        handle.write(b"garbage")
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.FAILED
    assert "cannot be read" in artwork.error


def test_missing_model_ends_failed_with_reason(active_model, settings, tmp_path):
    from inference.loader import clear_cache

    clear_cache()
    settings.ARTSITE_MODEL_DIRS = [tmp_path]  # the active version's folder is gone
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.FAILED
    assert "test-tiny" in artwork.error and "unavailable" in artwork.error


def test_corrupt_model_file_ends_failed_with_reason(active_model, settings, tmp_path):
    import shutil

    from inference.loader import clear_cache

    clear_cache()
    broken = tmp_path / "test-tiny"
    shutil.copytree(settings.ARTSITE_MODEL_DIRS[0] / "test-tiny", broken)
    (broken / "model.tflite").write_bytes(b"not a zip")
    settings.ARTSITE_MODEL_DIRS = [tmp_path]
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.FAILED
    assert "could not be loaded" in artwork.error
    clear_cache()


def test_no_active_model_fails_clearly(db):
    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.FAILED
    assert "No model version is active" in artwork.error


def test_deleted_artwork_is_ignored(active_model):
    assert artwork_classify(artwork_id=987654) is None


def test_retry_puts_failed_artwork_back_to_pending(broker, django_capture_on_commit_callbacks):
    artwork = ArtworkFactory(status=Artwork.Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        artwork_retry(artwork=artwork)
    artwork.refresh_from_db()
    assert artwork.status == Artwork.Status.PENDING and artwork.error == ""
    assert broker.llen("celery") == 1


def test_requeue_pending_sends_old_pending_and_stuck_processing(broker, settings):
    from datetime import timedelta

    from django.utils import timezone

    fresh = ArtworkFactory()
    old = ArtworkFactory()
    stuck = ArtworkFactory(status=Artwork.Status.PROCESSING)
    running = ArtworkFactory(status=Artwork.Status.PROCESSING)
    ready = ArtworkFactory(status=Artwork.Status.READY)
    long_ago = timezone.now() - timedelta(hours=1)
    Artwork.objects.filter(pk__in=[old.pk, stuck.pk, ready.pk]).update(updated_at=long_ago)
    Artwork.objects.filter(pk=running.pk).update(updated_at=timezone.now() - timedelta(seconds=30))

    assert artworks_requeue_pending() == 2
    assert broker.llen("celery") == 2
    # They were touched: an immediate second sweep sends nothing again.
    assert artworks_requeue_pending() == 0
    assert fresh.pk and running.pk


def test_label_correct_records_audit_trail(active_model, curator):
    from catalogue.models import ArtworkType

    artwork = ArtworkFactory()
    artwork_classify(artwork_id=artwork.pk)
    predicted = Prediction.objects.get(artwork=artwork).predicted_type
    target = ArtworkType.objects.exclude(pk=predicted.pk).first()

    label_correct(
        artwork=artwork,
        to_type=target,
        user=curator,
        source=LabelCorrection.Source.PORTAL,
        note="signed plate",
    )

    artwork.refresh_from_db()
    assert artwork.curator_type == target
    correction = LabelCorrection.objects.get(artwork=artwork)
    assert (
        correction.from_type,
        correction.to_type,
        correction.user,
        correction.source,
        correction.note,
    ) == (predicted, target, curator, "portal", "signed plate")
    # A second correction starts from the curator's type.
    other = ArtworkType.objects.exclude(pk__in=[predicted.pk, target.pk]).first()
    label_correct(artwork=artwork, to_type=other, user=curator, source=LabelCorrection.Source.ADMIN)
    assert LabelCorrection.objects.filter(artwork=artwork).first().from_type == target
