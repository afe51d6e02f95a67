"""Fault drills (``make faults``) against real processes: a gunicorn web server and a Celery worker (with beat) on
embedded PostgreSQL and Redis of their own (``ARTSITE_VAR_DIR=var/faults``: the developer's are never touched).

Each drill prints PASS or FAIL with its figures:

1. a worker SIGKILLed mid-batch while another runs: its works are ready within seconds (its claim's lease runs
   out, the sweep hands them on), each classified once;
2. Redis stopped while curators upload (API and portal): uploads answer without error and stay pending; when
   Redis is back the periodic sweep sends them within seconds, and ``manage.py requeue_pending`` does at once;
   none stays pending;
3. PostgreSQL restarted: the web server and the worker carry on without a restart of their own;
4. the model file corrupt, then missing: the worker marks the artwork failed with that reason and ``/readyz``
   says so; repaired, a retry goes through.

The processes run with the production settings of the claim and the sweep (a 6 s lease, a sweep every 3 s by a
``celery beat`` of its own) and the production visibility timeout (600 s): nothing here waits for a redelivery.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.cluster import worker_kill_mid_batch, works_classified_once
from bench.multipart import multipart_body
from catalogue.models import Artwork

MODEL_NAME = "faults-model"


class Command(BaseCommand):
    help = (
        "Fault drills against a real web server and worker on their own embedded PostgreSQL and Redis "
        "(ARTSITE_VAR_DIR must be set, e.g. var/faults): worker SIGKILL, Redis down during uploads, PostgreSQL "
        "restart, corrupt and missing model. Prints PASS/FAIL for each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8790, help="Port for the drill's web server (127.0.0.1)."
        )
        parser.add_argument(
            "--only",
            default="",
            help="Comma-separated drills to run: worker,redis,postgres,model (default all).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        var = Path(settings.VAR_DIR).resolve()
        if var == (Path(settings.BASE_DIR) / "var").resolve():
            raise CommandError("Set ARTSITE_VAR_DIR to a folder of its own (make faults uses var/faults).")
        self.var, self.port = var, options["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.logs = var / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.results: list[tuple[str, bool, str]] = []
        only = {d.strip() for d in options["only"].split(",") if d.strip()}
        try:
            self._setup()
            drills = [
                ("worker", self.drill_worker_killed),
                ("redis", self.drill_redis_down),
                ("postgres", self.drill_postgres_restart),
                ("model", self.drill_model_broken),
            ]
            for name, drill in drills:
                if not only or name in only:
                    self.out(f"\n--- {drill.__doc__}")
                    try:
                        drill()
                    except Exception as exc:  # a drill that breaks is a FAIL, and the next drills still run
                        self.result(drill.__doc__ or name, False, f"{type(exc).__name__}: {exc}")
        finally:
            self._stop_all()
        self.out("\nSummary")
        for name, ok, detail in self.results:
            self.out(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
        if not all(ok for _, ok, _ in self.results):
            raise CommandError("some drills failed")

    # --- plumbing ---------------------------------------------------------------------------------------------

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def result(self, name: str, ok: bool, detail: str) -> None:
        self.results.append((name, ok, detail))
        self.out(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "artsite.settings.local",
            "DJANGO_DEBUG": "0",
            "ARTSITE_VAR_DIR": str(self.var),
            "ARTSITE_DEFAULT_MODEL": MODEL_NAME,
            "ARTSITE_SWEEP_SECONDS": os.environ.get("ARTSITE_SWEEP_SECONDS", "3"),
            # Named, so that a process starting while the drill has Redis stopped does not start it again.
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def _setup(self) -> None:
        from rest_framework.authtoken.models import Token

        from catalogue.services.accounts import curator_ensure
        from inference import registry
        from inference.models import ModelVersion
        from inference.services import model_version_set_active, model_versions_sync

        call_command("migrate", interactive=False, verbosity=0)
        # The drills damage the model file, so they use a copy of the newest version, in the drill's own folder.
        source = next((Path(c["path"]) for c in registry.list_cards() if c["version"] != MODEL_NAME), None)
        if source is None:
            raise CommandError("No model version to copy: train one first.")
        self.model_dir = self.var / "models" / MODEL_NAME
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        shutil.copytree(source, self.model_dir)
        card = json.loads((self.model_dir / "card.json").read_text())
        card["version"] = MODEL_NAME
        (self.model_dir / "card.json").write_text(json.dumps(card))
        self.good_model = (self.model_dir / "model.tflite").read_bytes()
        if str(self.model_dir.parent) not in [str(d) for d in settings.ARTSITE_MODEL_DIRS]:
            raise CommandError(f"{self.model_dir.parent} is not in ARTSITE_MODEL_DIRS")
        model_versions_sync()
        model_version_set_active(version=ModelVersion.objects.get(version=MODEL_NAME))
        user, _ = curator_ensure(username="drill", password="drill-password-1")
        user.set_password("drill-password-1")
        user.save()
        self.token = Token.objects.get_or_create(user=user)[0].key
        self.out(f"Drill site: {self.base}, data under {self.var}, model copied from {source.name}")
        self.start_web()
        self.start_beat()
        self.start_worker()

    def start_web(self) -> None:
        log = open(self.logs / "web.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes["web"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "artsite.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "60",
            ],
            cwd=settings.BASE_DIR,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait(lambda: self.http("GET", "/healthz")[0] in (200, 503), 120, "web server up")

    def start_worker(self, *, warm: bool = True, name: str = "worker") -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [
                sys.executable,
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
            ],
            cwd=settings.BASE_DIR,
            env=self.env(ARTSITE_WARM_MODEL_ON_START="1" if warm else "0"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_beat(self) -> None:
        """The periodic sweep in a process of its own, as in production: a worker's death does not stop it."""
        log = open(self.logs / "beat.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes["beat"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "artsite",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.var / "celerybeat-schedule"),
            ],
            cwd=settings.BASE_DIR,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _stop_all(self) -> None:
        from artsite import embedded

        for name in [n for n in self.processes if n != "web"]:
            self.kill(name, signal.SIGTERM)
        self.kill("web", signal.SIGTERM)
        embedded.redis_stop(self.var / "redis")
        self._pg_ctl("stop", "-m", "fast")

    def _pg_ctl(self, *args: str) -> None:
        import pgserver
        from pgserver import pg_ctl  # type: ignore[attr-defined]  # made at import time by setattr

        server = pgserver.get_server(self.var / "postgres" / "pgdata", cleanup_mode=None)
        pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if predicate():
                    return time.monotonic() - started
            except Exception:
                pass
            time.sleep(interval)
        raise TimeoutError(f"{what}: not within {timeout:.0f}s (logs in {self.logs})")

    def http(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        opener: Any = None,
    ) -> tuple[int, bytes, float]:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        started = time.perf_counter()
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=60) as response:
                return response.status, response.read(), time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), time.perf_counter() - started

    def api_upload(self, title: str, seed: int) -> tuple[int, int | None, float]:
        data, content_type = multipart_body(
            {"title": title}, {"image": ("drill.jpg", _image(seed), "image/jpeg")}
        )
        status, body, seconds = self.http(
            "POST",
            "/api/v1/artworks/",
            data=data,
            headers={"Authorization": f"Token {self.token}", "Content-Type": content_type},
        )
        artwork_id = json.loads(body).get("id") if status == 202 else None
        return status, artwork_id, seconds

    def portal_session(self) -> tuple[Any, str]:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.http("GET", "/accounts/login/", opener=opener)
        csrf = next(c.value for c in jar if c.name == "csrftoken" and c.value is not None)
        form = urllib.parse.urlencode(
            {"username": "drill", "password": "drill-password-1", "csrfmiddlewaretoken": csrf}
        ).encode()
        self.http(
            "POST",
            "/accounts/login/",
            data=form,
            opener=opener,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": self.base + "/accounts/login/",
            },
        )
        csrf = next(c.value for c in jar if c.name == "csrftoken" and c.value is not None)
        return opener, csrf

    def portal_upload(self, opener: Any, csrf: str, title: str, seed: int) -> tuple[int, str, float]:
        data, content_type = multipart_body(
            {"title": title, "csrfmiddlewaretoken": csrf},
            {"image": ("drill.jpg", _image(seed), "image/jpeg")},
        )
        request = urllib.request.Request(
            self.base + "/artworks/upload/",
            data=data,
            method="POST",
            headers={"Content-Type": content_type, "Referer": self.base + "/artworks/upload/"},
        )
        started = time.perf_counter()
        try:
            with opener.open(request, timeout=60) as response:  # follows the redirect to the artwork's page
                return response.status, response.geturl(), time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl(), time.perf_counter() - started

    @staticmethod
    def status_of(artwork_id: int) -> str:
        from django.db import close_old_connections

        close_old_connections()
        return Artwork.objects.filter(pk=artwork_id).values_list("status", flat=True).first() or "missing"

    # --- the drills -------------------------------------------------------------------------------------------

    def drill_worker_killed(self) -> None:
        """worker SIGKILLed mid-batch"""
        self.kill("worker", signal.SIGTERM)
        first = 1000 * (int(time.time()) % 100_000)  # new images on every run: the drill's database persists
        uploads = [self.api_upload(f"Drill: worker killed {i}", first + i) for i in range(80)]
        ids = [a for _, a, _ in uploads if a]
        self.out(f"  {len(ids)} works uploaded with no worker running; starting two workers")
        self.start_worker()
        self.start_worker(name="spare")
        # Each takes a batch of 32 into one model call; the one holding the most works is killed mid-batch.
        killed = worker_kill_mid_batch(self.processes, ids, timeout=180)
        self.out(
            f"  SIGKILLed {killed.name} holding {killed.held} works mid-batch ({killed.claimant}); the other "
            "worker carries on; nothing restarted"
        )
        self.wait(lambda: all(self.status_of(i) == "ready" for i in ids), 120, "all ready after the kill")
        recovered = time.monotonic() - killed.at
        counts = works_classified_once(ids)
        self.result(
            self.drill_worker_killed.__doc__ or "",
            counts.once == len(ids) and recovered <= 15,
            f"{len(ids)} works ready {recovered:.1f}s after the kill (goal 15 s; lease "
            f"{settings.ARTSITE_CLAIM_LEASE_SECONDS} s + sweep every {self.env()['ARTSITE_SWEEP_SECONDS']} s), "
            f"{counts.once} with exactly one prediction, {counts.claimed_twice} claimed twice",
        )
        for name in ("worker", "spare"):
            self.kill(name, signal.SIGTERM)
        self.start_worker()

    def drill_redis_down(self) -> None:
        """Redis stopped while curators upload"""
        from artsite import embedded

        redis_dir = self.var / "redis"
        embedded.redis_stop(redis_dir)
        self.wait(lambda: not _redis_answers(redis_dir / "redis.sock"), 20, "Redis stopped")
        self.out("  Redis stopped; uploading 4 works through the API and 2 through the portal")
        opener, csrf = self.portal_session()
        api = [self.api_upload(f"Drill: Redis down API {i}", 10 + i) for i in range(4)]
        portal = [self.portal_upload(opener, csrf, f"Drill: Redis down portal {i}", 20 + i) for i in range(2)]
        health = self.http("GET", "/readyz")
        live = self.http("GET", "/healthz")[0]
        ids = [a for _, a, _ in api if a]
        ids += [int(url.rstrip("/").rsplit("/", 1)[-1]) for status, url, _ in portal if "/artworks/" in url]
        answered = all(s == 202 for s, _, _ in api) and all(
            s == 200 and "/artworks/" in u for s, u, _ in portal
        )
        slowest = max(t for *_, t in api + portal)
        pending = [self.status_of(i) for i in ids]
        self.out(
            f"  answers: API {[s for s, _, _ in api]}, portal {[s for s, _, _ in portal]} (slowest {slowest:.1f}s); "
            f"statuses {sorted(set(pending))}; /readyz {health[0]} broker ok={json.loads(health[1])['broker']['ok']}; "
            f"/healthz {live}"
        )
        self.result(
            "uploads while Redis is down",
            answered and len(ids) == 6 and set(pending) == {"pending"} and health[0] == 503 and live == 200,
            f"6 uploads answered without error in <= {slowest:.1f}s, all pending, /readyz 503, /healthz 200",
        )

        embedded.redis_url(redis_dir)
        back = time.monotonic()
        self.out("  Redis started again; waiting for the periodic sweep")
        self.wait(lambda: all(self.status_of(i) == "ready" for i in ids), 240, "all ready after the sweep")
        ready_s = time.monotonic() - back
        self.result(
            "sweep after Redis is back",
            ready_s <= 15,
            f"all 6 ready {ready_s:.1f}s after Redis came back (goal 15 s; the sweep sends works "
            f"pending >= {settings.ARTSITE_PENDING_GRACE_SECONDS} s every {self.env()['ARTSITE_SWEEP_SECONDS']} s)",
        )

        embedded.redis_stop(redis_dir)
        self.wait(lambda: not _redis_answers(redis_dir / "redis.sock"), 20, "Redis stopped")
        more = [self.api_upload(f"Drill: Redis down again {i}", 30 + i) for i in range(2)]
        more_ids = [a for s, a, _ in more if s == 202 and a]
        embedded.redis_url(redis_dir)
        back = time.monotonic()
        result = subprocess.run(
            [sys.executable, "manage.py", "requeue_pending"],
            cwd=settings.BASE_DIR,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.out(f"  manage.py requeue_pending: {result.stdout.strip() or result.stderr.strip()[-300:]}")
        self.wait(
            lambda: all(self.status_of(i) == "ready" for i in more_ids), 180, "ready after requeue_pending"
        )
        self.result(
            "requeue_pending after Redis is back",
            len(more_ids) == 2 and result.returncode == 0,
            f"2 more uploads ready {time.monotonic() - back:.0f}s after Redis came back, through the command",
        )
        left = Artwork.objects.filter(status__in=["pending", "processing"]).count()
        self.result("nothing stays pending", left == 0, f"{left} artworks pending or processing at the end")

    def drill_postgres_restart(self) -> None:
        """PostgreSQL restarted"""
        self.wait(lambda: self.http("GET", "/healthz")[0] == 200, 60, "healthy before the restart")
        started = time.monotonic()
        self._pg_ctl("restart", "-m", "fast")
        restart_s = time.monotonic() - started
        statuses = [self.http("GET", "/healthz")[0] for _ in range(6)]
        status, artwork_id, _ = self.api_upload("Drill: after PostgreSQL restart", 40)
        pages = (
            [
                self.http(
                    "GET", f"/api/v1/artworks/{artwork_id}/", headers={"Authorization": f"Token {self.token}"}
                )[0]
                for _ in range(4)
            ]
            if artwork_id
            else []
        )
        self.wait(
            lambda: artwork_id is not None and self.status_of(artwork_id) == "ready",
            180,
            "artwork ready after the restart",
        )
        ok = all(s == 200 for s in statuses) and status == 202 and all(p == 200 for p in pages)
        self.result(
            self.drill_postgres_restart.__doc__ or "",
            ok,
            f"restart took {restart_s:.1f}s; then /healthz {statuses}, upload {status}, API reads {pages}, "
            f"the worker classified it: no process restarted",
        )

    def drill_model_broken(self) -> None:
        """model file corrupt or missing"""
        path = self.model_dir / "model.tflite"
        for seed, fault in ((50, "corrupt"), (51, "missing")):
            if fault == "corrupt":
                path.write_bytes(b"this is not a TFLite flatbuffer")
            else:
                path.unlink()
            self.kill("worker")
            self.start_worker()  # a worker starting now (a deploy, a restart) meets the damaged file
            status, artwork_id, _ = self.api_upload(f"Drill: model {fault}", seed)
            if status != 202 or artwork_id is None:
                raise AssertionError(f"upload answered {status}")

            def finished(a: int = artwork_id) -> bool:
                return self.status_of(a) in ("failed", "ready")

            self.wait(finished, 180, "artwork finished")
            error = Artwork.objects.get(pk=artwork_id).error
            code, body, _ = self.http("GET", "/readyz")
            model = json.loads(body)["model"]
            ok = (
                self.status_of(artwork_id) == "failed"
                and MODEL_NAME in error
                and code == 503
                and not model["ok"]
            )
            self.result(
                f"model file {fault}",
                ok,
                f"artwork failed with “{error[:140]}”; /readyz {code}: {model.get('error', '')[:120]}",
            )
            path.write_bytes(self.good_model)
            self.kill("worker")
            self.start_worker()
            self.wait(lambda: self.http("GET", "/readyz")[0] == 200, 90, "ready once repaired")
            opener, csrf = self.portal_session()
            form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode()
            self.http(
                "POST",
                f"/artworks/{artwork_id}/retry/",
                data=form,
                opener=opener,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": self.base + "/"},
            )

            def retried(a: int = artwork_id) -> bool:
                return self.status_of(a) == "ready"

            self.wait(retried, 180, "ready after the retry")
            self.result(
                f"model file {fault}, repaired",
                True,
                f"/healthz 200 again; artwork {artwork_id} retried and ready",
            )


def _redis_answers(socket_path: Path) -> bool:
    """Whether the embedded Redis answers on its socket (a drill waits until a stopped one no longer does)."""
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1.0).ping())
    except redis.RedisError:
        return False


def _image(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed + 1000)
    x = np.linspace(0, 1, 320)[None, :, None]
    y = np.linspace(0, 1, 240)[:, None, None]
    pixels = (
        rng.uniform(0, 255, (1, 1, 3))
        + rng.uniform(-120, 120, (1, 1, 3)) * x
        + rng.normal(0, 20, (240, 320, 3))
        + 40 * y
    )
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()
