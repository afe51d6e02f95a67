"""``bench_explain``: it times the maps on the tiny test model and reports what it measured. It asserts what is
reported, never how fast (STYLE rule 15)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from tests.images import image_bytes


def _bench(*args: str) -> str:
    out = StringIO()
    call_command("bench_explain", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_bench_explain_is_tooling_from_the_bench_app():
    assert get_commands()["bench_explain"] == "bench"


def test_bench_explain_times_two_maps_per_image_with_one_model_call_each():
    figures = json.loads(_bench("--images", "2", "--json"))
    assert figures["version"] == "test-tiny" and figures["images"] == 2 and figures["maps"] == 4
    assert figures["per_map_ms"]["n"] == 4 and figures["per_image_ms"]["n"] == 2
    assert figures["per_map_ms"]["p95"] >= figures["per_map_ms"]["p50"] > 0
    assert figures["model_calls_per_map"] == 1 and figures["images_per_map"] == 8 * 8 + 1
    assert figures["interpreter_batches_per_map"] == 2  # 64 + 1 at the loader's largest batch
    assert 0 <= figures["faithfulness"]["share_salient_above_random_mean"] <= 1
    assert len(figures["load_average"]["before"]) == 3


def test_bench_explain_reads_a_folder_and_skips_what_is_not_an_image(tmp_path):
    (tmp_path / "painting").mkdir()
    for seed in range(2):
        (tmp_path / "painting" / f"{seed}.jpg").write_bytes(image_bytes(seed, size=(120, 90)))
    (tmp_path / "painting" / "broken.jpg").write_bytes(b"not an image")
    figures = json.loads(_bench(str(tmp_path), "--images", "5", "--grid", "4", "--patch", "0.4", "--json"))
    assert figures["images"] == 2 and figures["images_per_map"] == 4 * 4 + 1
    table = _bench(str(tmp_path), "--images", "1")
    assert "one map" in table and "Faithfulness" in table and "Load average" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder"], "not a folder"),
        (["--images", "0"], "at least 1"),
        (["--images", "1", "--grid", "2", "--patch", "0.1"], "gaps"),
    ],
)
def test_bench_explain_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        _bench(*args)
