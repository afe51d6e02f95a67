"""Property-based run over the live OpenAPI schema: every operation, generated inputs, no server error ever.

Schemathesis loads /api/v1/schema/ from the Django WSGI app in this process (same test database and transaction)
and calls each operation with a curator's token: valid inputs (positive mode; the responses must then also match
the documented status codes, content types and shapes) and invalid ones (negative mode; anything but a 5xx).
The number of examples per operation is bounded so the run takes seconds. (Schemathesis's own pytest plugin does
not run under pytest 9 — it reads ``request.node._nodeid`` — hence plain Hypothesis ``@given`` per operation.)
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import ArtworkFactory

pytestmark = [pytest.mark.django_db]

EXAMPLES = 12  # per operation and mode


@pytest.fixture
def api_schema(active_model, db):  # type: ignore[no-untyped-def]
    from django.core.wsgi import get_wsgi_application

    # A few real rows, so that some generated ids hit artworks.
    for _ in range(3):
        ArtworkFactory(status="ready")
    # As Django's test client does: a request must not close the connection that holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def always_json(ctx, response, case) -> bool:  # type: ignore[no-untyped-def]
    """Every answer, errors included, is JSON: never an HTML page (Django's 404, 403 CSRF or 500 pages). The one
    exception: a success the schema documents in another media type (the streamed exports' CSV and JSON lines)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    documented = (
        case.operation.definition.raw["responses"].get(str(response.status_code), {}).get("content", {})
    )
    if response.status_code < 400 and content_type.split(";")[0].strip() in documented:
        return True
    assert content_type.startswith("application/json") or response.status_code == 204, (
        f"{response.status_code} answered with {content_type!r}: {response.content[:200]!r}"
    )
    return True


POSITIVE_CHECKS = [
    not_a_server_error,
    always_json,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [not_a_server_error, always_json]


def _fuzz(operation, mode: GenerationMode, checks: list, headers: dict[str, str], seen: Counter) -> None:  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # no .hypothesis/ folder in the repository
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        seen[case.call_and_validate(headers=headers, checks=checks).status_code] += 1

    run()


def _can_be_invalid(operation) -> bool:  # type: ignore[no-untyped-def]
    """Whether negative mode can make anything up: a body, query parameters or an integer path parameter (a free
    string path parameter such as a type slug has no invalid value, and Hypothesis would give up after long)."""
    return bool(list(operation.body) or list(operation.query) or "{id}" in operation.path)


def test_api_never_answers_a_server_error(api_schema, curator_token):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Token {curator_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    failures = []
    seen: Counter = Counter()
    for operation in operations:
        modes = [(GenerationMode.POSITIVE, POSITIVE_CHECKS)]
        if _can_be_invalid(operation):
            modes.append((GenerationMode.NEGATIVE, NEGATIVE_CHECKS))
        for mode, checks in modes:
            try:
                _fuzz(operation, mode, checks, headers, seen)
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{mode}]: {exc}")
    assert not failures, "\n\n".join(failures)
    # The run reached the API's real behaviour, not only its front door.
    assert seen[200] and seen[400] and seen[404] and not any(code >= 500 for code in seen), seen
