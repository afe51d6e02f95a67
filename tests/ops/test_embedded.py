"""The embedded servers can be stopped (``make stop``) as well as started."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


@pytest.mark.slow  # ~5 s: initdb and start of a PostgreSQL of the test's own
def test_postgres_stop_shuts_the_embedded_server_down(tmp_path: Path) -> None:
    import psycopg2

    from artsite import embedded

    folder = Path(f"/tmp/artsite-ops-pg-{tmp_path.name}")  # short: the socket path is limited to ~100 bytes
    try:
        database = embedded.postgres_settings(folder, database="stop_me")
        pid = int((folder / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        psycopg2.connect(
            dbname="stop_me", user="postgres", host=database["HOST"], port=database["PORT"]
        ).close()

        assert embedded.postgres_stop(folder) is True
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(dbname="stop_me", user="postgres", host=database["HOST"], port=database["PORT"])
        assert embedded.postgres_stop(folder) is False  # nothing left to stop
    finally:
        embedded.postgres_stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
