"""Datasets, training and the train_model / evaluate_model commands, on tiny generated images."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference import datasets, registry
from inference.architectures import CLASSES
from inference.loader import get_classifier
from inference.training import class_weights, train
from tests.inference.conftest import TINY_SIZE, make_image_folder

PER_CLASS = 4


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    names = {"drawings": "Drawing", "engraving": "ENGRAVINGS", "sculpture": "sculptures"}
    root = make_image_folder(tmp_path_factory.mktemp("images"), per_class=PER_CLASS, names=names)
    (root / "painting" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "painting" / ".DS_Store").write_bytes(b"junk")
    (root / "unrelated").mkdir()
    return root


@pytest.fixture(scope="module")
def tiny_set(image_root):
    return datasets.read_folder(image_root, TINY_SIZE, workers=2)


def test_read_folder_matches_type_folders_and_skips_unreadable(tiny_set, image_root):
    assert tiny_set.counts == {slug: PER_CLASS for slug in CLASSES}
    assert tiny_set.images.shape == (5 * PER_CLASS, TINY_SIZE, TINY_SIZE, 3)
    assert tiny_set.images.dtype == np.uint8
    assert tiny_set.skipped == [("painting/broken.jpg", "not_image")]
    assert tiny_set.ignored_folders == ["unrelated"]
    assert tiny_set.summary()["skipped"] == 1


def test_fingerprint_is_stable_and_changes_with_content(tiny_set, image_root, tmp_path):
    assert datasets.read_folder(image_root, TINY_SIZE, workers=1).fingerprint == tiny_set.fingerprint
    copy = make_image_folder(tmp_path, per_class=PER_CLASS, seed=5)
    assert datasets.read_folder(copy, TINY_SIZE).fingerprint != tiny_set.fingerprint


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Drawings", "drawings"), ("drawing", "drawings"), ("Engravings", "engraving"), ("ICONOGRAPHY", "iconography"),
     ("paintings", "painting"), ("Sculpture", "sculpture"), ("photos", None)],
)
def test_match_type(name, expected):
    index = datasets.match_type(name)
    assert (CLASSES[index] if index is not None else None) == expected


def test_stratified_split_holds_out_every_class():
    labels = np.repeat(np.arange(5), [10, 10, 10, 5, 10])
    kept, held = datasets.stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(45))
    assert np.bincount(labels[held]).tolist() == [2, 2, 2, 1, 2]


def test_class_weights_favour_the_smaller_class():
    weights = class_weights(np.repeat(np.arange(5), [10, 10, 10, 5, 10]), 5)
    assert weights[3] == pytest.approx(2 * weights[0])


def test_one_epoch_training_writes_a_loadable_version(tiny_set, model_dirs):
    result = train(train_data=tiny_set, val_data=tiny_set, epochs=1, batch_size=8, output_dir=model_dirs[1],
                   version="tiny-trained")
    assert result.path == model_dirs[1] / "tiny-trained"
    for name in ("model.keras", "card.json", "confusion.png", "curves.png"):
        assert (result.path / name).is_file()
    card = registry.read_card(result.path)
    assert card["version"] == "tiny-trained"
    assert card["classes"] == list(CLASSES)
    assert card["input_size"] == TINY_SIZE and card["embedding_dim"] == 128
    assert card["temperature"] > 0
    assert card["data"]["fingerprint"] == tiny_set.fingerprint
    assert card["data"]["counts"] == tiny_set.counts
    for key in ("accuracy", "macro_f1", "ece", "precision_at_5", "per_type", "n"):
        assert key in card["metrics"]
    assert card["metrics"]["n"] == len(tiny_set)
    assert card["training_seconds"] > 0
    assert not list(model_dirs[1].glob(".*"))  # no staging folder left behind

    classifier = get_classifier("tiny-trained")
    probabilities, embeddings = classifier.predict_arrays(tiny_set.images[:3])
    assert probabilities.shape == (3, 5) and embeddings.shape == (3, 128)


def test_training_is_reproducible(tiny_set, tmp_path):
    first = train(train_data=tiny_set, epochs=1, batch_size=8, output_dir=tmp_path, version="a", seed=7)
    second = train(train_data=tiny_set, epochs=1, batch_size=8, output_dir=tmp_path, version="b", seed=7)
    assert first.card["history"] == second.card["history"]
    assert first.card["metrics"]["accuracy"] == second.card["metrics"]["accuracy"]
    assert first.card["metrics"]["evaluated_on"] == "holdout"


def test_train_and_evaluate_commands(image_root, model_dirs):
    out = StringIO()
    call_command("train_model", str(image_root), "--epochs", "1", "--input-size", str(TINY_SIZE),
                 "--batch-size", "8", "--name", "cmd-v1", "--val-dir", str(image_root), stdout=out)
    assert "Wrote" in out.getvalue()
    assert (model_dirs[1] / "cmd-v1" / "card.json").is_file()  # default output dir: the last model dir

    out = StringIO()
    call_command("evaluate_model", str(image_root), "--model", "cmd-v1", "--json", stdout=out)
    report = json.loads(out.getvalue())
    for key in ("accuracy", "macro_f1", "ece", "precision_at_5", "per_type", "n"):
        assert key in report
    assert report["n"] == 5 * PER_CLASS

    out = StringIO()
    call_command("evaluate_model", str(image_root), "--catalogue", str(image_root), stdout=out)  # newest version
    assert "precision@5" in out.getvalue() and "cmd-v1" in out.getvalue()


def test_commands_refuse_bad_input(image_root, model_dirs):
    with pytest.raises(CommandError, match="not available yet"):
        call_command("train_model", "--from-catalogue")
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("train_model", str(image_root / "nope"))
    with pytest.raises(CommandError, match="no folder named 'ghost'"):
        call_command("evaluate_model", str(image_root), "--model", "ghost")
