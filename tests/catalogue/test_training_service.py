"""train_model --from-catalogue: train on the catalogue's effective types, compare with the active version on a
gold set of curator-labelled works held out of training, activate only if not worse."""

import io
import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from catalogue.models import Artwork, ArtworkType
from catalogue.services.training import activation_decision
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import confident, ready_artwork
from tests.factories import ArtworkFactory

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]


def _cue_image(index: int, seed: int) -> bytes:
    """A JPEG with a colour cue per type, so one epoch can learn something."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((40, 48, 3), np.float32)
    pixels[..., index % 3] = 60 + 40 * index
    pixels = np.clip(pixels + rng.normal(0, 15, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def catalogue(active_model, settings, tmp_path):
    """30 curator-labelled ready works (6 per type) and 5 with only the active version's prediction; new versions
    are written to a temporary model dir."""
    settings.ARTSITE_MODEL_DIRS = [*settings.ARTSITE_MODEL_DIRS, tmp_path]
    for index, slug in enumerate(SLUGS):
        for i in range(6):
            ArtworkFactory(
                data=_cue_image(index, 100 * index + i),
                status=Artwork.Status.READY,
                curator_type=ArtworkType.objects.get(slug=slug),
            )
        ready_artwork(active_model, confident(slug), data=_cue_image(index, 999 + index))
    return tmp_path


def _train(*extra):
    out = StringIO()
    call_command(
        "train_model",
        "--from-catalogue",
        "--architecture",
        "seed-cnn",
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        *extra,
        stdout=out,
    )
    return out.getvalue()


def test_from_catalogue_trains_compares_on_gold_and_records_it(catalogue, active_model):
    output = _train("--name", "cat-v1")
    card = json.loads((catalogue / "cat-v1" / "card.json").read_text())
    source = card["catalogue_training"]
    assert source["examples"] == 35 and source["curator_labelled"] == 30
    assert source["active_version_when_trained"] == active_model.version
    assert source["gold_set"]["n"] == 5  # a fifth of each type's six curator-labelled works
    assert card["data"]["n"] == 30  # the gold works are not trained on
    assert card["metrics"]["evaluated_on"] == "val" and card["metrics"]["n"] == 5
    comparison = source["comparison"]
    assert comparison["new"]["n"] == 5 and comparison["active"]["n"] == 5
    assert comparison["active"]["version"] == active_model.version
    expected, _ = activation_decision(comparison["new"], comparison["active"])
    assert comparison["activate"] is expected
    assert "Gold set (5 curator-labelled works)" in output
    new = ModelVersion.objects.filter(version="cat-v1").first()
    if expected:
        # Activation goes through model_activate: the catalogue is re-embedded before it serves.
        assert new is not None and new.status == ModelVersion.Status.EMBEDDING
        assert "Activated cat-v1" in output
    else:
        assert ModelVersion.objects.active().get().version == active_model.version
        assert "was not activated" in output


def test_from_catalogue_no_activate_never_switches(catalogue, active_model):
    output = _train("--name", "cat-v2", "--no-activate")
    card = json.loads((catalogue / "cat-v2" / "card.json").read_text())
    assert card["catalogue_training"]["comparison"]["activate"] is False
    assert ModelVersion.objects.active().get().version == active_model.version
    assert not ModelVersion.objects.filter(version="cat-v2", status=ModelVersion.Status.EMBEDDING).exists()
    assert "was not activated" in output


def test_from_catalogue_refuses_an_empty_catalogue_and_a_data_dir(active_model, tmp_path):
    with pytest.raises(CommandError, match="no ready artworks"):
        _train()
    with pytest.raises(CommandError, match="not both"):
        call_command("train_model", str(tmp_path), "--from-catalogue")


def test_activation_decision():
    good = {"accuracy": 0.9, "macro_f1": 0.88}
    assert activation_decision(good, {"accuracy": 0.9, "macro_f1": 0.88})[0] is True  # ties activate
    assert activation_decision(good, {"accuracy": 0.91, "macro_f1": 0.8})[0] is False
    assert activation_decision(good, {"accuracy": 0.8, "macro_f1": 0.89})[0] is False
    assert activation_decision(good, None) == (True, "no active version to compare with")
    assert activation_decision(None, good)[0] is False
