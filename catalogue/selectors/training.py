"""The catalogue as training material: ready works with their effective types, the gold set, which types the next
version learns, what changed since the active version was trained, and the training jobs.

**The gold set** is a fixed split, decided by each work's content: a work belongs to the gold split when the first
32 bits of its sha256, read as a number, are divisible by :data:`GOLD_MODULUS` (5: a fifth of the works). The gold
set is the works of the gold split whose label is *verified* (set or confirmed by a curator,
``Artwork.VERIFIED``). Training never uses a gold work; the gate judges every new version on them. The split does not
move as the catalogue grows (a new work never pushes another across) and a gold work never goes back to training.
A work of the gold split with an imported label trains until a curator verifies it; from then on it is gold. The
active version may therefore have trained on a few of today's gold works, which can only flatter it: the gate errs
on the side of keeping the active version.

**Types belong to the catalogue.** The next trained version learns the five default types
(:data:`inference.classes.CLASSES`, always: the imported training data has them) and every other type with at least
:data:`MIN_VERIFIED_TO_LEARN` verified ready works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Case, CharField, Count, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from catalogue.models import Artwork, ArtworkType, LabelCorrection, TrainingJob
from catalogue.selectors.artworks import artworks_with_prediction
from inference.classes import CLASSES
from inference.models import ModelVersion
from inference.selectors import model_version_active

#: A work is in the gold split when int(sha256[:8], 16) % GOLD_MODULUS == 0.
GOLD_MODULUS = 5
#: Verified ready works a type needs before a trained version learns it (the five default types always are).
MIN_VERIFIED_TO_LEARN = 20
#: The advisory lock a training job's process holds while it runs (key 1; key 2 is the job id): PostgreSQL releases
#: it when that process's connection ends, so a job whose worker died is recognisable at once.
TRAINING_LOCK_KEY = 0x41525453  # "ARTS"


def in_gold_split(sha256: str) -> bool:
    """Whether a work with this content hash belongs to the gold split (see the module docstring)."""
    return int(sha256[:8], 16) % GOLD_MODULUS == 0


@dataclass(frozen=True)
class TrainingExample:
    """One artwork as a training example: where its image is, its effective type, and where the type came from."""

    artwork_id: int
    image_name: str  # the name in default_storage
    type_slug: str
    curator_labelled: (
        bool  # it has a label (imported or a curator's); else the type is the model's prediction
    )
    sha256: str = ""
    verified: bool = False  # the label was set or confirmed by a curator

    @property
    def gold(self) -> bool:
        """In the gold set: a verified label on a work of the gold split. Never trained on."""
        return self.verified and in_gold_split(self.sha256)

    def open(self) -> Any:
        """The stored image as a binary file (works with any storage backend); close it after use."""
        return default_storage.open(self.image_name, "rb")

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    @property
    def path(self) -> str | None:
        """A local filesystem path when the storage has one (FileSystemStorage), else ``None`` (S3: use open())."""
        try:
            return default_storage.path(self.image_name)
        except NotImplementedError:
            return None


def training_examples(
    *, version: ModelVersion | None = None, curator_only: bool = False
) -> list[TrainingExample]:
    """Ready artworks with their effective types, for training on the catalogue; labelled works first.

    The effective type is the label when there is one, else the prediction of ``version`` (default: the active
    version); ready works with neither are left out. Within each group, oldest first (a stable order, so a seeded
    split of the list is reproducible).
    """
    version = version if version is not None else model_version_active()
    qs = artworks_with_prediction(version).filter(
        status=Artwork.Status.READY, effective_type_id__isnull=False
    )
    if curator_only:
        qs = qs.filter(curator_type__isnull=False)
    slugs = dict(ArtworkType.objects.values_list("pk", "slug"))
    rows = qs.order_by("id").values_list(
        "pk", "image", "effective_type_id", "curator_type_id", "sha256", "label_provenance"
    )
    examples = [
        TrainingExample(
            artwork_id=pk,
            image_name=image,
            type_slug=slugs[type_id],
            curator_labelled=curated is not None,
            sha256=sha256,
            verified=curated is not None and provenance in Artwork.VERIFIED,
        )
        for pk, image, type_id, curated, sha256, provenance in rows
    ]
    # Labelled works first; sorted() is stable, so each group keeps the id order.
    return sorted(examples, key=lambda e: not e.curator_labelled)


# --- Which types the next version learns ------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeReadiness:
    """Where one type stands for the next training: its verified ready works and whether it will be learned."""

    artwork_type: ArtworkType
    verified: int
    default: bool  # one of the five default types: always learned
    known_by_active: bool

    @property
    def learned_next(self) -> bool:
        return self.default or self.verified >= MIN_VERIFIED_TO_LEARN

    @property
    def still_needed(self) -> int:
        """Verified works it still needs before a trained version learns it (0: it will be learned)."""
        return 0 if self.learned_next else MIN_VERIFIED_TO_LEARN - self.verified


def artwork_types_with_verified(types: QuerySet[ArtworkType] | None = None) -> QuerySet[ArtworkType]:
    """The types annotated with ``n_verified``: their verified ready works."""
    verified = (
        Artwork.objects.filter(
            curator_type=OuterRef("pk"), status=Artwork.Status.READY, label_provenance__in=Artwork.VERIFIED
        )
        .order_by()
        .values("curator_type")
        .annotate(n=Count("id"))
        .values("n")
    )
    types = types if types is not None else ArtworkType.objects.all()
    return types.annotate(n_verified=Coalesce(Subquery(verified), 0))


def type_readiness(*, active: ModelVersion | None = None) -> list[TypeReadiness]:
    """Every type of the catalogue, in its order, with what the next training will make of it."""
    active = active if active is not None else model_version_active()
    known = set(active.card.get("classes") or ()) if active is not None else set()
    return [
        TypeReadiness(
            artwork_type=t,
            verified=int(t.n_verified),  # type: ignore[attr-defined]  # the annotation
            default=t.slug in CLASSES,
            known_by_active=t.slug in known,
        )
        for t in artwork_types_with_verified()
    ]


def training_classes() -> tuple[str, ...]:
    """The class list of the next trained version: the five default types in their usual order, then every type
    with enough verified works (in the catalogue's order). The order is the model's output order."""
    extra = [r.artwork_type.slug for r in type_readiness() if r.learned_next and not r.default]
    return (*CLASSES, *extra)


# --- What changed since the active version was trained ----------------------------------------------------------


@dataclass(frozen=True)
class LabelChanges:
    """Labels added or changed since a version was trained: audit-trail rows by the provenance they gave the label
    (imported, set, confirmed) and by where they were made."""

    since: datetime | None
    total: int
    by_provenance: dict[str, int]
    by_source: dict[str, int]


def version_trained_at(version: ModelVersion) -> datetime:
    """When a version was trained: its card's ``created`` (a naive time is taken as UTC), else when it was
    registered."""
    created = version.card.get("created")
    try:
        moment = datetime.fromisoformat(str(created))
    except (TypeError, ValueError):
        return version.created_at
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def label_changes_since(*, version: ModelVersion | None) -> LabelChanges:
    """Every label given, changed or confirmed since ``version`` was trained (all of them without a version)."""
    since = version_trained_at(version) if version is not None else None
    rows = LabelCorrection.objects.filter(artwork__isnull=False)  # a deleted work's history trains nothing
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    # The provenance each row gave the label, by the rule of catalogue.services.labels.label_correct.
    provenance = Case(
        When(source=LabelCorrection.Source.IMPORT, then=Value(Artwork.Provenance.IMPORTED.value)),
        When(from_type_id=F("to_type_id"), then=Value(Artwork.Provenance.CONFIRMED.value)),
        default=Value(Artwork.Provenance.SET.value),
        output_field=CharField(),
    )
    by_provenance = {value: 0 for value, _ in Artwork.Provenance.choices}
    by_source: dict[str, int] = {}
    for row in rows.annotate(given=provenance).values("given", "source").order_by().annotate(n=Count("id")):
        by_provenance[row["given"]] += row["n"]
        by_source[row["source"]] = by_source.get(row["source"], 0) + row["n"]
    return LabelChanges(
        since=since, total=sum(by_provenance.values()), by_provenance=by_provenance, by_source=by_source
    )


# --- Training jobs ------------------------------------------------------------------------------------------------


def training_job_current() -> TrainingJob | None:
    """The job queued, running or being cancelled, if any (there is at most one)."""
    return TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE).first()


def training_job_latest() -> TrainingJob | None:
    """The current job, else the last one."""
    return training_job_current() or TrainingJob.objects.first()


def training_job_worker_alive(*, job_id: int) -> bool:
    """Whether a process is running this job: it holds the job's advisory lock (released by PostgreSQL when the
    process dies). A read of ``pg_locks``: takes no lock itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 2 AND granted)",
            [TRAINING_LOCK_KEY, job_id],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def training_jobs_orphaned() -> list[TrainingJob]:
    """Jobs marked running (or cancelling) whose process has gone: killed, out of memory, past its time limit."""
    return [
        job
        for job in TrainingJob.objects.filter(
            Q(status=TrainingJob.Status.RUNNING) | Q(status=TrainingJob.Status.CANCELLING),
            started_at__isnull=False,
        )
        if not training_job_worker_alive(job_id=job.pk)
    ]
