"""The multi-host drill (``make cluster-drill``): two web servers and two Celery workers (and a ``celery beat``),
each in a working directory of its own with a media folder of its own, sharing only PostgreSQL, Redis and an S3
bucket (moto's S3 server over HTTP, or ``--s3-endpoint``). Nothing on disk is shared: images live in the bucket.

What it does, printing each step with its timing: uploads N works through web A (the API, a token); starts both
workers, which take the works in batches; SIGKILLs the worker holding the most works mid-batch; runs an import from
a third process meanwhile; waits until every work is ready. Then checks that every work is ready with exactly one
prediction (one per work and version: none classified twice, none lost), that web B answers for every upload, that
every display copy and thumbnail is readable through both web servers (each redirects to the bucket) and every
original is intact in the bucket, that the bucket holds exactly the works' files (display copies included), and that
no process wrote a file to its own disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.cluster import (
    Cluster,
    free_port,
    s3_server_start,
    seconds_to_ready,
    worker_kill_mid_batch,
    works_classified_once,
)
from bench.multipart import multipart_body
from bench.pictures import jpeg_bytes, synthetic_picture
from catalogue.models import Artwork
from catalogue.services.artworks import display_name

S3_KEYS = {"AWS_ACCESS_KEY_ID": "artsite-drill", "AWS_SECRET_ACCESS_KEY": "artsite-drill-secret"}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Command(BaseCommand):
    help = (
        "Two web servers and two workers with no shared disk (S3, PostgreSQL and Redis only): upload through one, "
        "read through the other, SIGKILL a worker mid-batch, import from a third process; checks every work is "
        "ready exactly once and every image readable everywhere. Loopback only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--uploads", type=int, default=80, help="Works uploaded through web A (default 80)."
        )
        parser.add_argument("--imports", type=int, default=20, help="Works imported by a third process (20).")
        parser.add_argument("--timeout", type=float, default=300.0, help="Seconds to wait for ready (300).")
        parser.add_argument(
            "--s3-endpoint",
            default="",
            help="An S3 API to use (e.g. MinIO on 127.0.0.1; credentials from AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY); default: start moto's S3 server on a free port.",
        )
        parser.add_argument("--keep", action="store_true", help="Keep the processes' folders and logs.")
        parser.add_argument(
            "--cold-workers",
            action="store_true",
            help="Workers load the model inside their first batch (a wide window to kill one mid-batch; the "
            "test's small drill uses it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.options = options
        # New images and titles on every run: the drill's database (var/cluster) persists between runs.
        self.run_id = uuid.uuid4().hex[:6]
        self.seed = 10_000 * (int(time.time()) % 100_000)
        self.root = Path(tempfile.mkdtemp(prefix="artsite-cluster-"))
        self.started = time.monotonic()
        self.failures: list[str] = []
        moto = None
        try:
            endpoint = options["s3_endpoint"]
            if not endpoint:
                port = free_port()
                moto = s3_server_start(port=port, log=self.root / "moto.log", env={**os.environ, **S3_KEYS})
                endpoint = f"http://127.0.0.1:{port}"
            self.cluster = Cluster(self.root, self._env(endpoint))
            self._drill()
        finally:
            if hasattr(self, "cluster"):
                self.cluster.stop_all()
            if moto is not None:
                moto.terminate()
                moto.wait(timeout=10)
            if options["keep"]:
                self.say(f"folders and logs kept in {self.root}")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        if self.failures:
            raise CommandError("; ".join(self.failures))
        self.stdout.write(
            self.style.SUCCESS("OK: every work ready exactly once, every image readable everywhere.")
        )

    # --- set-up -------------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.stdout.write(f"[{time.monotonic() - self.started:6.1f}s] {text}")
        self.stdout.flush()

    def expect(self, ok: bool, text: str) -> None:
        self.say(f"{'PASS' if ok else 'FAIL'}  {text}")
        if not ok:
            self.failures.append(text)

    def _env(self, endpoint: str) -> dict[str, str]:
        import boto3

        self.bucket = f"artsite-drill-{uuid.uuid4().hex[:10]}"
        keys = {k: os.environ.get(k, v) for k, v in S3_KEYS.items()}
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_lower(keys))
        self.s3.create_bucket(Bucket=self.bucket)
        db = settings.DATABASES["default"]
        host = db["HOST"] or db.get("OPTIONS", {}).get("host", "")
        port = db["PORT"] or db.get("OPTIONS", {}).get("port", "")
        return {
            **os.environ,
            **keys,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "artsite.settings.local"),
            "PYTHONPATH": str(settings.BASE_DIR),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "0",
            # The only shared things: the database, the broker, the bucket.
            "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={host}&port={port}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "ARTSITE_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_S3_ADDRESSING_STYLE": "path",
            # The code and its shipped model versions are on every host.
            "ARTSITE_MODEL_DIRS": ",".join(str(d) for d in settings.ARTSITE_MODEL_DIRS),
            "ARTSITE_DEFAULT_MODEL": settings.ARTSITE_DEFAULT_MODEL,
        }

    def _site(self) -> str:
        from rest_framework.authtoken.models import Token

        from catalogue.services.accounts import curator_ensure
        from inference.services import model_ensure_active

        call_command("migrate", interactive=False, verbosity=0)
        version = model_ensure_active()
        user, _ = curator_ensure(username="cluster-drill", password=uuid.uuid4().hex)
        self.say(f"site ready: model {version.version if version else '(none)'}, bucket {self.bucket}")
        return Token.objects.get_or_create(user=user)[0].key

    # --- the drill ------------------------------------------------------------------------------------------------

    def _drill(self) -> None:
        token = self._site()
        webs = {"web-a": free_port(), "web-b": free_port()}
        for name, port in webs.items():
            self.cluster.web(name, port)
        self.cluster.beat()
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in webs.items()}
        for name, url in self.urls.items():
            self._wait(lambda u=url: _status(u + "/healthz") in (200, 503), 180, f"{name} answering")
        self.say(
            f"web A {self.urls['web-a']}, web B {self.urls['web-b']} and beat up, each in its own folder"
        )

        uploaded = self._upload(token, self.options["uploads"], first=self.seed)
        self.say(f"{len(uploaded)} works uploaded through web A (202); no worker yet: all pending")
        for name in ("worker-1", "worker-2"):
            self.cluster.worker(name, warm=not self.options["cold_workers"])
        self.say("two workers started")
        killed = None
        for attempt in range(3):
            try:
                killed = worker_kill_mid_batch(self.cluster.processes, uploaded, timeout=240)
                break
            except RuntimeError:  # warm workers finished every batch between two looks: send another burst
                self.say("every work was ready before a worker was caught mid-batch; uploading more")
                uploaded += self._upload(
                    token, self.options["uploads"], first=self.seed + 1000 * (attempt + 1)
                )
        if killed is None:
            raise CommandError("no worker could be caught mid-batch")
        self.say(f"SIGKILLed {killed.name} mid-batch, holding {killed.held} works ({killed.claimant})")

        with ThreadPoolExecutor(max_workers=1) as pool:  # the import runs meanwhile, from a third process
            importing = pool.submit(self._import, self.options["imports"])
            self._wait(
                lambda: (
                    not Artwork.objects.filter(pk__in=killed.held_ids)
                    .exclude(status=Artwork.Status.READY)
                    .exists()
                ),
                self.options["timeout"],
                "the killed worker's works ready",
            )
            recovered = seconds_to_ready(killed)
            took = f"{recovered:.1f}s" if recovered is not None else "(unknown)"
            self.say(f"the killed worker's {killed.held} works ready {took} after the kill")
            importing.result()
        imported = list(
            Artwork.objects.filter(title__startswith=f"cluster drill import {self.run_id}").values_list(
                "pk", flat=True
            )
        )
        every = uploaded + imported
        self._wait(
            lambda: Artwork.objects.filter(pk__in=every, status=Artwork.Status.READY).count() == len(every),
            self.options["timeout"],
            "every work ready",
        )
        self.say(f"all {len(every)} works ready")
        self._checks(uploaded, imported, token)

    def _upload(self, token: str, n: int, first: int = 0) -> list[int]:
        def one(i: int) -> int | None:
            data, content_type = multipart_body(
                {"title": f"Cluster drill upload {first + i}"},
                {
                    "image": (
                        f"upload-{i}.jpg",
                        jpeg_bytes(synthetic_picture(10_000 + first + i)),
                        "image/jpeg",
                    )
                },
            )
            request = urllib.request.Request(
                self.urls["web-a"] + "/api/v1/artworks/",
                data=data,
                method="POST",
                headers={"Authorization": f"Token {token}", "Content-Type": content_type},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return int(json.loads(response.read())["id"])
            except urllib.error.HTTPError as exc:
                self.say(f"upload {i}: HTTP {exc.code} {exc.read()[:200]!r}")
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = [i for i in pool.map(one, range(n)) if i is not None]
        self.expect(len(ids) == n, f"{len(ids)}/{n} uploads accepted by web A")
        return ids

    def _import(self, n: int) -> None:
        """Run ``import_artworks`` in a process of its own (its own folder, the images on its own disk)."""
        source = self.root / "importer-source" / "painting"
        source.mkdir(parents=True)
        for i in range(n):
            (source / f"cluster-drill-import-{self.run_id}-{i:03d}.jpg").write_bytes(
                jpeg_bytes(synthetic_picture(self.seed + 500 + i))
            )
        started = time.monotonic()
        result = self.cluster.run(
            "importer",
            str(Path(settings.BASE_DIR) / "manage.py"),
            "import_artworks",
            str(source.parent),
            timeout=600,
        )
        last = (result.stdout.strip().splitlines() or [""])[-1]
        self.expect(
            result.returncode == 0,
            f"import from a third process: {time.monotonic() - started:.1f}s, exit {result.returncode}: "
            f"{last[:160] or result.stderr[-300:]}",
        )

    def _checks(self, uploaded: list[int], imported: list[int], token: str) -> None:
        every = uploaded + imported
        counts = works_classified_once(every)
        self.expect(
            counts.once == len(every) == counts.predictions,
            f"{counts.once}/{len(every)} works ready with exactly one prediction ({counts.predictions} in all); "
            f"{counts.claimed_twice} claimed again after the kill",
        )
        self.expect(
            len(imported) == self.options["imports"], f"{len(imported)}/{self.options['imports']} imported"
        )
        answers = [
            _json(self.urls["web-b"] + f"/api/v1/artworks/{i}/", {"Authorization": f"Token {token}"})
            for i in uploaded
        ]
        self.expect(
            all(a.get("status") == "ready" for a in answers),
            f"web B answers for all {len(uploaded)} uploads, every one ready",
        )
        works = list(Artwork.objects.filter(pk__in=every).values_list("pk", "image", "thumbnail", "sha256"))
        unreadable = self._unreadable(works)
        self.expect(
            not unreadable,
            f"{len(works)} display copies and thumbnails read through both web servers from the bucket, "
            "every original intact in it "
            f"({len(unreadable)} unreadable{': ' + ', '.join(unreadable[:3]) if unreadable else ''})",
        )
        keys = {
            o["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for o in page.get("Contents", [])
        }
        # The originals and thumbnails, and the display copies the web servers made from them on first request.
        files = {
            name
            for _, image, thumbnail, sha256 in works
            for name in (image, thumbnail, display_name(sha256=sha256))
        }
        self.expect(
            keys == files, f"the bucket holds exactly the works' {len(files)} files ({len(keys)} objects)"
        )
        local = self.cluster.local_files()
        self.expect(not local, f"no process wrote a file to its own disk ({len(local)} found)")

    def _unreadable(self, works: list[tuple[int, str, str, str]]) -> list[str]:
        opener = urllib.request.build_opener(_NoRedirect)

        def read(url: str) -> bytes | None:
            try:
                opener.open(url, timeout=30)
            except urllib.error.HTTPError as exc:
                if exc.code != 302:
                    return None
                with urllib.request.urlopen(exc.headers["Location"], timeout=30) as response:
                    return bytes(response.read())
            return None

        def one(work: tuple[int, str, str, str]) -> list[str]:
            pk, image, thumbnail, sha256 = work
            bad = []
            original = self.s3.get_object(Bucket=self.bucket, Key=image)["Body"].read()
            if hashlib.sha256(original).hexdigest() != sha256:
                bad.append(f"{image} in the bucket")
            # Originals are for curators' sessions; the display copy, which a web server makes by reading the
            # original from the bucket, shows that every web server reads every image.
            for web, base in self.urls.items():
                if not read(f"{base}/artworks/{pk}/display.jpg"):
                    bad.append(f"display copy of {pk} via {web}")
                if not read(f"{base}/media/{thumbnail}"):
                    bad.append(f"{thumbnail} via {web}")
            return bad

        with ThreadPoolExecutor(max_workers=8) as pool:
            return [b for bad in pool.map(one, works) for b in bad]

    def _wait(self, predicate: Any, timeout: float, what: str) -> float:
        from django.db import close_old_connections

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            close_old_connections()
            try:
                if predicate():
                    return time.monotonic() - started
            except Exception:  # a process still starting
                pass
            time.sleep(0.2)
        logs = "\n".join(
            f"--- {n}\n{self.cluster.log_tail(n, 1500)}" for n in ("web-a", "worker-1", "worker-2")
        )
        raise CommandError(f"{what}: not within {timeout:.0f}s\n{logs}")


def _lower(keys: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": keys["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": keys["AWS_SECRET_ACCESS_KEY"],
    }


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return dict(json.loads(response.read()))
    except (urllib.error.URLError, ValueError):
        return {}
