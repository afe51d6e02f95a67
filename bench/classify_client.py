"""The HTTP side of ``bench_api``: the gunicorn configuration it starts the server with, and clients that post a
JPEG to ``/api/v1/classify/`` and read the server's ``Server-Timing`` header."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Any

BOUNDARY = "----artsite-bench-api"

GUNICORN_CONFIG = '''"""Written by bench_api: each worker limits TensorFlow's threads and loads the active model before serving."""
import os


def post_worker_init(worker):
    from inference.loader import configure_threads, get_classifier
    from inference.selectors import model_version_active

    if os.environ.get("BENCH_TF_JIT", "default") != "default":
        from django.conf import settings

        settings.ARTSITE_TF_JIT = os.environ["BENCH_TF_JIT"] == "on"
    configure_threads(int(os.environ.get("BENCH_TF_THREADS", "1")))
    version = model_version_active()
    if version is not None:
        get_classifier(version.version)
'''


def _classify_body(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="query.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


_bodies: dict[int, bytes] = {}


def classify_request(port: int, token: str, data: bytes) -> dict[str, Any]:
    """POST the JPEG to /api/v1/classify/ once: status, client round trip (ms), the Server-Timing stages, body."""
    body = _bodies.get(id(data))
    if body is None:
        body = _bodies[id(data)] = _classify_body(data)
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            "/api/v1/classify/",
            body=body,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Accept": "application/json",
            },
        )
        response = conn.getresponse()
        content = response.read()
        timing = response.getheader("Server-Timing", "")
    finally:
        conn.close()
    client_ms = (time.perf_counter() - started) * 1000
    parts = {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+);dur=([\d.]+)", timing)}
    return {"status": response.status, "client_ms": client_ms, "timing": parts, "body": content}


def classify_concurrently(
    port: int, token: str, data: bytes, total: int, clients: int
) -> tuple[list[dict[str, Any]], float]:
    """``total`` requests from ``clients`` threads at once: their results and the wall time."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    remaining = [total]

    def client() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            result = classify_request(port, token, data)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_stop(server: subprocess.Popen) -> None:
    """Stop a server started in its own session (and its workers): SIGTERM, then SIGKILL if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
