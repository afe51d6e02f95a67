"""``bench_model``: the serving benchmark runs on a tiny version, prints both paths, the runtime's footprint before
and after, and records its figures. It asserts what is reported, never how fast (STYLE rule 15)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from inference import loader
from tests.conftest import write_tiny_model


@pytest.fixture
def tiny_version(tmp_path, settings):
    """A tiny untrained version in a fresh model dir: ``tiny_version("name", **card_fields) -> folder``."""
    settings.ARTSITE_MODEL_DIRS = [tmp_path]
    settings.ARTSITE_DEFAULT_MODEL = ""
    loader.clear_cache()

    def install(version: str, **card_fields):  # type: ignore[no-untyped-def]
        folder = write_tiny_model(tmp_path, version)
        card = json.loads((folder / "card.json").read_text())
        (folder / "card.json").write_text(json.dumps({**card, **card_fields}))
        return folder

    yield install
    loader.clear_cache()


def _bench(version: str, *options: str) -> str:
    """stdout of a small ``bench_model`` run; ``options`` override the small defaults (later ones win)."""
    out = StringIO()
    defaults = [
        "--images",
        "2",
        "--repeats",
        "3",
        "--reference-repeats",
        "2",
        "--batch-size",
        "4",
        "--batch-repeats",
        "2",
        "--startup-repeats",
        "1",
        "--warm-classifications",
        "2",
    ]
    call_command("bench_model", "--model", version, *defaults, *options, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_bench_model_command_reports_both_paths_and_the_footprint(tiny_version):
    tiny_version("tiny-v1")
    figures = json.loads(_bench("tiny-v1", "--images", "3", "--json"))
    assert figures["version"] == "tiny-v1" and figures["backend"] == "tflite-fp32"
    assert figures["single"]["serving"]["n"] == 3 and figures["single"]["model_predict"]["n"] == 2
    assert figures["single"]["keras_tf_function"]["n"] == 3
    assert figures["batch"]["serving_images_per_s"] > 0 and figures["batch"]["model_predict_images_per_s"] > 0
    footprint = figures["footprint"]
    # Before: TensorFlow and Keras in the process; after: neither (each a fresh process that classified).
    assert {"tensorflow", "keras"} <= set(footprint["before"]["training_only_modules"])
    assert footprint["after"]["training_only_modules"] == []
    for path in ("before", "after"):
        assert footprint[path]["startup_s"] > 0 and footprint[path]["rss_mb"] > 0
        assert footprint[path]["peak_rss_mb"] >= footprint[path]["rss_mb"]
    installed = footprint["installed"]
    assert installed["training_mb"] > installed["serving_mb"] > 0
    assert "tensorflow-cpu" in [name for name, _ in installed["largest_training_only"]]
    assert len(footprint["load_average"]["before"]) == 3
    table = _bench("tiny-v1", "--repeats", "2", "--batch-size", "2", "--batch-repeats", "1")
    assert "model.predict" in table and "faster" in table
    assert "start-up to first classification" in table and "Load average" in table


def test_bench_model_records_on_the_card(tiny_version):
    from inference.registry import read_card

    folder = tiny_version("fast-v1")
    figures = json.loads(_bench("fast-v1", "--json", "--record", "--no-footprint"))
    assert "footprint" not in figures
    assert figures["single"]["serving"]["cpu_p50_ms"] > 0
    assert figures["batch"]["keras_tf_function_images_per_s"] > 0
    card = read_card(folder)
    assert card["benchmark"]["backend"] == "tflite-fp32" and "measured" in card["benchmark"]
    assert "## Speed" in (folder / "MODEL_CARD.md").read_text()
