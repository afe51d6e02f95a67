"""Helpers of the drills (``faults``, ``cluster_drill``): kill the worker that holds a batch of works mid-way,
check afterwards that every work was classified exactly once, and run a drill's processes each in a folder of its
own (web servers, workers, beat, moto's S3 server)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import close_old_connections
from django.db.models import Count, Max
from django.utils import timezone

from catalogue.models import Artwork, Prediction


@dataclass(frozen=True)
class KilledWorker:
    name: str  # the key of the process in the drill's table
    claimant: str  # the claim it held (host:pid:random)
    held: int  # works it held, processing, when it died
    at: float  # time.monotonic() of the kill
    held_ids: tuple[int, ...] = ()
    when: datetime | None = None  # the kill on the database's clock (to compare with ``processed_at``)


def worker_kill_mid_batch(
    processes: dict[str, subprocess.Popen], ids: Sequence[int], *, timeout: float
) -> KilledWorker:
    """Wait until one of ``processes`` holds a claim on some of ``ids``, then SIGKILL that worker's whole process
    group (the main process and its pool, as a crashed host would) while the works are still processing. The
    claim names the pool process's pid; its process group is the worker's (started with ``start_new_session``)."""
    deadline = time.monotonic() + timeout
    groups = {process.pid: name for name, process in processes.items()}
    while time.monotonic() < deadline:
        close_old_connections()
        claims = Counter(
            Artwork.objects.filter(pk__in=ids, status=Artwork.Status.PROCESSING).values_list(
                "claimed_by", flat=True
            )
        )
        for claimant, _ in claims.most_common():
            try:
                group = os.getpgid(int(claimant.split(":")[1]))
            except (IndexError, ValueError, ProcessLookupError):
                continue
            if group not in groups:
                continue
            os.killpg(group, signal.SIGKILL)
            at, when = time.monotonic(), timezone.now()
            processes.pop(groups[group]).wait(timeout=10)
            held = tuple(
                Artwork.objects.filter(claimed_by=claimant, status=Artwork.Status.PROCESSING).values_list(
                    "pk", flat=True
                )
            )
            return KilledWorker(
                name=groups[group], claimant=claimant, held=len(held), at=at, held_ids=held, when=when
            )
        if (
            not claims
            and not Artwork.objects.filter(pk__in=ids).exclude(status=Artwork.Status.READY).exists()
        ):
            raise RuntimeError("every work was ready before a worker could be caught mid-batch")
        time.sleep(0.02)
    raise TimeoutError(f"no worker claimed any of the {len(ids)} works within {timeout:.0f}s")


@dataclass(frozen=True)
class ClassifiedCounts:
    once: int  # ready with exactly one prediction (of the one serving version)
    ready: int
    claimed_twice: int  # works whose first claim died with its worker (attempts > 1)
    predictions: int


def works_classified_once(ids: Sequence[int]) -> ClassifiedCounts:
    close_old_connections()
    works = Artwork.objects.filter(pk__in=ids)
    per_work = dict(
        Prediction.objects.filter(artwork_id__in=ids)
        .values("artwork_id")
        .annotate(n=Count("id"))
        .values_list("artwork_id", "n")
    )
    ready = set(works.filter(status=Artwork.Status.READY).values_list("pk", flat=True))
    return ClassifiedCounts(
        once=sum(1 for i in ready if per_work.get(i) == 1),
        ready=len(ready),
        claimed_twice=works.filter(attempts__gt=1).count(),
        predictions=sum(per_work.values()),
    )


# --- Processes of a drill, each in a working directory of its own --------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_server_start(*, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """moto's S3 server in a process of its own, answering the S3 API over HTTP on 127.0.0.1:port."""
    handle = open(log, "ab")  # noqa: SIM115 - the process keeps it
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"moto's S3 server did not start (log: {log})") from None
            time.sleep(0.2)


class Cluster:
    """The drill's processes: each runs in a folder of its own (its working directory, its ``var/`` and media
    folder: nothing on disk is shared) with the same environment, which names the only shared things, PostgreSQL,
    Redis and the S3 bucket."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.processes: dict[str, subprocess.Popen] = {}

    def folder(self, name: str) -> Path:
        return self.root / name

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen:
        home = self.folder(name)
        (home / "media").mkdir(parents=True, exist_ok=True)
        log = open(home / "process.log", "ab")  # noqa: SIM115 - the process keeps it
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=home,
            env={
                **self.env,
                "ARTSITE_VAR_DIR": str(home / "var"),
                "DJANGO_MEDIA_ROOT": str(home / "media"),
                **extra,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def run(self, name: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """A command to its end, in a folder of its own (e.g. an import from a third host)."""
        home = self.folder(name)
        (home / "media").mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, *args],
            cwd=home,
            env={**self.env, "ARTSITE_VAR_DIR": str(home / "var"), "DJANGO_MEDIA_ROOT": str(home / "media")},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def web(self, name: str, port: int) -> subprocess.Popen:
        return self.start(
            name,
            "-m",
            "gunicorn",
            "artsite.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "120",
        )

    def worker(self, name: str, *, warm: bool) -> subprocess.Popen:
        return self.start(
            name,
            "-m",
            "celery",
            "-A",
            "artsite",
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}@%h",
            ARTSITE_WARM_MODEL_ON_START="1" if warm else "0",
        )

    def beat(self) -> subprocess.Popen:
        return self.start("beat", "-m", "celery", "-A", "artsite", "beat", "--loglevel=INFO")

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)

    def local_files(self) -> list[Path]:
        """Files any process wrote into its own media folder (with S3 there must be none)."""
        return [p for p in self.root.glob("*/media/**/*") if p.is_file()]

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.folder(name) / "process.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def seconds_to_ready(killed: KilledWorker) -> float | None:
    """Seconds from the kill until the last work the killed worker held was ready (``processed_at``)."""
    close_old_connections()
    last = Artwork.objects.filter(pk__in=killed.held_ids).aggregate(last=Max("processed_at"))["last"]
    return (last - killed.when).total_seconds() if last and killed.when else None
