"""Datasets, training and the train_model / evaluate_model commands, on tiny generated images."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference import datasets, evaluation, registry, tflite
from inference.architectures import CLASSES
from inference.loader import ModelUnavailable, get_classifier
from inference.training import TrainingConfig, TrainingEvents, class_weights, train
from tests.inference.conftest import TINY_SIZE, make_image_folder, write_card

PER_CLASS = 4


def tiny_config(**overrides) -> TrainingConfig:
    """The seed CNN at the tiny images' size, one epoch: seconds to train."""
    return TrainingConfig.for_architecture(
        "seed-cnn", **{"input_size": TINY_SIZE, "epochs": 1, "batch_size": 8, **overrides}
    )


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
    [
        ("Drawings", "drawings"),
        ("drawing", "drawings"),
        ("Engravings", "engraving"),
        ("ICONOGRAPHY", "iconography"),
        ("paintings", "painting"),
        ("Sculpture", "sculpture"),
        ("photos", None),
    ],
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


def test_config_resolves_the_defaults_per_architecture():
    seed = TrainingConfig.for_architecture("seed-cnn")
    assert (seed.input_size, seed.epochs, seed.batch_size, seed.tflite) == (150, 20, 32, "fp32")
    assert not seed.tail_trained
    lite = TrainingConfig.for_architecture("efficientnet-lite1", soup=3)
    assert (lite.input_size, lite.epochs, lite.batch_size, lite.tflite, lite.soup) == (240, 15, 64, "int8", 3)
    assert lite.tail_trained and lite.fine_tune_from == "block6a"
    with pytest.raises(ValueError, match="Unknown architecture"):
        TrainingConfig.for_architecture("resnet")
    with pytest.raises(ValueError, match="at least one epoch"):
        TrainingConfig.for_architecture("seed-cnn", epochs=0)
    with pytest.raises(ValueError, match="quantization"):
        TrainingConfig.for_architecture("seed-cnn", tflite="int4")
    with pytest.raises(TypeError):
        TrainingConfig.for_architecture("seed-cnn", epoch=3)  # a misspelt field is refused, not ignored


def test_config_defaults_to_the_default_versions_architecture_and_input_size(model_dirs):
    write_card(model_dirs[0] / "shipped", "shipped", architecture="efficientnet-lite1", input_size=224)
    (model_dirs[0] / "DEFAULT").write_text("shipped\n")
    config = TrainingConfig.for_architecture()
    assert (config.architecture, config.input_size, config.epochs, config.tflite, config.soup) == (
        "efficientnet-lite1",
        224,
        15,
        "int8",
        1,  # the card names no soup
    )
    assert TrainingConfig.for_architecture(input_size=192).input_size == 192


def test_train_refuses_images_read_at_another_size(tiny_set, tmp_path):
    with pytest.raises(ValueError, match="read at 32 px; the config says 48"):
        train(train_data=tiny_set, config=tiny_config(input_size=48), output_dir=tmp_path)


def test_one_epoch_training_writes_a_loadable_version(tiny_set, model_dirs):
    result = train(
        train_data=tiny_set,
        val_data=tiny_set,
        config=tiny_config(),
        output_dir=model_dirs[1],
        version="tiny-trained",
    )
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
    first = train(train_data=tiny_set, config=tiny_config(seed=7), output_dir=tmp_path, version="a")
    second = train(train_data=tiny_set, config=tiny_config(seed=7), output_dir=tmp_path, version="b")
    assert first.card["history"] == second.card["history"]
    assert first.card["metrics"]["accuracy"] == second.card["metrics"]["accuracy"]
    assert first.card["metrics"]["evaluated_on"] == "holdout"


def test_train_and_evaluate_commands(image_root, model_dirs):
    out = StringIO()
    call_command(
        "train_model",
        str(image_root),
        "--architecture",
        "seed-cnn",
        "--epochs",
        "1",
        "--input-size",
        str(TINY_SIZE),
        "--batch-size",
        "8",
        "--name",
        "cmd-v1",
        "--val-dir",
        str(image_root),
        stdout=out,
    )
    assert "Wrote" in out.getvalue()
    assert (model_dirs[1] / "cmd-v1" / "card.json").is_file()  # default output dir: the last model dir

    out = StringIO()
    call_command("evaluate_model", str(image_root), "--model", "cmd-v1", "--json", stdout=out)
    report = json.loads(out.getvalue())
    for key in ("accuracy", "macro_f1", "ece", "precision_at_5", "per_type", "n"):
        assert key in report
    assert report["n"] == 5 * PER_CLASS

    out = StringIO()
    call_command(
        "evaluate_model", str(image_root), "--catalogue", str(image_root), stdout=out
    )  # newest version
    assert "precision@5" in out.getvalue() and "cmd-v1" in out.getvalue()


