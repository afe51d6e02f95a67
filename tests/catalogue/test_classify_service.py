"""Classification with a real (tiny) Keras model: predictions, idempotence, failures with reasons, curation."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue.models import Artwork, LabelCorrection, Prediction
from catalogue.services.classification import (
    ClaimLease,
    artwork_classify,
    artwork_retry,
    artworks_classify_claimed,
    artworks_requeue_pending,
    classification_claim,
    classification_claims_release,
)
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


def test_requeue_pending_sends_old_pending_and_works_whose_claim_ran_out(broker, settings):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    fresh = ArtworkFactory()
    old = ArtworkFactory()
    dead, alive = ArtworkFactory(), ArtworkFactory()
    classification_claim(claimant="gone:1:x", artwork_ids=[dead.pk])
    classification_claim(claimant="alive:2:y", artwork_ids=[alive.pk])
    Artwork.objects.filter(pk=dead.pk).update(claim_expires_at=now - timedelta(seconds=1))
    ready = ArtworkFactory(status=Artwork.Status.READY)
    Artwork.objects.filter(pk__in=[old.pk, ready.pk]).update(updated_at=now - timedelta(hours=1))

    assert artworks_requeue_pending() == 2
    # One message per batch: the task that takes it claims every work waiting.
    assert broker.llen("celery") == 1
    dead.refresh_from_db()
    assert (dead.status, dead.claimed_by, dead.claim_expires_at) == (Artwork.Status.PENDING, "", None)
    alive.refresh_from_db()
    assert (alive.status, alive.claimed_by) == (Artwork.Status.PROCESSING, "alive:2:y")
    # They were touched: an immediate second sweep sends nothing again; the fresh upload has its grace period.
    assert artworks_requeue_pending() == 0
    fresh.refresh_from_db()
    assert fresh.status == Artwork.Status.PENDING


def test_a_task_classifies_every_waiting_work_in_one_model_call(active_model, monkeypatch):
    from inference.loader import get_classifier

    works = [ArtworkFactory() for _ in range(5)]
    failed = ArtworkFactory(status=Artwork.Status.FAILED)  # waits for a curator's retry, not for a worker
    classifier = get_classifier(active_model.version)
    calls: list[int] = []
    real = classifier.predict_images

    def spy(images):  # type: ignore[no-untyped-def]
        calls.append(len(images))
        return real(images)

    monkeypatch.setattr(classifier, "predict_images", spy)
    ready = artworks_classify_claimed(claimant="w1", artwork_ids=[works[3].pk])

    assert ready == sorted(w.pk for w in works)
    assert calls == [5]
    assert Prediction.objects.filter(artwork__in=works).count() == 5
    assert set(Artwork.objects.filter(pk__in=[w.pk for w in works]).values_list("status", "claimed_by")) == {
        (Artwork.Status.READY, "")
    }
    failed.refresh_from_db()
    assert failed.status == Artwork.Status.FAILED


def test_a_batch_takes_its_own_work_first_and_no_more_than_the_batch_size(active_model, settings):
    settings.ARTSITE_CLASSIFY_BATCH = 2
    works = [ArtworkFactory() for _ in range(4)]
    ready = artworks_classify_claimed(claimant="w1", artwork_ids=[works[3].pk])
    assert ready == [works[0].pk, works[3].pk]  # its own, then the oldest waiting
    assert Artwork.objects.filter(status=Artwork.Status.PENDING).count() == 2


def test_a_work_held_by_another_worker_is_left_to_it(active_model):
    work = ArtworkFactory()
    assert classification_claim(claimant="first", artwork_ids=[work.pk]) == [work.pk]
    assert artworks_classify_claimed(claimant="second", artwork_ids=[work.pk]) == []
    work.refresh_from_db()
    assert (work.status, work.claimed_by, work.attempts) == (Artwork.Status.PROCESSING, "first", 1)
    assert not Prediction.objects.filter(artwork=work).exists()


def test_a_worker_that_lost_its_claim_writes_nothing(active_model, monkeypatch):
    """A worker stalled past its lease: the sweep handed its work to another worker, whose result alone counts."""
    from datetime import timedelta

    from django.utils import timezone

    from inference.loader import get_classifier

    work = ArtworkFactory()
    classifier = get_classifier(active_model.version)
    real = classifier.predict_images

    def stall_then_predict(images):  # type: ignore[no-untyped-def]
        Artwork.objects.filter(pk=work.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
        artworks_requeue_pending()
        assert classification_claim(claimant="second", artwork_ids=[work.pk]) == [work.pk]
        return real(images)

    monkeypatch.setattr(classifier, "predict_images", stall_then_predict)
    assert artworks_classify_claimed(claimant="first", artwork_ids=[work.pk]) == []
    work.refresh_from_db()
    assert (work.status, work.claimed_by) == (Artwork.Status.PROCESSING, "second")
    assert not Prediction.objects.filter(artwork=work).exists()


def test_released_claims_go_back_to_pending_or_end_failed_with_the_reason(active_model):
    first, second = ArtworkFactory(), ArtworkFactory()
    classification_claim(claimant="a", artwork_ids=[first.pk])
    classification_claim(claimant="b", artwork_ids=[second.pk])
    assert classification_claims_release(claimant="a") == 1
    assert classification_claims_release(claimant="b", error="took too long") == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.claimed_by) == (Artwork.Status.PENDING, "")
    assert (second.status, second.error, second.claimed_by) == (Artwork.Status.FAILED, "took too long", "")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_claims_skip_rows_another_worker_is_claiming_and_the_lease_is_renewed(active_model, settings):
    """Two database sessions: rows one locks are skipped by the other (SKIP LOCKED), never waited for or taken."""
    import threading
    import time

    from django.db import connections, transaction

    settings.ARTSITE_CLAIM_LEASE_SECONDS = 1
    works = [ArtworkFactory() for _ in range(3)]
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                list(Artwork.objects.select_for_update().filter(pk=works[0].pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert locked.wait(10)
    try:
        assert classification_claim(claimant="me", artwork_ids=[works[0].pk], limit=3) == [
            works[1].pk,
            works[2].pk,
        ]
    finally:
        release.set()
        thread.join()

    before = Artwork.objects.get(pk=works[1].pk).claim_expires_at
    with ClaimLease(claimant="me"):
        time.sleep(1.5)
    after = Artwork.objects.get(pk=works[1].pk).claim_expires_at
    assert after > before
    assert Artwork.objects.get(pk=works[0].pk).status == Artwork.Status.PENDING


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
