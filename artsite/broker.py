"""The Celery broker's Redis, for the project's own quick reads and writes (health checks, metrics, the login rate
limit): one redis-py client per URL and timeout, never retrying, so "Redis is down" is known at once."""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def broker_redis(url: str | None = None, *, timeout: float = 1.0) -> Any:
    """A redis-py client (with its own connection pool) for the Celery broker URL, cached per URL and timeout.

    Understands ``redis://``, ``rediss://``, ``unix://`` and kombu's ``redis+socket:///path`` (the embedded Redis).
    """
    url = url or settings.CELERY_BROKER_URL
    key = f"{url}|{timeout}"
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # No retries: redis-py 8 retries three times with growing back-off by default, seconds per call
            # while Redis is down; every caller here has an answer for "Redis is down" that must come at once.
            options: dict[str, Any] = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "retry": Retry(NoBackoff(), 0),
            }
            if url.startswith("redis+socket://"):
                path = url.removeprefix("redis+socket://").split("?", 1)[0]
                client = redis.Redis(unix_socket_path=path, **options)
            else:
                client = redis.Redis.from_url(url, **options)
            _clients[key] = client
        return client
