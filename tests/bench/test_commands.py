"""The benchmarks and drills are tooling, not product: their commands come from the bench app (installed only in the
local and test settings), and the load test sends traffic to loopback addresses only."""

from __future__ import annotations

import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError


@pytest.mark.parametrize("name", ["bench_import", "bench_search", "bench_api", "loadtest", "faults"])
def test_tooling_commands_come_from_the_bench_app(name):
    assert get_commands()[name] == "bench"


def test_the_product_keeps_its_own_commands():
    commands = get_commands()
    assert {commands[name] for name in ("import_artworks", "requeue_pending", "setup_site")} == {"catalogue"}


def test_loadtest_refuses_a_site_that_is_not_on_loopback():
    with pytest.raises(CommandError, match="loopback"):
        call_command("loadtest", "--base-url", "http://192.0.2.10:8000")
