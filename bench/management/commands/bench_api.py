"""Benchmark of ``POST /api/v1/classify/`` (``make bench-api``): a real gunicorn server, a catalogue of at least
10,000 artworks, a typical 300x320 JPEG.

1. Seeds the catalogue fast, once: synthetic artwork rows with realistic embeddings (the model's own embeddings of
   generated pictures, scattered around them) written with ``bulk_create`` — no files decoded, no worker. Later runs
   reuse the rows and only top the catalogue up.
2. Reference, in this process and in the same run: the view's work without HTTP, DRF or auth — decode and check,
   model, vector search — so the figures show what the web layer adds.
3. Starts gunicorn on the same database, warms every worker (model loaded and compiled), and sends the JPEG:
   first one request at a time, then from 8 concurrent clients. The server reports where its time went in the
   ``Server-Timing`` header (parse, decode, model, search, serialise, render, app = the whole view); the client
   measures the round trip. Prints p50/p95 per stage and requests/s, beside the goal (p50 <= 30 ms, p95 <= 60 ms).

The command writes thousands of rows, so it refuses a database whose name lacks "bench": ``make bench-api`` sets
``ARTSITE_DATABASE_NAME=artsite_bench_api`` and ``DJANGO_MEDIA_ROOT=var/bench-api/media`` (not bench-import's
``artsite_bench``, which that benchmark drops and recreates). With no model version on disk, it benchmarks an
untrained stand-in of the intended architecture (EfficientNet-Lite0 at 224 px): latency depends on the network's
shape, not on its weights; the report says so.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from PIL import Image

from bench.classify_client import (
    GUNICORN_CONFIG,
    classify_concurrently,
    classify_request,
    free_port,
    server_stop,
)
from bench.pictures import jpeg_bytes, synthetic_picture
from bench.seeding import catalogue_seed
from bench.stand_in import efficientnet_stand_in

GOAL_P50_MS = 30.0
GOAL_P95_MS = 60.0
STAGES = ("auth", "parse", "decode", "model", "search", "serialise", "render", "app", "cpu")
BENCH_USER = "bench-api"
STAND_IN_DIR = "bench-api-models"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


class Command(BaseCommand):
    help = (
        "Benchmark POST /api/v1/classify/ on a real gunicorn server against a catalogue of >= 10,000 artworks: "
        "server-side p50/p95 per stage (Server-Timing) and requests/s with concurrent clients. Needs a database "
        "whose name contains 'bench' (make bench-api uses artsite_bench_api)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--artworks",
            type=int,
            default=10_000,
            help="Catalogue size to reach; missing rows are added (default: 10000).",
        )
        parser.add_argument(
            "--model",
            default=None,
            help="Model version to benchmark (default: the version a fresh database activates, else "
            "the bench database's active version, else an untrained stand-in).",
        )
        parser.add_argument(
            "--stand-in",
            default="efficientnet-lite0",
            choices=["efficientnet-lite0", "seed-cnn"],
            help="Architecture of the stand-in used when no model version exists "
            "(default: efficientnet-lite0).",
        )
        parser.add_argument(
            "--image", type=Path, default=None, help="JPEG to classify (default: a generated 300x320 JPEG)."
        )
        parser.add_argument(
            "--sequential", type=int, default=150, help="Requests sent one at a time (default: 150)."
        )
        parser.add_argument(
            "--requests",
            type=int,
            default=400,
            help="Requests sent by the concurrent clients in all (default: 400).",
        )
        parser.add_argument("--concurrency", type=int, default=8, help="Concurrent clients (default: 8).")
        parser.add_argument(
            "--workers", type=int, default=None, help="gunicorn worker processes (default: the CPU count)."
        )
        parser.add_argument(
            "--tf-threads",
            type=int,
            default=None,
            help="TensorFlow threads per worker (default: CPU count / workers, at least 1).",
        )
        parser.add_argument(
            "--reference", type=int, default=60, help="In-process reference iterations (default: 60)."
        )
        parser.add_argument(
            "--xla",
            choices=["default", "on", "off"],
            default="default",
            help="Compile the model with XLA (settings.ARTSITE_TF_JIT) in this process and the "
            "server: default = as the project serves (the loader's default), on, or off.",
        )
        parser.add_argument("--port", type=int, default=0, help="Port for gunicorn (default: a free one).")
        parser.add_argument(
            "--json", type=Path, default=None, help="Also write the figures to this JSON file."
        )
        parser.add_argument(
            "--allow-any-database",
            action="store_true",
            help="Run even if the database name does not contain 'bench' (it adds rows!).",
        )

    # --- handle ---------------------------------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        name = connection.settings_dict["NAME"]
        if "bench" not in name and not options["allow_any_database"]:
            raise CommandError(
                f"The database is {name!r}; this benchmark adds {options['artworks']} rows. Run it as `make bench-api` "
                "(ARTSITE_DATABASE_NAME=artsite_bench_api) or pass --allow-any-database."
            )
        cores = os.cpu_count() or 1
        workers = options["workers"] or cores
        tf_threads = options["tf_threads"] or max(1, cores // workers)

        if options["xla"] != "default":
            settings.ARTSITE_TF_JIT = options["xla"] == "on"
        call_command("migrate", verbosity=0)
        from inference.loader import configure_threads

        configure_threads(tf_threads)
        version, model_note = self._model(options["model"], options["stand_in"])
        from inference.loader import get_classifier

        classifier = get_classifier(version.version)
        model_note += f", {classifier.input_size} px, XLA {'on' if classifier.jit_compiled else 'off'}"
        self.stdout.write(f"Model {version.version}: {model_note}")
        total = catalogue_seed(version=version, classifier=classifier, target=options["artworks"])
        self.stdout.write(
            f"Catalogue: {total} ready artworks with embeddings of {version.version} (database {name})"
        )

        data = options["image"].read_bytes() if options["image"] else jpeg_bytes(synthetic_picture(2024))
        with Image.open(io.BytesIO(data)) as probe:
            self.stdout.write(
                f"Query image: {probe.format} {probe.width}x{probe.height}, {len(data) / 1024:.0f} KiB"
            )
        reference = self._reference(data, options["reference"])
        token = self._token()
        connection.close()  # the server's workers open their own

        port = options["port"] or free_port()
        load_before = os.getloadavg()[0]
        server = self._start_server(port, workers, tf_threads)
        try:
            self._wait_ready(port, token, server)
            warm = [classify_request(port, token, data) for _ in range(4 * workers)]
            if any(r["status"] != 200 for r in warm):
                raise CommandError(f"classify answered {warm[-1]['status']}: {warm[-1]['body'][:300]!r}")
            sequential = [classify_request(port, token, data) for _ in range(options["sequential"])]
            concurrent, wall = classify_concurrently(
                port, token, data, options["requests"], options["concurrency"]
            )
            load_after = os.getloadavg()[0]
        finally:
            server_stop(server)

        results = self._report(
            version=version.version,
            model_note=model_note,
            total=total,
            workers=workers,
            tf_threads=tf_threads,
            cores=cores,
            reference=reference,
            sequential=sequential,
            concurrent=concurrent,
            wall=wall,
            concurrency=options["concurrency"],
            load=(load_before, load_after),
        )
        if options["json"]:
            options["json"].write_text(json.dumps(results, indent=2))

    # --- model ----------------------------------------------------------------------------------------------------

    def _model(self, requested: str | None, stand_in: str) -> tuple[Any, str]:
        """The version to benchmark, active: the requested one; else the version a fresh database activates (the
        shipped default: what the product serves, even if an older bench database still has another active); else
        the bench database's active version unless it is a stand-in; else an untrained stand-in."""
        from inference.models import ModelVersion
        from inference.registry import default_version_name
        from inference.services import model_version_set_active, model_versions_sync

        model_versions_sync()  # the project's model folders only: a stand-in is never the default
        version = ModelVersion.objects.active().first()
        if requested:
            version = ModelVersion.objects.filter(version=requested).first()
            if version is None:
                raise CommandError(f"No model version {requested!r} in {settings.ARTSITE_MODEL_DIRS}.")
        else:
            name = default_version_name()
            real = ModelVersion.objects.filter(version=name).first() if name else None
            if real is not None and not real.card.get("stand_in"):
                version = real
            elif version is not None and version.card.get("stand_in"):
                version = None
        if version is None:
            version = self._stand_in(stand_in, Path(settings.VAR_DIR) / STAND_IN_DIR)
        else:
            version = model_version_set_active(version=version)
        if version.card.get("stand_in"):
            self._use_model_dir(Path(version.path).parent)
        note = (
            "untrained stand-in (weights do not change latency)"
            if version.card.get("stand_in")
            else "trained"
        )
        return version, f"{version.card.get('architecture', '?')}, {note}"

    @staticmethod
    def _use_model_dir(root: Path) -> None:
        if root not in settings.ARTSITE_MODEL_DIRS:
            settings.ARTSITE_MODEL_DIRS = [*settings.ARTSITE_MODEL_DIRS, root]

    def _stand_in(self, architecture: str, root: Path) -> Any:
        """Write an untrained model of the intended architecture as a version folder and activate it."""
        import keras

        from inference import architectures
        from inference.models import ModelVersion
        from inference.services import model_version_set_active, model_versions_sync
        from inference.training.tflite_copy import serving_copy_add

        name = f"bench-{architecture}"
        folder = root / name
        if not (folder / "model.tflite").is_file():
            self.stdout.write(
                f"No model version found: building an untrained {architecture} stand-in in {folder}"
            )
            keras.utils.set_random_seed(0)
            if architecture in architectures.ARCHITECTURES:
                input_size = architectures.DEFAULT_INPUT_SIZES.get(architecture, 224)
                model = architectures.build(architecture, input_size=input_size)
            else:
                input_size = 224
                model = efficientnet_stand_in(input_size)
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / "model.keras")
            card = {
                "version": name,
                "created": "2000-01-01T00:00:00",
                "architecture": architecture,
                "classes": list(architectures.CLASSES),
                "input_size": input_size,
                "embedding_dim": 128,
                "temperature": 1.0,
                "metrics": {},
                "stand_in": True,
            }
            (folder / "card.json").write_text(json.dumps(card, indent=2))
            # Only the TFLite copy serves (with its check on the card); fp32: no images to calibrate int8 on.
            serving_copy_add(folder, quantization="fp32")
        self._use_model_dir(root)
        model_versions_sync()
        return model_version_set_active(version=ModelVersion.objects.get(version=name))

    # --- catalogue ------------------------------------------------------------------------------------------------

    # --- reference and server -------------------------------------------------------------------------------------

    def _reference(self, data: bytes, repeats: int) -> dict[str, list[float]]:
        """The classify view's work without HTTP: decode and check, model, vector search (ms per stage)."""
        from catalogue.services.artworks import image_check
        from catalogue.services.classification import image_classify

        out: dict[str, list[float]] = {"decode": [], "model": [], "search": [], "total": [], "cpu": []}
        for i in range(repeats + 5):
            started, started_cpu = time.perf_counter(), time.process_time()
            checked = image_check(data=data)
            decoded = time.perf_counter()
            result = image_classify(image=checked.decoded.image, k=5)
            done = time.perf_counter()
            if i >= 5:  # the first few warm caches and connections
                out["decode"].append((decoded - started) * 1000)
                out["model"].append(result.timings["model"] * 1000)
                out["search"].append(result.timings["search"] * 1000)
                out["total"].append((done - started) * 1000)
                out["cpu"].append((time.process_time() - started_cpu) * 1000)
        return out

    def _token(self) -> str:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from rest_framework.authtoken.models import Token

        user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
        user.groups.add(Group.objects.get(name="Viewers"))
        return Token.objects.get_or_create(user=user)[0].key

    def _start_server(self, port: int, workers: int, tf_threads: int) -> subprocess.Popen:
        log_dir = Path(settings.VAR_DIR) / "bench-api"
        log_dir.mkdir(parents=True, exist_ok=True)
        config = log_dir / "gunicorn_conf.py"
        config.write_text(GUNICORN_CONFIG)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "artsite.settings.local"),
            "DJANGO_DEBUG": "0",
            "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "ARTSITE_MODEL_DIRS": ",".join(str(d) for d in settings.ARTSITE_MODEL_DIRS),
            "ARTSITE_THROTTLE_CLASSIFY": "1000000/min",
            "BENCH_TF_THREADS": str(tf_threads),
            "BENCH_TF_JIT": {True: "on", False: "off", None: "default"}.get(
                getattr(settings, "ARTSITE_TF_JIT", None), "default"
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        log = open(log_dir / "gunicorn.log", "wb")  # noqa: SIM115 - the server process holds it
        self.stdout.write(
            f"Starting gunicorn: {workers} worker(s) x {tf_threads} TensorFlow thread(s), port {port} "
            f"(log: {log_dir / 'gunicorn.log'})"
        )
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "artsite.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--timeout",
                "120",
                "--config",
                str(config),
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, port: int, token: str, server: subprocess.Popen, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError("gunicorn exited; see var/bench-api/gunicorn.log")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/v1/types/", headers={"Authorization": f"Token {token}"})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise CommandError("gunicorn did not answer in time; see var/bench-api/gunicorn.log")

    # --- report ---------------------------------------------------------------------------------------------------

    def _report(self, **r: Any) -> dict[str, Any]:
        from rich.console import Console
        from rich.table import Table

        seq, con = _stages(r["sequential"]), _stages(r["concurrent"])
        errors = sum(1 for s in r["sequential"] + r["concurrent"] if s["status"] != 200)
        ref = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for k, v in r["reference"].items()}
        rate = len(r["concurrent"]) / r["wall"] if r["wall"] else float("nan")

        table = Table(
            title=f"POST /api/v1/classify/ — {r['total']} artworks, model {r['version']} ({r['model_note']})"
        )
        table.add_column("stage (ms)")
        for col in (
            "1 client p50",
            "1 client p95",
            f"{r['concurrency']} clients p50",
            f"{r['concurrency']} clients p95",
            "in-process p50",
        ):
            table.add_column(col, justify="right")
        ref_names = {"decode": "decode", "model": "model", "search": "search", "app": "total", "cpu": "cpu"}
        for stage in (*STAGES, "client"):
            if stage not in seq:
                continue
            label = {
                "app": "app (whole view)",
                "cpu": "cpu (process CPU time)",
                "client": "client round trip",
            }.get(stage, stage)
            ref_cell = f"{ref[ref_names[stage]]['p50']:.1f}" if stage in ref_names else ""
            table.add_row(
                label,
                f"{seq[stage]['p50']:.1f}",
                f"{seq[stage]['p95']:.1f}",
                f"{con[stage]['p50']:.1f}",
                f"{con[stage]['p95']:.1f}",
                ref_cell,
            )
        console = Console(file=cast(IO[str], self.stdout), width=130)
        console.print(table)
        ratio = seq["app"]["p50"] / ref["total"]["p50"] if ref["total"]["p50"] else float("nan")
        lines = _summary_lines(r, app_seq=seq["app"], ratio=ratio, rate=rate, errors=errors)
        for line in lines:
            self.stdout.write(line)
        return {
            "model": r["version"],
            "model_note": r["model_note"],
            "artworks": r["total"],
            "cores": r["cores"],
            "workers": r["workers"],
            "tf_threads": r["tf_threads"],
            "concurrency": r["concurrency"],
            "sequential_ms": seq,
            "concurrent_ms": con,
            "in_process_ms": ref,
            "requests_per_second": rate,
            "errors": errors,
            "overhead_ratio": ratio,
            "load_average": r["load"],
        }


