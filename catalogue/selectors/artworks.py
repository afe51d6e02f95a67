"""Reads of artworks: the catalogue list and its filters, an artwork's prediction, type and history, counts.

The pages and the API always show the *active* model version's predictions; predictions of other versions stay in
the database (a model swap switches at once, and back, without recomputing).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import (
    Case,
    Count,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)

from catalogue.models import Artwork, ArtworkType, Prediction, effective_type_is
from inference.models import ModelVersion
from inference.selectors import model_version_active


def artwork_types() -> list[ArtworkType]:
    return list(ArtworkType.objects.all())


def artwork_type_by_slug(slug: str) -> ArtworkType | None:
    """Find a type by slug or name, case-insensitively, accepting singular and plural ("drawing", "Paintings")."""
    key = (slug or "").strip().lower()
    if not key:
        return None
    for t in ArtworkType.objects.all():
        names = {t.slug, t.name.lower()}
        forms = names | {n.rstrip("s") for n in names} | {n + "s" for n in names}
        if key in forms or key.rstrip("s") in forms:
            return t
    return None


def artworks_with_prediction(version: ModelVersion | None = None) -> QuerySet[Any]:
    """Artworks annotated with the active version's prediction (or ``version``'s) and their effective type.

    Annotations: ``pred_type_id``, ``pred_confidence``, ``pred_probabilities``, ``effective_type_id``
    (:meth:`catalogue.models.ArtworkQuerySet.with_prediction`).
    """
    version = version if version is not None else model_version_active()
    return Artwork.objects.with_prediction(version.pk if version is not None else None).select_related(
        "curator_type"
    )


#: A type that at most this many works have (by the planner's estimate) is found from its few works; a commoner one
#: by walking the list in its order until a page is full, and counted by the estimate.
TYPE_FROM_CANDIDATES_AT_MOST = 2_000


@dataclass(frozen=True)
class TypedWorks:
    """The works of a list that have a type (:attr:`queryset`), and the planner's estimate of how many they are."""

    queryset: QuerySet[Any]
    estimate: int

    @property
    def tally(self) -> Tally | None:
        """The estimate as the list's count when it is large (counting a common type's works would read them
        all); ``None`` when few: count them."""
        return Tally(self.estimate, "about") if self.estimate > TYPE_FROM_CANDIDATES_AT_MOST else None


def artworks_of_type(qs: QuerySet[Any], *, type_id: int | None) -> TypedWorks:
    """The works of ``qs`` (a queryset of :func:`artworks_with_prediction`) whose effective type is ``type_id``
    (``None``: no type), by the rule's condition (:func:`catalogue.models.effective_type_is`), which PostgreSQL
    estimates well from the label's and the prediction's statistics.

    The condition spans two tables, so no index serves it: PostgreSQL walks the list in its order, which is quick
    for a common type (a page of a type that 20 % of the works have visits 120 works) and slow for a rare one (at
    0.25 %, 10,000 works for a page and every work to count them). So a rare type (at most
    :data:`TYPE_FROM_CANDIDATES_AT_MOST` works, by the estimate) is also limited to its candidates — the works the
    active version predicts it for, or a curator labelled with it, both indexed — and PostgreSQL starts from them:
    at most a few thousand lookups, whatever the catalogue's size. (The list's prediction is the active version's
    read when the request began; should a version be activated in between, the candidates are the new one's.)
    Works without a type cannot be found that way: no index lists what is missing.
    """
    typed = qs.filter(effective_type_is(type_id, predicted_type="pred_type_id"))
    estimate = rows_estimate(typed)
    if type_id is None or estimate > TYPE_FROM_CANDIDATES_AT_MOST:
        return TypedWorks(queryset=typed, estimate=estimate)
    candidates = (
        Prediction.objects.filter(model_version__status=ModelVersion.Status.ACTIVE, predicted_type_id=type_id)
        .values("artwork_id")
        .union(Artwork.objects.filter(curator_type_id=type_id).values("id"), all=True)
    )
    return TypedWorks(queryset=typed.filter(pk__in=candidates), estimate=estimate)


def artwork_effective_type(*, artwork: Artwork) -> ArtworkType | None:
    """The curator's type if set, else the active model's prediction (:func:`catalogue.models.effective_type`)."""
    type_id = (
        artworks_with_prediction().filter(pk=artwork.pk).values_list("effective_type_id", flat=True).first()
    )
    return ArtworkType.objects.filter(pk=type_id).first() if type_id is not None else None


def artwork_prediction(*, artwork: Artwork, version: ModelVersion | None = None) -> Prediction | None:
    version = version if version is not None else model_version_active()
    if version is None:
        return None
    return (
        Prediction.objects.select_related("predicted_type", "model_version")
        .filter(artwork=artwork, model_version=version)
        .first()
    )


