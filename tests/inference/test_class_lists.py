"""Class lists other than the default five (types belong to the catalogue): read, trained, written on the card and
served with exactly that many outputs; a version measured from a folder outside the model dirs; hidden folders (a
version being written) never listed."""

import pytest

from inference import datasets, registry
from inference.classes import CLASSES
from inference.loader import ModelNotFound, get_classifier, load_classifier
from inference.training import TrainingConfig, TrainingEvents, train
from tests.inference.conftest import TINY_SIZE, make_image_folder

SIX = (*CLASSES, "textile")


@pytest.fixture(scope="module")
def six_types(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("images"), per_class=3)
    textile = make_image_folder(tmp_path_factory.mktemp("more"), per_class=3, seed=5) / "painting"
    textile.rename(root / "textiles")  # another folder, named by the sixth type (plural)
    return datasets.read_folder(root, TINY_SIZE, classes=SIX, workers=2)


def test_a_six_type_class_list_is_trained_carded_and_served_as_six(six_types, model_dirs):
    assert six_types.classes == SIX and six_types.counts["textile"] == 3
    members = []
    config = TrainingConfig.for_architecture("seed-cnn", input_size=TINY_SIZE, epochs=1, batch_size=8)
    result = train(
        train_data=six_types,
        config=config,
        output_dir=model_dirs[1],
        version="six",
        events=TrainingEvents(on_member=lambda number, total: members.append((number, total))),
    )
    assert members == [(1, 1)]
    assert registry.read_card(result.path)["classes"] == list(SIX)
    assert len(registry.read_card(result.path)["metrics"]["per_type"]) == 6
    probabilities, _ = get_classifier("six").predict_arrays(six_types.images[:2])
    assert probabilities.shape == (2, 6)

    # Measured before it is published: a folder the model dirs do not list, loaded without caching it.
    hidden = model_dirs[1] / ".staging" / "six-copy"
    hidden.parent.mkdir()
    result.path.rename(hidden)
    assert [p.name for p in registry.version_dirs()] == []
    classifier = load_classifier(hidden)
    assert classifier.classes == SIX and classifier.version == "six-copy"
    with pytest.raises(ModelNotFound):
        load_classifier(model_dirs[1] / "nowhere")


def test_hidden_folders_are_never_versions(tiny_version, model_dirs):
    tiny_version("listed", dir_index=1)
    tiny_version(".listed.partial", dir_index=1)  # a version being written, card and all
    assert [p.name for p in registry.version_dirs()] == ["listed"]