def _stages(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 and p95 per Server-Timing stage, and of the client's round trip, over the answered requests."""
    ok = [s for s in samples if s["status"] == 200]
    table = {st: [s["timing"][st] for s in ok if st in s["timing"]] for st in STAGES}
    table["client"] = [s["client_ms"] for s in ok]
    return {k: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for k, v in table.items() if v}


def _summary_lines(
    r: dict[str, Any], *, app_seq: dict[str, float], ratio: float, rate: float, errors: int
) -> list[str]:
    """The lines under the table: throughput, the goals, the web layer's overhead, the machine's load."""
    lines = [
        f"Throughput: {rate:.1f} requests/s with {r['concurrency']} concurrent clients "
        f"({len(r['concurrent'])} requests in {r['wall']:.1f} s; {r['workers']} gunicorn worker(s) x "
        f"{r['tf_threads']} TF thread(s) on {r['cores']} core(s)); errors: {errors}",
        f"Server-side (1 client): p50 {app_seq['p50']:.1f} ms (goal <= {GOAL_P50_MS:.0f}: "
        f"{'met' if app_seq['p50'] <= GOAL_P50_MS else 'NOT met'}), p95 {app_seq['p95']:.1f} ms "
        f"(goal <= {GOAL_P95_MS:.0f}: {'met' if app_seq['p95'] <= GOAL_P95_MS else 'NOT met'})",
        f"Web layer overhead: whole view p50 / in-process decode+model+search p50 = {ratio:.2f}x",
    ]
    if "XLA on" in r["model_note"]:
        lines.append("The model runs XLA-compiled (the loader's default): compare with --xla off.")
    lines.append(
        f"Load average (1 min) before / after the server runs: {r['load'][0]:.1f} / {r['load'][1]:.1f} on "
        f"{r['cores']} core(s): above {r['cores']} other processes competed for the CPU and the wall-clock "
        "figures include their share; the cpu row is the cost without the waiting."
    )
    return lines
