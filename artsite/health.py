"""``/healthz`` (liveness) and ``/readyz`` (readiness), for docker-compose healthchecks, load balancers and people.

* ``/healthz`` — *is this process alive and able to take uploads?* The process answers and its database answers.
  It stays 200 while Redis is down, because uploads keep working then (they wait, pending, for the sweep): a
  restart would not help, so nothing should restart the process for it.
* ``/readyz`` — *should traffic come here?* Every dependency: the database, the broker and the model; 503 with
  the reason of each failure.

The checks, each cheap after the first call:

* ``database``: ``SELECT 1`` (one reconnect attempt, so the answer is right just after PostgreSQL restarted);
* ``broker``: Redis ``PING`` with a one-second timeout;
* ``model``: the active model version, and whether its folder loads through the one model loader
  (:func:`inference.loader.get_classifier`, cached per process). The model file's size and modification time are
  looked at on every call, so a file deleted or replaced after it was loaded is noticed; a failed load is tried
  again after ``MODEL_RECHECK_SECONDS``.

Both answers are JSON, ``200`` when their checks pass and ``503`` otherwise, with the reason of each failure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from artsite.broker import broker_redis
from inference import loader
from inference.registry import ModelUnavailable, find_version
from inference.selectors import model_version_active
from inference.tflite import TFLITE_FILE

# A model that failed to load is tried again after this long (loading a damaged file again and again costs).
MODEL_RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.detail}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def database_check() -> Check:

    started = time.perf_counter()
    for attempt in (1, 2):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            return Check(True, {"ms": _ms(started)})
        except Exception as exc:
            # OperationalError, InterfaceError: the server is down, or the connection is stale after a restart.
            if attempt == 2 or connection.in_atomic_block:
                return Check(False, {"ms": _ms(started), "error": _error(exc)})
            connection.close()  # a connection broken by a server restart: one fresh try
    raise AssertionError("unreachable")


def broker_check() -> Check:
    started = time.perf_counter()
    try:
        broker_redis(timeout=1.0).ping()
    except Exception as exc:
        return Check(False, {"ms": _ms(started), "error": _error(exc)})
    return Check(True, {"ms": _ms(started)})


@dataclass
class _ModelState:
    signature: tuple[int, int]
    check: Check
    at: float


_model_lock = threading.Lock()
_model_states: dict[str, _ModelState] = {}


def model_check(*, load: bool = True) -> Check:
    """The active version and whether it loads. ``load=False`` never loads a model (the metrics scrape): it
    reports the last load's result, or only that the files are there."""

    try:
        version = model_version_active()
    except Exception as exc:
        return Check(False, {"version": None, "error": f"cannot read the active version ({_error(exc)})"})
    if version is None:
        return Check(False, {"version": None, "error": "no model version is active"})
    name = version.version
    try:
        model_file = find_version(name) / TFLITE_FILE  # what serves: the TFLite copy, never model.keras
        stat = model_file.stat()
    except ModelUnavailable as exc:
        return Check(False, {"version": name, "error": exc.reason})
    except OSError:
        return Check(
            False,
            {
                "version": name,
                "error": f"{TFLITE_FILE} is missing (the serving runtime runs only the TFLite copy)",
            },
        )
    signature = (stat.st_size, stat.st_mtime_ns)

    with _model_lock:
        state = _model_states.get(name)
        if state is not None and state.signature == signature:
            if state.check.ok or time.monotonic() - state.at < MODEL_RECHECK_SECONDS or not load:
                return state.check
        if not load:
            return Check(True, {"version": name, "loaded": False})
        return _model_load(name, signature, replaced=state is not None and state.signature != signature)


def _model_load(name: str, signature: tuple[int, int], *, replaced: bool) -> Check:

    if replaced:
        # The file changed since this process loaded it: what is cached no longer says anything about the file.
        loader.clear_cache()
    started = time.perf_counter()
    try:
        classifier = loader.get_classifier(name)
    except loader.ModelUnavailable as exc:
        check = Check(False, {"version": name, "error": exc.reason})
    except Exception as exc:  # anything else the loader lets through must still read as "down", not a 500
        check = Check(False, {"version": name, "error": _error(exc)})
    else:
        check = Check(
            True,
            {"version": name, "loaded": True, "classes": list(classifier.classes), "load_ms": _ms(started)},
        )
    _model_states[name] = _ModelState(signature=signature, check=check, at=time.monotonic())
    return check


def health_report() -> dict[str, Any]:
    """Readiness: every dependency."""
    checks = {"database": database_check(), "broker": broker_check()}
    checks["model"] = (
        model_check(load=True)
        if checks["database"].ok
        else Check(False, {"version": None, "error": "the database is down"})
    )
    return {"ok": all(c.ok for c in checks.values()), **{name: c.as_dict() for name, c in checks.items()}}


def liveness_report() -> dict[str, Any]:
    """Liveness: the process answers and can store uploads (its database answers); no broker, no model."""
    database = database_check()
    return {"ok": database.ok, "database": database.as_dict()}


def health_reset() -> None:
    """Forget the remembered model results (tests)."""
    with _model_lock:
        _model_states.clear()


@never_cache
@require_safe
def healthz_view(request: HttpRequest) -> JsonResponse:
    report = liveness_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@never_cache
@require_safe
def readyz_view(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)