def test_train_model_trains_the_default_versions_architecture_unless_told(image_root, model_dirs):
    write_card(model_dirs[0] / "shipped", "shipped", architecture="seed-cnn", input_size=TINY_SIZE)
    (model_dirs[0] / "DEFAULT").write_text("shipped\n")
    call_command(
        "train_model",
        str(image_root),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--name",
        "plain",
        stdout=StringIO(),
    )
    card = registry.read_card(model_dirs[1] / "plain")
    assert (card["architecture"], card["input_size"]) == ("seed-cnn", TINY_SIZE)


def test_commands_refuse_bad_input(image_root, model_dirs):
    # (--from-catalogue is implemented now: tests/inference/test_catalogue_training.py)
    with pytest.raises(CommandError, match="Give DATA_DIR"):
        call_command("train_model")
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("train_model", str(image_root / "nope"))
    with pytest.raises(CommandError, match="No default model version.*Give --architecture"):
        call_command("train_model", str(image_root))  # model_dirs holds no version
    with pytest.raises(CommandError, match="no folder named 'ghost'"):
        call_command("evaluate_model", str(image_root), "--model", "ghost")


def test_train_model_without_the_backbone_weights_says_how_to_port_them(image_root, tmp_path, monkeypatch):
    # Lite2's ImageNet weights are not shipped; point every variant at an empty folder so the test holds even
    # on a machine where someone has ported them.
    monkeypatch.setattr(
        "inference.efficientnet_lite.DEFAULT_WEIGHTS_PATH",
        tmp_path / "efficientnet_lite0_imagenet.weights.h5",
    )
    out_dir = tmp_path / "versions"
    with pytest.raises(CommandError, match=r"No ImageNet weights for EfficientNet-Lite2.*--variant lite2"):
        call_command(
            "train_model",
            str(image_root),
            "--architecture",
            "efficientnet-lite2",
            "--output-dir",
            str(out_dir),
        )
    assert not out_dir.exists()


def test_augmented_views_are_reproducible_and_vary(image_root):
    dataset = datasets.read_folder(image_root, TINY_SIZE)
    first = np.concatenate([batch for _, batch in datasets.augmented_views(dataset, 0, seed=3, workers=2)])
    again = np.concatenate([batch for _, batch in datasets.augmented_views(dataset, 0, seed=3, workers=1)])
    other = np.concatenate([batch for _, batch in datasets.augmented_views(dataset, 1, seed=3)])
    assert first.shape == dataset.images.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)  # independent of thread timing
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, dataset.images)
    subset = dataset.subset(np.array([1, 3]))
    assert [f.relative for f in subset.files] == [dataset.paths[1], dataset.paths[3]]
    bare = datasets.ImageSet(
        images=dataset.images,
        labels=dataset.labels,
        classes=dataset.classes,
        input_size=TINY_SIZE,
        paths=dataset.paths,
        fingerprint="x",
    )
    with pytest.raises(ValueError, match="source files"):
        next(datasets.augmented_views(bare, 0, seed=0))


@pytest.fixture(scope="module")
def lite_set(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("lite-images"), per_class=4, size=110)
    return datasets.read_folder(root, 96, workers=2)


def _train_tiny_lite(lite_set, model_dirs, version: str, **options):  # type: ignore[no-untyped-def]
    """One epoch of the EfficientNet-Lite0 recipe on the tiny set (it is its own val set); (result, stages seen)."""
    stages: list[str] = []
    config = TrainingConfig.for_architecture(
        "efficientnet-lite0", input_size=96, epochs=1, augment_views=1, holdout_fraction=0.25, **options
    )
    result = train(
        train_data=lite_set,
        val_data=lite_set,
        config=config,
        output_dir=model_dirs[1],
        version=version,
        events=TrainingEvents(on_stage=stages.append),
    )
    return result, stages