def catalogue_counts() -> dict[str, int]:
    """How many artworks there are in each status."""
    counts = {status: 0 for status, _ in Artwork.Status.choices}
    for row in Artwork.objects.values("status").order_by().annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts


def artworks_unfinished() -> QuerySet[Artwork]:
    """Failed, pending and processing artworks (the jobs a curator may retry), failed first, oldest first: few
    however large the catalogue (the partial index ``artwork_unfinished``), shown a page at a time
    (:func:`keyset_page`, which the ``status_rank`` annotation and the id order)."""
    order = {Artwork.Status.FAILED: 0, Artwork.Status.PROCESSING: 1, Artwork.Status.PENDING: 2}
    rank = Case(*(When(status=s, then=Value(r)) for s, r in order.items()), output_field=IntegerField())
    return (
        Artwork.objects.filter(status__in=list(order))
        .only("id", "title", "status", "attempts", "updated_at", "error")
        .annotate(status_rank=rank)
        .order_by("status_rank", "updated_at", "id")
    )


# --- Counts of a large catalogue ------------------------------------------------------------------------------------

#: Above this many rows (by the planner's estimate) a count is the estimate, not a scan of every row.
ESTIMATE_ABOVE = 20_000
#: A filtered list counts its works up to this many ("1,000+"): exact for a narrow filter, bounded for a broad one.
COUNT_CAP = 1_000


class Tally(int):
    """A count that says how it was obtained: ``exact``, ``about`` (the planner's estimate, for a catalogue too large
    to count on every page view) or ``at_least`` (counted up to a cap). Behaves as the int it holds; prints as
    "about 1,000,000" or "1,000+"."""

    kind: str

    def __new__(cls, value: int, kind: str = "exact") -> Tally:
        tally = super().__new__(cls, max(0, int(value)))
        tally.kind = kind
        return tally

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    def __str__(self) -> str:
        number = f"{int(self):,}"
        return {"about": f"about {number}", "at_least": f"{number}+"}.get(self.kind, number)


