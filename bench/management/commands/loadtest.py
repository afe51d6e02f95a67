"""Load test (``make loadtest``) against a running site (``make run``, or the compose stack): 50 uploads at once
through the API while 16 clients browse the catalogue and artwork pages.

Checks that every upload is accepted (202), reaches ``ready``, and is in the catalogue exactly once (none lost, none
duplicated), and that no request fails; prints page latency p50/p95 under that load and the time from upload to
ready. Uploads are real images from ``../shared/data/art-images`` with a few random pixels changed (so each is a new
file, never a duplicate of one already imported), or generated ones when that folder is missing.

Traffic goes only to a loopback address (127.0.0.0/8, localhost, ::1): the command refuses any other base URL. It is
bounded: ``--timeout`` seconds at most, then it stops and reports what did not finish.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench.multipart import multipart_body

DEFAULT_IMAGES = settings.BASE_DIR.parent / "shared" / "data" / "art-images"


@dataclass
class Result:
    ok: bool
    status: int
    seconds: float
    kind: str
    error: str = ""


@dataclass
class Upload:
    index: int
    title: str
    started: float = 0.0
    accepted: float = 0.0
    status: int = 0
    artwork_id: int | None = None
    ready_at: float | None = None
    final_status: str = ""
    error: str = ""


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pages: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        with self.lock:
            self.pages.append(result)


def _loopback_only(base_url: str) -> None:
    host = urllib.parse.urlsplit(base_url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise CommandError(f"Cannot resolve {host!r}: {exc}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise CommandError(
            f"Refusing to send load to {host!r}: only loopback addresses (127.0.0.1, ::1) are allowed."
        )


class Command(BaseCommand):
    help = (
        "Load test a running site: N uploads at once through the API while M clients browse pages; checks that "
        "every upload reaches ready exactly once; prints page p50/p95 and upload-to-ready times. Loopback only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="The running site (loopback only)."
        )
        parser.add_argument("--uploads", type=int, default=50, help="Uploads sent at once (default 50).")
        parser.add_argument(
            "--browsers", type=int, default=16, help="Clients browsing meanwhile (default 16)."
        )
        parser.add_argument(
            "--username", default="curator", help="Account for browsing and uploads (a curator)."
        )
        parser.add_argument("--password", default="curator", help="Its password, to log the browsers in.")
        parser.add_argument(
            "--token",
            default="",
            help="API token for the uploads (default: the account's token in this project's database, made if "
            "missing; give one when the site runs on another database, e.g. compose).",
        )
        parser.add_argument(
            "--images", type=Path, default=DEFAULT_IMAGES, help=f"Real images (default {DEFAULT_IMAGES})."
        )
        parser.add_argument(
            "--timeout", type=float, default=600.0, help="Give up after this many seconds (600)."
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed (default: a new one each run)."
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Burst mode: --uploads (default here 200) at once with no browsing; prints the time until all "
            "are ready and the workers' artworks/s beside the bulk import's rate measured in this run (the import "
            "writes into the same site: this process must use the site's settings and database).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = options["base_url"].rstrip("/")
        _loopback_only(base)
        self.base, self.options = base, options
        self.rng = random.Random(options["seed"])
        self.deadline = time.monotonic() + options["timeout"]
        run = uuid.uuid4().hex[:8]
        token = options["token"] or self._token(options["username"])
        try:
            health = self._get_json("/healthz", {})
        except urllib.error.URLError as exc:
            raise CommandError(
                f"No site answers at {base} ({exc.reason}): start it with `make run`."
            ) from None
        self.stdout.write(
            f"Site {base}: healthz ok={health.get('ok')} model={health.get('model', {}).get('version')}"
        )

        if options["burst"]:
            self._burst(run, token)
            return
        images = self._images(options["uploads"])
        uploads = [Upload(index=i, title=f"Loadtest {run} #{i:02d}") for i in range(options["uploads"])]
        stats = Stats()
        done = threading.Event()
        openers = [self._login() for _ in range(options["browsers"])]
        browsers = [
            threading.Thread(target=self._browse, args=(stats, done, uploads, opener), daemon=True)
            for opener in openers
        ]
        for thread in browsers:
            thread.start()
        time.sleep(1.0)  # browsing first, then the burst of uploads arrives into it
        self.stdout.write(f"{len(browsers)} clients browsing; sending {len(uploads)} uploads at once ...")
        barrier = threading.Barrier(len(uploads))
        with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
            list(pool.map(lambda u: self._upload(u, images[u.index], token, barrier), uploads))
        accepted = [u for u in uploads if u.status == 202 and u.artwork_id]
        self.stdout.write(f"{len(accepted)}/{len(uploads)} uploads accepted (202); waiting for ready ...")
        self._wait_ready(accepted, token)
        done.set()
        for thread in browsers:
            thread.join(timeout=30)
        self._report(run, uploads, stats, token)

    def _burst(self, run: str, token: str) -> None:
        """N uploads at once, no browsing: all ready when, at what rate, beside the import's rate."""
        from django.utils import timezone

        from bench.burst import import_rate_measure, worker_backlog_measure, worker_rate_read

        n = self.options["uploads"] if self.options["uploads"] != 50 else 200
        images = self._images(3 * n)
        self.stdout.write(f"Bulk import of {n} images of the same kind into the same site (this process) ...")
        rate = import_rate_measure(images=images[n : 2 * n], prefix=f"loadtest-import-{run}")
        self.stdout.write(
            f"  import: {rate.images} images in {rate.seconds:.1f}s = {rate.per_second:.1f} images/s end to end"
        )
        uploads = [Upload(index=i, title=f"Loadtest {run} #{i:03d}") for i in range(n)]
        self.stdout.write(f"Sending {n} uploads at once (no browsing) ...")
        barrier = threading.Barrier(len(uploads))
        with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
            list(pool.map(lambda u: self._upload(u, images[u.index], token, barrier), uploads))
        accepted = [u for u in uploads if u.status == 202 and u.artwork_id]
        first = min(u.accepted for u in accepted) if accepted else time.monotonic()
        first_accepted = timezone.now() - timedelta(seconds=time.monotonic() - first)
        last_answer = max((u.accepted for u in accepted), default=first) - first
        self.stdout.write(
            f"  {len(accepted)}/{n} accepted (202), the last {last_answer:.1f}s after the first; waiting ..."
        )
        self._wait_ready(accepted, token)
        worker = worker_rate_read(
            artwork_ids=[u.artwork_id for u in accepted if u.artwork_id], first_accepted=first_accepted
        )
        lag = worker.seconds_to_all_ready - last_answer
        self.stdout.write(
            f"Burst: {worker.ready}/{n} ready {worker.seconds_to_all_ready:.1f}s after the first upload was "
            f"accepted ({worker.per_second:.1f} artworks/s end to end); the last {lag:.1f}s after the last upload "
            "was accepted (near 0: the uploads, not the workers, set the pace)"
        )
        self.stdout.write(f"The workers on a backlog: {n} works stored, then queued at once ...")
        backlog = worker_backlog_measure(
            images=images[2 * n :], prefix=f"Loadtest {run} backlog", timeout=300
        )
        ratio = backlog.per_second / rate.per_second if rate.per_second else 0.0
        self.stdout.write(
            f"Workers: {backlog.ready}/{n} ready in {backlog.seconds_to_all_ready:.1f}s = {backlog.per_second:.1f} "
            f"artworks/s; the import {rate.per_second:.1f} images/s end to end: {ratio:.2f}x (goal >= 0.5x); "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        problems = _upload_problems(uploads, [u.title for u in accepted])
        if backlog.ready != n:
            problems.append(f"{n - backlog.ready} backlog works not ready")
        if problems or ratio < 0.5:
            for problem in problems[:30]:
                self.stderr.write(f"  PROBLEM: {problem}")
            raise CommandError(f"{len(problems)} problem(s); workers at {ratio:.2f}x the import's rate")

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _request(
        self,
        opener: Any,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, bytes, float]:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        started = time.perf_counter()
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read()
                return response.status, body, time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), time.perf_counter() - started

    def _get_json(self, path: str, headers: dict[str, str]) -> dict[str, Any]:
        status, body, _ = self._request(urllib.request.build_opener(), "GET", path, headers=headers)
        try:
            return json.loads(body)
        except ValueError:
            raise CommandError(f"GET {path} answered {status}, not JSON: {body[:200]!r}") from None

    def _token(self, username: str) -> str:
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"No account {username!r} in this database: run `make run` first, or pass --token."
            )
        return Token.objects.get_or_create(user=user)[0].key

    def _login(self) -> Any:
        """A cookie-keeping opener logged in through the portal's log-in form (CSRF token and all)."""
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, _, _ = self._request(opener, "GET", "/accounts/login/")
        csrf = next((c.value for c in jar if c.name == "csrftoken"), "")
        form = urllib.parse.urlencode(
            {
                "username": self.options["username"],
                "password": self.options["password"],
                "csrfmiddlewaretoken": csrf,
            }
        ).encode()
        status, _, _ = self._request(
            opener,
            "POST",
            "/accounts/login/",
            data=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": self.base + "/accounts/login/",
            },
        )
        if not any(c.name == "sessionid" for c in jar):
            raise CommandError(
                f"Could not log in as {self.options['username']!r} (status {status}); see --password."
            )
        return opener

    # --- the three kinds of traffic --------------------------------------------------------------------------

    def _browse(self, stats: Stats, done: threading.Event, uploads: list[Upload], opener: Any) -> None:
        rng = random.Random(self.rng.random())
        known_ids: list[int] = []
        while not done.is_set() and time.monotonic() < self.deadline:
            pick = rng.random()
            if pick < 0.35 or not known_ids:
                path, kind = f"/?page={rng.randint(1, 3)}", "catalogue page"
            elif pick < 0.45:
                path, kind = "/?q=Loadtest", "catalogue search"
            else:
                path, kind = f"/artworks/{rng.choice(known_ids)}/", "artwork page"
            status, body, seconds = self._request(opener, "GET", path)
            # urllib follows redirects: a session that was lost would land on the log-in form with a 200.
            ok = status == 200 and b'name="password"' not in body
            stats.add(Result(ok=ok, status=status, seconds=seconds, kind=kind))
            if kind.startswith("catalogue") and status == 200:
                known_ids = sorted({*known_ids, *(int(x) for x in _artwork_links(body))})[-200:]
            known_ids.extend(u.artwork_id for u in uploads if u.artwork_id and u.artwork_id not in known_ids)

    def _upload(self, upload: Upload, image: bytes, token: str, barrier: threading.Barrier) -> None:
        data, content_type = multipart_body(
            {"title": upload.title, "artist": "Load test"},
            {"image": (f"load-{upload.index}.jpg", image, "image/jpeg")},
        )
        barrier.wait(timeout=60)  # all at once
        upload.started = time.monotonic()
        status, body, _ = self._request(
            urllib.request.build_opener(),
            "POST",
            "/api/v1/artworks/",
            data=data,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
            timeout=120,
        )
        upload.accepted, upload.status = time.monotonic(), status
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        upload.artwork_id = payload.get("id")
        if status != 202:
            upload.error = f"{status}: {body[:200]!r}"

    def _wait_ready(self, uploads: list[Upload], token: str) -> None:
        opener = urllib.request.build_opener()
        headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        waiting = {u.artwork_id: u for u in uploads}
        while waiting and time.monotonic() < self.deadline:
            for artwork_id, upload in list(waiting.items()):
                status, body, _ = self._request(
                    opener, "GET", f"/api/v1/artworks/{artwork_id}/", headers=headers
                )
                state = json.loads(body).get("status") if status == 200 else f"HTTP {status}"
                if state in ("ready", "failed"):
                    upload.final_status, upload.ready_at = state, time.monotonic()
                    del waiting[artwork_id]
            time.sleep(0.25)
        for upload in waiting.values():
            upload.final_status = "not finished"

    # --- report ----------------------------------------------------------------------------------------------

    def _images(self, n: int) -> list[bytes]:
        from PIL import Image

        files = sorted(p for p in Path(self.options["images"]).rglob("*.jpg"))
        out = []
        for i in range(n):
            if files:
                image = Image.open(self.rng.choice(files)).convert("RGB")
                image.thumbnail((1024, 1024))
            else:
                image = Image.fromarray(
                    np.random.default_rng(i).integers(0, 255, (384, 512, 3), dtype=np.uint8)
                )
            pixels = np.asarray(image).copy()
            # A few random pixels changed: a new file (new sha256) that looks the same to the model.
            for _ in range(8):
                y, x = self.rng.randrange(pixels.shape[0]), self.rng.randrange(pixels.shape[1])
                pixels[y, x] = [self.rng.randrange(256) for _ in range(3)]
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            out.append(buffer.getvalue())
        return out

    def _report(self, run: str, uploads: list[Upload], stats: Stats, token: str) -> None:
        headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        listed = self._get_json(f"/api/v1/artworks/?search=Loadtest+{run}&page_size=100", headers)
        titles = [a["title"] for a in listed.get("results", [])]
        problems = _upload_problems(uploads, titles)
        failed_pages = [p for p in stats.pages if not p.ok]
        self._report_uploads(run, uploads, titles)
        self._report_pages(stats, failed_pages)
        for page in failed_pages[:10]:
            problems.append(f"{page.kind}: HTTP {page.status} {page.error}")
        if problems:
            for problem in problems[:30]:
                self.stderr.write(f"  PROBLEM: {problem}")
            raise CommandError(f"{len(problems)} problem(s)")
        self.stdout.write(
            self.style.SUCCESS("OK: every upload reached ready exactly once; no request failed.")
        )

    def _report_uploads(self, run: str, uploads: list[Upload], titles: list[str]) -> None:
        accept_s = np.array([u.accepted - u.started for u in uploads if u.status == 202])
        ready_s = np.array(
            [u.ready_at - u.started for u in uploads if u.ready_at and u.final_status == "ready"]
        )
        self.stdout.write("")
        self.stdout.write(
            f"Uploads: {len(uploads)} sent at once; {int((np.array([u.status for u in uploads]) == 202).sum())} "
            f"accepted; {len(ready_s)} ready; in the catalogue: {len(titles)} (run {run})"
        )
        if len(accept_s):
            self.stdout.write(
                f"  upload answered (202) in: p50 {np.percentile(accept_s, 50):.2f}s, "
                f"p95 {np.percentile(accept_s, 95):.2f}s, max {accept_s.max():.2f}s"
            )
        if len(ready_s):
            self.stdout.write(
                f"  upload -> ready:          p50 {np.percentile(ready_s, 50):.1f}s, "
                f"p95 {np.percentile(ready_s, 95):.1f}s, max {ready_s.max():.1f}s "
                f"({len(ready_s) / ready_s.max():.2f} artworks/s through the workers)"
            )

    def _report_pages(self, stats: Stats, failed_pages: list[Result]) -> None:
        by_kind: dict[str, list[float]] = {}
        for page in stats.pages:
            if page.ok:
                by_kind.setdefault(page.kind, []).append(page.seconds * 1000)
        self.stdout.write(
            f"Pages under load: {len(stats.pages)} requests by {self.options['browsers']} clients, "
            f"{len(failed_pages)} failed"
        )
        all_ms = [ms for values in by_kind.values() for ms in values]
        for kind, values in [*sorted(by_kind.items()), ("all pages", all_ms)]:
            if values:
                self.stdout.write(
                    f"  {kind:<17} n={len(values):>5}  p50 {np.percentile(values, 50):7.1f} ms  "
                    f"p95 {np.percentile(values, 95):7.1f} ms"
                )


def _upload_problems(uploads: list[Upload], titles: list[str]) -> list[str]:
    """Uploads lost, duplicated, refused or not ready: what the load test exists to catch."""
    ids = [u.artwork_id for u in uploads if u.artwork_id]
    problems = []
    if len(set(ids)) != len(ids):
        problems.append("duplicate artwork ids in the answers")
    if sorted(titles) != sorted(u.title for u in uploads):
        problems.append(
            f"the catalogue holds {len(titles)} of the {len(uploads)} uploads (lost or duplicated)"
        )
    for upload in uploads:
        if upload.status != 202:
            problems.append(f"upload {upload.index}: {upload.error}")
        elif upload.final_status != "ready":
            problems.append(f"upload {upload.index} (artwork {upload.artwork_id}): {upload.final_status}")
    return problems


def _artwork_links(body: bytes) -> list[str]:
    import re

    return re.findall(rb'href="/artworks/(\d+)/"', body)[:50]