@pytest.mark.slow  # ~25 s: builds EfficientNet-Lite0 with its ImageNet weights, trains, converts, loads twice
def test_efficientnet_recipe_writes_keras_and_a_verified_tflite_copy(lite_set, model_dirs):
    result, stages = _train_tiny_lite(lite_set, model_dirs, "lite-tiny", tflite="fp32", soup=2)
    assert sorted(p.name for p in result.path.iterdir()) == [
        "MODEL_CARD.md",
        "card.json",
        "confusion.png",
        "curves.png",
        "model.keras",
        "model.tflite",
    ]
    card = registry.read_card(result.path)
    assert card["architecture"] == "efficientnet-lite0" and card["input_size"] == 96
    assert card["hyperparameters"]["fine_tune_from"] == "block6a"
    assert "3 views per image" in card["hyperparameters"]["augmentation"]
    assert "TRAINING images" in card["calibration"]["method"]
    assert (
        card["hyperparameters"]["soup"]["members"] == 2
        and len(card["hyperparameters"]["soup"]["per_member"]) == 2
    )
    assert {"loss", "val_loss", "member2_loss", "member2_val_loss"} <= set(card["history"])
    assert "training (soup member 2 of 2)" in stages
    assert card["serving"]["quantization"] == "fp32"
    assert card["serving"]["agreement_with_keras"]["top1_agreement"] == 1.0
    check = card["serving"]["check"]  # what activation requires, measured through the serving runtime
    assert (
        check["passed"] is True
        and check["by"] == "training"
        and check["runtime"].startswith("ai-edge-litert")
    )
    assert check["file_sha256"] == tflite.file_sha256(result.path / "model.tflite")
    for key in ("accuracy", "macro_f1", "ece", "precision_at_5"):
        assert key in card["serving"]["metrics"]
    assert card["training_cpu_seconds"] > 0
    assert [s for s in stages if s.startswith("caching")] == [
        "caching trunk activations (view 1 of 3)",
        "caching trunk activations (view 2 of 3)",
        "caching trunk activations (view 3 of 3)",
    ]

    fast = get_classifier("lite-tiny")
    assert fast.backend == "tflite-fp32"
    reference = get_classifier("lite-tiny", backend="keras")
    p_fast, e_fast = fast.predict_arrays(lite_set.images[:4])
    p_ref, e_ref = reference.predict_arrays(lite_set.images[:4])
    np.testing.assert_allclose(p_fast, p_ref, atol=1e-3)
    np.testing.assert_allclose(e_fast, e_ref, atol=1e-3)
    # The frozen trunk kept its ImageNet weights, and every batch norm (trunk and tail) its ImageNet statistics.
    from inference.efficientnet_lite import build_efficientnet_lite0

    imagenet = build_efficientnet_lite0((96, 96, 3), weights="imagenet")
    for name in ("stem_conv", "block5c_project_conv", "block5c_project_bn", "block6a_bn", "top_bn"):
        for trained, original in zip(
            reference.model.get_layer(name).get_weights(), imagenet.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(trained, original, err_msg=name)


@pytest.mark.slow  # ~25 s: like the test above, with the int8 copy
def test_int8_recipe_trains_the_tail_on_the_int8_trunk_it_serves(lite_set, model_dirs):
    result, stages = _train_tiny_lite(lite_set, model_dirs, "lite-int8")
    card = registry.read_card(result.path)
    assert card["serving"]["quantization"] == "int8"
    assert stages.index("quantising the trunk (int8)") < stages.index(
        "caching trunk activations (view 1 of 3)"
    )
    assert card["hyperparameters"]["trunk_activations"].startswith("the int8 trunk of the serving copy")
    assert "calibrated on 15 training images" in card["hyperparameters"]["trunk_activations"]
    assert "calibrated on 15 training images" in card["serving"]["quantization_detail"]
    served = get_classifier("lite-int8")
    assert served.backend == "tflite-int8"
    probabilities, embeddings = served.predict_arrays(lite_set.images[:3])
    assert probabilities.shape == (3, 5) and embeddings.shape == (3, 128)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The card's float figures are model.keras end to end: its catalogue embeddings too, not the int8 trunk's.
    _, keras_embeddings = get_classifier("lite-int8", backend="keras").predict_arrays(lite_set.images)
    expected = evaluation.precision_at_k(keras_embeddings, lite_set.labels, keras_embeddings, lite_set.labels)
    assert card["metrics"]["precision_at_5"] == pytest.approx(expected, abs=1e-6)


def test_a_failed_tflite_copy_keeps_the_trained_model(tiny_set, model_dirs, monkeypatch):
    """When converting fails, the trained version is still written (it can be evaluated, and converted again
    later) and the card says why there is no model.tflite; serving refuses it with that reason rather than
    importing TensorFlow."""
    from inference.training import tflite_copy

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(tflite_copy, "convert", broken)
    result = train(
        train_data=tiny_set,
        val_data=tiny_set,
        config=tiny_config(tflite="fp32"),
        output_dir=model_dirs[1],
        version="no-fast-copy",
    )
    assert (result.path / "model.keras").is_file() and not (result.path / "model.tflite").exists()
    card = registry.read_card(result.path)
    assert card["serving"] is None and "converter crashed" in card["serving_error"]
    assert get_classifier("no-fast-copy", backend="keras").backend == "keras"
    with pytest.raises(ModelUnavailable, match="model.tflite is missing"):
        get_classifier("no-fast-copy")
