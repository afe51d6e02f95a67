"""Model activation without downtime: old version serves until the catalogue is re-embedded, then one switch."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from catalogue.models import Artwork, Prediction
from catalogue.selectors.similarity import artwork_similar
from catalogue.services import model_rollout
from catalogue.services.classification import artwork_classify
from inference import services as model_services
from inference.models import ModelVersion
from tests.conftest import write_tiny_model
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_version(settings, model_root, tmp_path):
    write_tiny_model(tmp_path, version="test-tiny-2", seed=7)
    settings.ARTSITE_MODEL_DIRS = [model_root, tmp_path]
    model_services.model_versions_sync()
    return ModelVersion.objects.get(version="test-tiny-2")


@pytest.fixture
def ready_catalogue(active_model):
    works = [ArtworkFactory() for _ in range(5)]
    for work in works:
        artwork_classify(artwork_id=work.pk)
    return works


def test_activation_keeps_old_version_serving_until_all_embedded(
    active_model, ready_catalogue, second_version, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        model_rollout.model_activate(version=second_version)
    second_version.refresh_from_db()
    assert second_version.status == ModelVersion.Status.EMBEDDING and not second_version.is_active
    assert broker.llen("celery") == 1  # the re-embedding task is queued

    progress = model_rollout.model_reembed_batch(version=second_version, batch_size=3)
    assert (progress.done, progress.total) == (3, 5)
    from inference.selectors import model_version_active

    assert model_version_active() == active_model  # pages still show the old version
    similar = artwork_similar(artwork=ready_catalogue[0])
    assert len(similar) == 4  # and similar works still use the old, complete embeddings

    progress = model_rollout.model_reembed_batch(version=second_version, batch_size=3)
    assert progress.remaining == 0
    assert model_version_active() == second_version
    active_model.refresh_from_db()
    assert not active_model.is_active and active_model.status == ModelVersion.Status.AVAILABLE
    assert Prediction.objects.filter(model_version=second_version).count() == 5


def test_uploads_during_reembedding_get_both_versions(active_model, ready_catalogue, second_version):
    model_rollout.model_activate(version=second_version, enqueue=False)
    newcomer = ArtworkFactory()
    artwork_classify(artwork_id=newcomer.pk)
    versions = set(
        Prediction.objects.filter(artwork=newcomer).values_list("model_version__version", flat=True)
    )
    assert versions == {"test-tiny", "test-tiny-2"}


def test_reactivating_previous_version_switches_at_once(active_model, ready_catalogue, second_version):
    model_rollout.model_activate(version=second_version, enqueue=False)
    while model_rollout.model_reembed_batch(version=second_version).remaining:
        pass
    second_version.refresh_from_db()
    assert second_version.is_active

    old = model_rollout.model_activate(version=ModelVersion.objects.get(version="test-tiny"))
    assert old.is_active  # its predictions were kept: no recomputation
    assert Prediction.objects.filter(model_version=old).count() == 5


def test_activate_model_command_here(active_model, ready_catalogue, second_version, capsys):
    call_command("activate_model", "test-tiny-2", "--here")
    second_version.refresh_from_db()
    assert second_version.is_active
    assert "is active" in capsys.readouterr().out


def test_activate_unknown_version_is_a_clear_error(active_model):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown model version"):
        call_command("activate_model", "nope")


def test_unreadable_artwork_does_not_block_the_switch(active_model, ready_catalogue, second_version):
    with open(ready_catalogue[0].image.path, "wb") as handle:
        handle.write(b"broken")
    model_rollout.model_activate(version=second_version, enqueue=False)
    progress = model_rollout.model_reembed_batch(version=second_version)
    assert progress.remaining == 0
    second_version.refresh_from_db()
    assert second_version.is_active
    assert Artwork.objects.get(pk=ready_catalogue[0].pk).status == Artwork.Status.FAILED


def test_admin_activate_action(active_model, ready_catalogue, second_version, admin_client, broker):
    response = admin_client.post(
        "/admin/inference/modelversion/",
        {"action": "activate", "_selected_action": [second_version.pk]},
        follow=True,
    )
    assert response.status_code == 200
    second_version.refresh_from_db()
    assert (
        second_version.status == ModelVersion.Status.EMBEDDING
    )  # re-embedding queued, old version still serves
    assert "Re-embedding the catalogue" in response.content.decode()


def test_default_naming_a_missing_version_activates_nothing(db, settings):
    settings.ARTSITE_DEFAULT_MODEL = "no-such-version"
    assert model_services.model_ensure_active() is None
    assert not ModelVersion.objects.active().exists()


def _drop_serving_check(folder) -> None:  # type: ignore[no-untyped-def]
    import json

    card = json.loads((folder / "card.json").read_text())
    card["serving"].pop("check")
    (folder / "card.json").write_text(json.dumps(card))


def test_a_version_without_a_passing_serving_check_is_never_activated(
    active_model, ready_catalogue, second_version, broker, tmp_path
):
    from inference.registry import ModelUnavailable

    _drop_serving_check(tmp_path / "test-tiny-2")
    with pytest.raises(ModelUnavailable, match="records no check of model.tflite against model.keras"):
        model_rollout.model_activate(version=second_version)
    second_version.refresh_from_db()
    assert second_version.status == ModelVersion.Status.AVAILABLE  # nothing started: no re-embedding queued
    assert broker.llen("celery") == 0
    with pytest.raises(ModelUnavailable, match="check_model"):
        model_services.model_version_set_active(version=second_version)
    assert ModelVersion.objects.active().get() == active_model


def test_activate_model_command_says_why_it_refuses(active_model, second_version, tmp_path):
    from io import StringIO

    from django.core.management import CommandError

    (tmp_path / "test-tiny-2" / "model.tflite").unlink()
    with pytest.raises(
        CommandError, match="has no model.tflite: the serving runtime runs only the TFLite copy"
    ):
        call_command("activate_model", "test-tiny-2", stdout=StringIO())
    assert ModelVersion.objects.active().get() == active_model


def test_a_default_version_that_cannot_serve_is_not_activated(db, settings, model_root, tmp_path):
    import shutil

    shutil.copytree(model_root / "test-tiny", tmp_path / "test-tiny")
    _drop_serving_check(tmp_path / "test-tiny")
    settings.ARTSITE_MODEL_DIRS = [tmp_path]
    assert model_services.model_ensure_active() is None
    assert not ModelVersion.objects.active().exists()
