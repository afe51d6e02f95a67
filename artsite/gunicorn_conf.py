"""gunicorn settings for `make run` and docker-compose: load the active model in each web worker before it serves,
so the first `POST /api/v1/classify/` is as fast as the rest."""

import logging


def post_worker_init(worker) -> None:
    try:
        from django.db import close_old_connections  # noqa: PLC0415  # gunicorn reads this file before Django is set up: imported in the worker hook

        from inference.loader import get_classifier  # noqa: PLC0415  # gunicorn reads this file before Django is set up: imported in the worker hook
        from inference.selectors import model_version_active  # noqa: PLC0415  # gunicorn reads this file before Django is set up: imported in the worker hook

        version = model_version_active()
        if version is not None:
            get_classifier(version.version)
        close_old_connections()
    except Exception:  # a missing model is reported by /healthz and by the worker; the web still serves pages
        logging.getLogger(__name__).warning("could not warm the model in the web worker", exc_info=True)
