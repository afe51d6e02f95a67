from django.apps import AppConfig

from artsite import request_limits


class ArtsiteConfig(AppConfig):
    """The project's own plumbing as an app, so it can connect itself once every app is loaded."""

    name = "artsite"
    verbose_name = "Artsite"

    def ready(self) -> None:
        # Task counts and durations go to Redis for /metrics, from every process: workers count the tasks they
        # run, web processes and commands the tasks they send.
        from artsite import metrics  # noqa: PLC0415  it reads the catalogue's selectors: only once apps are loaded

        metrics.connect_task_signals()
        # Long file names must not make a multipart upload unreadable (artsite/request_limits.py).
        request_limits.multipart_header_limit_raise()
