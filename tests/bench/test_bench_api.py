"""The bench_api command end to end on a tiny catalogue: it seeds, starts gunicorn, measures and stops it.

It asserts that the benchmark works (figures present, no errors, server gone), never how fast anything is.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalogue.models import Artwork, Prediction


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_bench_api_runs_end_to_end(active_model, tmp_path):
    out = StringIO()
    report = tmp_path / "bench.json"
    call_command(
        "bench_api",
        "--allow-any-database",
        "--artworks",
        "40",
        "--sequential",
        "5",
        "--requests",
        "8",
        "--concurrency",
        "2",
        "--workers",
        "1",
        "--reference",
        "3",
        "--json",
        str(report),
        stdout=out,
    )
    figures = json.loads(report.read_text())
    assert figures["artworks"] == 40 and figures["errors"] == 0
    assert (
        Prediction.objects.filter(model_version=active_model, artwork__status=Artwork.Status.READY).count()
        == 40
    )
    for stage in ("decode", "model", "search", "serialise", "app", "cpu", "client"):
        assert figures["sequential_ms"][stage]["p50"] > 0, stage
    assert figures["requests_per_second"] > 0
    assert "requests/s" in out.getvalue() and "goal" in out.getvalue()


@pytest.mark.django_db
def test_bench_api_refuses_a_database_not_named_for_it():
    with pytest.raises(CommandError, match="bench"):
        call_command("bench_api", "--artworks", "10")
    assert Artwork.objects.count() == 0
