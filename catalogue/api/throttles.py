"""Rate limits for the costly endpoints: ``classify`` (runs the model) and ``upload`` (stores files).

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (env ``ARTSITE_THROTTLE_CLASSIFY`` /
``ARTSITE_THROTTLE_UPLOAD``, e.g. ``600/min``), counted per user in Django's cache. A view opts in with
``throttle_scope``; a view whose ``throttle_scope`` is ``None`` for a request (e.g. a list GET on the artworks
ViewSet) is not throttled.
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class ScopedThrottle(ScopedRateThrottle):
    def get_rate(self) -> str | None:
        # DRF binds THROTTLE_RATES when the module is imported; read the settings per request instead, so a changed
        # setting (tests, a reloaded configuration) takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