def rows_estimate(qs: QuerySet[Any]) -> int:
    """The planner's estimate of the rows of ``qs`` (``EXPLAIN``, from the table statistics: no row is read)."""
    plan = json.loads(qs.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"]) if plan else 0


def count_estimate(qs: QuerySet[Any], *, exact_below: int | None = None) -> Tally:
    """The rows of ``qs``: the planner's estimate (``EXPLAIN``, from the table statistics) when it is at least
    ``exact_below`` (default :data:`ESTIMATE_ABOVE`), else counted exactly (a small count is cheap and must be
    right)."""
    estimate = rows_estimate(qs)
    if estimate < (ESTIMATE_ABOVE if exact_below is None else exact_below):
        return Tally(qs.count())
    return Tally(estimate, "about")


def count_capped(qs: QuerySet[Any], *, cap: int | None = None) -> Tally:
    """The rows of ``qs``, counted up to ``cap`` (default :data:`COUNT_CAP`): a broad filter over a million works
    stops early."""
    cap = COUNT_CAP if cap is None else cap
    n = qs.order_by().values("pk")[: cap + 1].count()
    return Tally(cap, "at_least") if n > cap else Tally(n)


def artworks_tally(
    qs: QuerySet[Any],
    *,
    filtered: bool,
    page: KeysetPage | None = None,
    known: Callable[[], Tally | None] | None = None,
) -> Tally:
    """How many works a catalogue list holds: the whole catalogue estimated when large (the planner knows its size
    well), a filtered one counted up to :data:`COUNT_CAP`. Cheaper when the answer is at hand: a first ``page`` with
    no page after it holds them all (no query), and ``known`` gives a count the filters can make more cheaply than
    counting the list (a search's matches, a map box's points, a common type's estimate), or ``None``."""
    if page is not None and page.whole:
        return Tally(len(page.items))
    counted = known() if known is not None else None
    if counted is not None:
        return counted
    return count_capped(qs) if filtered else count_estimate(qs)


def artworks_unfinished_counts() -> dict[str, int]:
    """Failed, pending and processing works, counted exactly through the partial index of unfinished works (few,
    however large the catalogue)."""
    unfinished = (Artwork.Status.FAILED, Artwork.Status.PENDING, Artwork.Status.PROCESSING)
    counts: dict[str, int] = {str(status): 0 for status in unfinished}
    rows = (
        Artwork.objects.exclude(status=Artwork.Status.READY)
        .values("status")
        .order_by()
        .annotate(n=Count("id"))
    )
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


# --- Keyset pages ---------------------------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    """A page cursor that was not made by :func:`keyset_page` for this ordering."""


@dataclass(frozen=True)
class KeysetPage:
    """One page of a keyset-paginated list: its rows, and the cursors of the pages after and before it (``None``
    at either end); ``whole`` when it is the first page and nothing follows (its rows are the whole list)."""

    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    whole: bool = False


def keyset_page(qs: QuerySet[Any], *, cursor: str | None, size: int) -> KeysetPage:
    """A page of ``qs`` in its own order (with the primary key as the last tie-breaker), after or before the row a
    cursor names: each page is one index range, as fast at the millionth row as at the first (an offset makes
    PostgreSQL walk every row before it). A row added between two requests shows up in its place without shifting
    the others; none is repeated or skipped. Raises :class:`InvalidCursor` for a cursor it cannot read.

    NULLs sort as PostgreSQL sorts them: after every value ascending, before every value descending.
    """
    keys = _order_keys(qs)
    forward, values = (True, None) if not cursor else _cursor_decode(cursor, len(keys))
    ordered = qs.order_by(*(f"-{name}" if desc != (not forward) else name for name, desc in keys))
    if values is not None:
        try:
            ordered = ordered.filter(_beyond(qs, keys, values, forward))
        except (ValidationError, ValueError, TypeError) as exc:  # a value of the wrong kind for its field
            raise InvalidCursor("This page link is not valid.") from exc
    rows = list(ordered[: size + 1])
    more, rows = len(rows) > size, rows[:size]
    if not forward:
        rows.reverse()
    at_start = values is None or (not forward and not more)
    at_end = forward and not more
    return KeysetPage(
        items=rows,
        next_cursor=_cursor_encode(rows[-1], keys, forward=True) if rows and not at_end else None,
        previous_cursor=_cursor_encode(rows[0], keys, forward=False) if rows and not at_start else None,
        whole=values is None and not more,
    )


def keyset_cursor(qs: QuerySet[Any], row: Any) -> str:
    """The cursor of the page that follows ``row`` in ``qs``'s order (a link straight to a deep page)."""
    return _cursor_encode(row, _order_keys(qs), forward=True)


def _order_keys(qs: QuerySet[Any]) -> list[tuple[str, bool]]:
    """The queryset's ordering as (name, descending) pairs, ending with the primary key."""
    keys: list[tuple[str, bool]] = []
    for item in qs.query.order_by or qs.model._meta.ordering:
        if not isinstance(item, str):
            raise TypeError(f"keyset_page orders by field names, not {item!r}")
        name = item.lstrip("-")
        keys.append(("pk" if name == "id" else name, item.startswith("-")))
    if not any(name == "pk" for name, _ in keys):
        keys.append(("pk", True))
    return keys


def _nullable(qs: QuerySet[Any], name: str) -> bool:
    try:
        return name != "pk" and bool(qs.model._meta.get_field(name).null)
    except FieldDoesNotExist:
        return True  # an annotation (a prediction's confidence): works without one have none


def _beyond(qs: QuerySet[Any], keys: list[tuple[str, bool]], values: list[Any], forward: bool) -> Q:
    """Rows after (``forward``) or before the row whose ordering values are ``values``: for each key, the earlier
    keys equal and this one strictly beyond, OR-ed together; plus a plain range on the first key, which is what lets
    an index serve the page. NULL counts as larger than any value (PostgreSQL's default)."""
    condition, equal = Q(pk__in=[]), Q()
    for (name, desc), value in zip(keys, values, strict=True):
        upward = desc != forward  # beyond means larger values
        nullable = _nullable(qs, name)
        if value is None:
            beyond = Q(pk__in=[]) if upward else Q(**{f"{name}__isnull": False})
            same = Q(**{f"{name}__isnull": True})
        else:
            beyond = Q(**{f"{name}__gt" if upward else f"{name}__lt": value})
            if upward and nullable:
                beyond |= Q(**{f"{name}__isnull": True})
            same = Q(**{name: value})
        condition |= equal & beyond
        equal &= same
    first_name, first_desc = keys[0]
    first = values[0]
    if first is not None and not _nullable(qs, first_name):
        condition &= Q(**{f"{first_name}__gte" if first_desc != forward else f"{first_name}__lte": first})
    return condition


def _cursor_encode(row: Any, keys: list[tuple[str, bool]], *, forward: bool) -> str:
    values = [getattr(row, name) for name, _ in keys]
    data = {
        "d": "n" if forward else "p",
        "v": [v.isoformat() if isinstance(v, datetime) else v for v in values],
    }
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_decode(cursor: str, n_keys: int) -> tuple[bool, list[Any]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values, direction = data["v"], data["d"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidCursor("This page link is not valid (it may be from another ordering).") from exc
    if not isinstance(values, list) or len(values) != n_keys or direction not in ("n", "p"):
        raise InvalidCursor("This page link is not valid (it may be from another ordering).")
    if any(isinstance(v, (dict, list)) for v in values):
        raise InvalidCursor("This page link is not valid.")
    return direction == "n", values
