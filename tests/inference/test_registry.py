import json

import pytest

from inference import registry
from tests.inference.conftest import write_card


def test_version_dirs_lists_folders_with_a_card_across_all_dirs(model_dirs):
    write_card(model_dirs[0] / "shipped-a", "shipped-a")
    write_card(model_dirs[1] / "trained-b", "trained-b")
    (model_dirs[0] / "backbones").mkdir()  # not a version: no card
    assert [p.name for p in registry.version_dirs()] == ["shipped-a", "trained-b"]


def test_find_version_and_missing(model_dirs):
    write_card(model_dirs[1] / "trained-b", "trained-b")
    assert registry.find_version("trained-b") == model_dirs[1] / "trained-b"
    with pytest.raises(registry.ModelNotFound) as caught:
        registry.find_version("nope")
    assert isinstance(caught.value, registry.ModelUnavailable)
    assert "nope" in caught.value.reason
    with pytest.raises(registry.ModelNotFound):
        registry.find_version("../trained-b")


def test_read_card_and_list_cards_newest_first(model_dirs):
    write_card(model_dirs[0] / "old", "old", created="2026-01-01T00:00:00+00:00")
    write_card(model_dirs[1] / "new", "new", created="2026-06-01T00:00:00+00:00")
    (model_dirs[1] / "broken").mkdir()
    (model_dirs[1] / "broken" / "card.json").write_text("{not json")
    assert registry.read_card(model_dirs[0] / "old")["version"] == "old"
    assert registry.read_card(model_dirs[0] / "old" / "card.json")["classes"][0] == "drawings"
    with pytest.raises(ValueError, match="could not be read"):
        registry.read_card(model_dirs[1] / "broken")
    cards = registry.list_cards()
    assert [c["version"] for c in cards] == ["new", "old"]
    assert cards[0]["path"] == str(model_dirs[1] / "new")
    assert registry.newest_version() == "new"


def test_new_version_name_is_unique(model_dirs):
    first = registry.new_version_name("seed-cnn")
    assert first.startswith("seed-cnn-") and len(first) == len("seed-cnn-20261121-1530")
    (model_dirs[1] / first).mkdir()
    second = registry.new_version_name("seed-cnn")
    assert second != first and second.startswith(first)


def test_cards_are_plain_json(model_dirs):
    card = write_card(model_dirs[0] / "v", "v")
    assert json.loads((model_dirs[0] / "v" / "card.json").read_text()) == card


def test_default_version_name_setting_then_marker_then_oldest(model_dirs, settings):
    assert registry.default_version_name() is None
    write_card(model_dirs[0] / "old", "old", created="2026-01-01T00:00:00+00:00")
    write_card(model_dirs[1] / "new", "new", created="2026-06-01T00:00:00+00:00")
    assert registry.default_version_name() == "old"
    (model_dirs[0] / "DEFAULT").write_text("new\n")
    assert registry.default_version_name() == "new"
    settings.ARTSITE_DEFAULT_MODEL = "chosen"
    assert registry.default_version_name() == "chosen"


def test_default_architecture_is_the_default_versions(model_dirs):
    with pytest.raises(LookupError, match="No default model version"):
        registry.default_architecture()
    write_card(model_dirs[0] / "lite", "lite", architecture="efficientnet-lite1", input_size=224)
    (model_dirs[0] / "DEFAULT").write_text("lite\n")
    assert registry.default_architecture() == registry.DefaultArchitecture(
        architecture="efficientnet-lite1", input_size=224, version="lite"
    )
    (model_dirs[0] / "DEFAULT").write_text("gone\n")
    with pytest.raises(registry.ModelNotFound):
        registry.default_architecture()
