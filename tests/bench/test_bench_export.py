"""bench_export streams the catalogue's export and prints its rows/s and memory checkpoints."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command, get_commands

from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


def test_bench_export_prints_rows_per_second_and_memory(active_model, tmp_path):
    for _ in range(3):
        ArtworkFactory(status="ready")
    assert get_commands()["bench_export"] == "bench"
    out = io.StringIO()
    target = tmp_path / "export.jsonl"
    call_command("bench_export", "--format", "jsonl", "--output", str(target), stdout=out)
    text = out.getvalue()
    assert "Exporting 3 works as jsonl" in text and "load average" in text
    assert "3 rows" in text and "rows/s" in text and "peak RSS" in text
    assert len(target.read_text(encoding="utf-8").splitlines()) == 3
