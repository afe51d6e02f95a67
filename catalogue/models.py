"""Artworks, their types, the model's predictions (one per model version) and the curators' corrections."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, FilteredRelation, Q
from django.db.models.functions import Coalesce, Length
from django.db.models.lookups import LessThanOrEqual
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 128

# The limits of an artwork's text fields, defined once: the model and database, the portal's forms, the API's
# serializers and the import manifest all read them.
TITLE_MAX_LENGTH = 300
ARTIST_MAX_LENGTH = 300
DATE_MAX_LENGTH = 100
ACCESSION_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 10_000


class ArtworkType(models.Model):
    """A type of artwork. The five default types are seeded by a migration; curators add more in the admin
    (:mod:`catalogue.services.artwork_types`). The slug is the type's name in a model card's ``classes``."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.name


# The media type of each stored image's extension (the formats inference.preprocessing accepts, under the
# extensions artwork_image_path stores them with): the media views and the IIIF documents name them from here.
IMAGE_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def artwork_image_path(instance: Artwork, filename: str) -> str:
    # Content-addressed: the sha256 makes the name unique and an import that re-runs writes the same name.
    ext = PurePosixPath(filename).suffix.lower() or ".jpg"
    digest = instance.sha256 or uuid.uuid4().hex
    return f"artworks/{digest[:2]}/{digest}{ext}"


def artwork_thumbnail_path(instance: Artwork, filename: str) -> str:
    digest = instance.sha256 or uuid.uuid4().hex
    return f"thumbnails/{digest[:2]}/{digest}.jpg"


def effective_type(*, curator_type: str = "curator_type_id", predicted_type: str) -> Coalesce:
    """The rule, defined once: an artwork's *effective* type is the curator's type when there is one, else the model's
    prediction. A SQL expression over the given fields (ids), for annotations."""
    return Coalesce(curator_type, predicted_type)


def effective_type_is(
    type_id: int | None, *, curator_type: str = "curator_type_id", predicted_type: str
) -> Q:
    """The same rule as a condition: the effective type is ``type_id`` (``None``: the work has no type at all).

    Equivalent to ``effective_type(...) = type_id``, written as ``curator = T OR (curator IS NULL AND predicted =
    T)`` because PostgreSQL estimates those columns from their statistics, while it has none for the ``COALESCE``
    and guesses 0.5 % of the rows: the capped count of a list filtered by a type that 78 % of 100,000 works hold
    then hashed every prediction (104 ms); with the estimate right it stops at the cap (7 ms)."""
    if type_id is None:
        return Q(**{f"{curator_type}__isnull": True, f"{predicted_type}__isnull": True})
    return Q(**{curator_type: type_id}) | Q(**{f"{curator_type}__isnull": True, predicted_type: type_id})


class ArtworkQuerySet(models.QuerySet["Artwork"]):
    def with_prediction(self, version_id: int | None) -> models.QuerySet[Any]:
        """Annotated with one model version's prediction (none: ``version_id`` None) and the effective type:
        ``pred_type_id``, ``pred_confidence``, ``pred_probabilities``, ``effective_type_id``."""
        # QuerySet[Any]: the annotations are not model fields, and django-stubs checks lookups by field.
        return self.annotate(
            pred=FilteredRelation("predictions", condition=Q(predictions__model_version_id=version_id or -1)),
        ).annotate(
            pred_type_id=F("pred__predicted_type_id"),
            pred_confidence=F("pred__confidence"),
            pred_probabilities=F("pred__probabilities"),
            effective_type_id=effective_type(predicted_type="pred__predicted_type_id"),
        )


def prediction_uncertainty(probabilities: Iterable[float]) -> dict[str, float]:
    """How unsure one prediction is, defined once (stored on :class:`Prediction` as ``entropy`` and ``margin`` so the
    review queue can order a million works by an index): the Shannon entropy of the probabilities in nats (high when
    the model hesitates among many types) and the top probability minus the runner-up's (small when it is torn
    between two). Probabilities of zero add nothing to the entropy (the limit of p ln p)."""
    values = sorted((float(p) for p in probabilities), reverse=True)
    entropy = -sum(p * math.log(p) for p in values if p > 0.0)
    top = values[0] if values else 0.0
    runner_up = values[1] if len(values) > 1 else 0.0
    return {"entropy": max(0.0, entropy), "margin": top - runner_up}


class Artwork(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    artist = models.CharField(max_length=ARTIST_MAX_LENGTH, blank=True)
    date = models.CharField(
        max_length=DATE_MAX_LENGTH, blank=True, help_text="As catalogues write it: 'c. 1650', '1890s'."
    )
    accession_number = models.CharField(max_length=ACCESSION_MAX_LENGTH, unique=True, null=True, blank=True)
    # A TextField's max_length binds only forms: the constraint in Meta holds it in the database too.
    description = models.TextField(max_length=DESCRIPTION_MAX_LENGTH, blank=True)
    notes = models.TextField(blank=True, help_text="The curators' notes (bulk edits append to them).")

    image = models.FileField(upload_to=artwork_image_path, max_length=300)
    thumbnail = models.FileField(upload_to=artwork_thumbnail_path, max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    file_size = models.PositiveBigIntegerField(default=0)
    color_histogram = models.JSONField(default=dict, blank=True, help_text="32 bins per RGB channel.")

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The classification claim (catalogue/services/classification.py): which worker holds the work while it is
    # processing, and until when; the worker renews the lease every few seconds, and the sweep hands a work whose
    # lease ran out (its worker died) to another worker, so no work waits minutes nor is classified twice at once.
    claimed_by = models.CharField(max_length=200, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)

    class Provenance(models.TextChoices):
        """Where the artwork's label (``curator_type``) came from. Without a label the effective type is the model's."""

        IMPORTED = "imported", "Given at import"
        SET = "set", "Set by a curator"
        CONFIRMED = "confirmed", "Confirmed by a curator"

    #: Provenances a curator has vouched for: verified labels train and judge models (the gold set).
    VERIFIED = (Provenance.SET, Provenance.CONFIRMED)

    curator_type = models.ForeignKey(
        ArtworkType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The label: given at import or by a curator; once set it is the artwork's effective type.",
    )
    label_provenance = models.CharField(
        max_length=20,
        choices=Provenance.choices,
        blank=True,
        db_index=True,
        help_text="Where the label came from (blank: no label, the effective type is the model's prediction).",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Near-duplicates (catalogue/perceptual_hash.py): the image's pHash (signed 64 bits) and its quarter turns';
    # the photos of one work share a group.
    phash = models.BigIntegerField(null=True, blank=True, db_index=True)
    phash_turns = ArrayField(models.BigIntegerField(), size=3, default=list, blank=True)
    work_group = models.ForeignKey(
        "WorkGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="artworks"
    )

    objects = ArtworkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["title"]),
            models.Index(fields=["artist"]),
            # The catalogue's default order, served by one index for keyset pages (issue 17).
            models.Index(fields=["-created_at", "-id"], name="artwork_created_id"),
            # The labelled works (reviewed counts, the quality page's agreement): few rows of a large catalogue.
            models.Index(
                fields=["curator_type", "status"],
                name="artwork_labelled",
                condition=Q(curator_type__isnull=False),
            ),
            # Works still to classify or retry: counted exactly while the ready majority is estimated.
            models.Index(fields=["status", "id"], name="artwork_unfinished", condition=~Q(status="ready")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("description"), DESCRIPTION_MAX_LENGTH),
                name="artwork_description_length",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def label_verified(self) -> bool:
        return self.curator_type_id is not None and self.label_provenance in self.VERIFIED


class Prediction(models.Model):
    """What one model version says of one artwork. Kept per version so a model swap needs no downtime."""

    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="predictions"
    )
    predicted_type = models.ForeignKey(ArtworkType, on_delete=models.PROTECT, related_name="+")
    confidence = models.FloatField()
    probabilities = models.JSONField(help_text="{type slug: probability}")
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)
    # Stored so the review queue orders by an index instead of computing them per row (issue 17); both come from
    # prediction_uncertainty(). Null only for a row written by code that did not compute them.
    entropy = models.FloatField(null=True, blank=True, help_text="Entropy of the probabilities (nats).")
    margin = models.FloatField(null=True, blank=True, help_text="Top probability minus the runner-up's.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artwork", "model_version"], name="one_prediction_per_version"),
        ]
        indexes = [
            HnswIndex(
                name="prediction_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["model_version", "predicted_type"]),
            # The review queue's three orders, each with its tie-breakers, so the first works of a million come
            # straight off an index (catalogue.selectors.curation.review_queue).
            models.Index(
                fields=["model_version", "confidence", "artwork"], name="prediction_review_confidence"
            ),
            models.Index(
                F("model_version"),
                F("entropy").desc(nulls_last=True),
                F("confidence"),
                F("artwork"),
                name="prediction_review_entropy",
            ),
            models.Index(
                F("model_version"),
                F("margin").asc(nulls_last=True),
                F("confidence"),
                F("artwork"),
                name="prediction_review_margin",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.artwork_id} @ {self.model_version_id}: {self.predicted_type_id} ({self.confidence:.2f})"
        )


class MovedEmbedding(models.Model):
    """The embedding of a work a curator moved out of the model's type, per model version: a copy of the prediction's
    vector, kept only while the artwork's label differs from that version's predicted type (about 1 % of a catalogue).

    Why: "similar works of type T" searches the per-type partial HNSW index of T for the works the model put in T,
    and must also scan exactly the works a curator moved into T. At a million works those are thousands of rows
    scattered over a 2 GB predictions table and the artworks' heap; this table holds them compactly, so the search
    reads a few hundred kilobytes and joins the artworks only for the rows it returns
    (``catalogue.selectors.similarity``).

    Derived data, never edited: :func:`catalogue.services.moved_embeddings.moved_embeddings_sync` recomputes an
    artwork's rows from its label and predictions, in the transaction of every write that changes either (the label
    services, the upload and import services, ``prediction_store``); deleting the artwork or the version deletes
    them.
    """

    # No index per foreign key: the unique pair leads with the artwork (the sync, the artwork's delete), the type
    # index with the version; a type is deleted only when nothing uses it.
    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="+", db_index=False)
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    artwork_type = models.ForeignKey(
        ArtworkType,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        help_text="The curator's type (the effective one).",
    )
    predicted_type = models.ForeignKey(
        ArtworkType, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["artwork", "model_version"], name="one_moved_embedding_per_version"
            ),
        ]
        # The typed search reads one version's works of one type.
        indexes = [models.Index(fields=["model_version", "artwork_type"], name="moved_embedding_type")]

    def __str__(self) -> str:
        return (
            f"{self.artwork_id} @ {self.model_version_id}: {self.predicted_type_id} → {self.artwork_type_id}"
        )


class LabelCorrection(models.Model):
    """The audit trail: every change of an artwork's type by a person or an import."""

    class Source(models.TextChoices):
        PORTAL = "portal", "Portal"
        REVIEW = "review", "Review queue"
        MISLABELS = "mislabels", "Possible mislabels queue"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        IMPORT = "import", "Import"
        FILE = "file", "Corrections file"
        BULK = "bulk", "Bulk edit"
        UNDO = "undo", "Undo of a bulk edit"

    # The trail outlives the artwork: deleting it leaves its rows here, tied to the deletion record instead.
    artwork = models.ForeignKey(
        Artwork, null=True, blank=True, on_delete=models.SET_NULL, related_name="label_corrections"
    )
    deletion = models.ForeignKey(
        "ArtworkDeletion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="label_corrections",
        help_text="Set when the artwork was deleted: which one it was.",
    )
    from_type = models.ForeignKey(
        ArtworkType, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_type = models.ForeignKey(ArtworkType, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.artwork_id}: {self.from_type_id} → {self.to_type_id} ({self.source})"


class LabelCheck(models.Model):
    """One run of the mislabel detector over the labelled catalogue: out-of-fold predictions, then confident learning.

    Runs in the background (``catalogue.tasks.label_check_run``); the newest finished run feeds the "Possible
    mislabels" queue.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=200, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    labelled = models.PositiveIntegerField(default=0, help_text="Labelled works checked.")
    flagged = models.PositiveIntegerField(default=0, help_text="Works whose label the detector doubts.")
    folds = models.PositiveSmallIntegerField(default=5)
    method = models.JSONField(
        default=dict, blank=True, help_text="Features, model, folds, cleanlab settings."
    )
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One check at a time: at most one row queued or running.
            models.UniqueConstraint(
                models.Value(True),
                condition=models.Q(status__in=["queued", "running"]),
                name="one_label_check_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"label check {self.pk} ({self.status})"


class LabelIssue(models.Model):
    """What one label check says of one labelled artwork: the out-of-fold probability of each type, and whether
    confident learning flags the label."""

    check_run = models.ForeignKey(LabelCheck, on_delete=models.CASCADE, related_name="issues")
    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="label_issues")
    label_type = models.ForeignKey(
        ArtworkType, on_delete=models.CASCADE, related_name="+", help_text="The label when it was checked."
    )
    suggested_type = models.ForeignKey(
        ArtworkType, on_delete=models.CASCADE, related_name="+", help_text="The out-of-fold model's top type."
    )
    label_probability = models.FloatField(help_text="Out-of-fold probability of the label.")
    suggested_probability = models.FloatField(help_text="Out-of-fold probability of the suggested type.")
    probabilities = models.JSONField(help_text="{type slug: out-of-fold probability}")
    quality = models.FloatField(help_text="cleanlab's label quality score, 0 (surely wrong) to 1.")
    flagged = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["check_run", "artwork"], name="one_issue_per_check_and_artwork"),
        ]
        indexes = [models.Index(fields=["check_run", "flagged", "quality"])]

    def __str__(self) -> str:
        return f"{self.artwork_id}: {self.label_type_id} → {self.suggested_type_id} ({self.quality:.2f})"


class TrainingJob(models.Model):
    """A new model version trained from the catalogue in the background (the Models page's "Train a new version").

    One runs at a time, on the training worker's own queue; a curator can cancel it. The version folder appears
    only when training has finished (written aside, then renamed), so a killed job leaves no half-written version.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        CANCELLING = "cancelling", "Cancelling"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"
        DONE = "done", "Done"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=200, blank=True)
    member = models.PositiveSmallIntegerField(default=0)
    members = models.PositiveSmallIntegerField(default=0)
    epoch = models.PositiveSmallIntegerField(default=0)
    epochs = models.PositiveSmallIntegerField(default=0)
    log = models.TextField(blank=True)
    options = models.JSONField(default=dict, blank=True)
    version = models.CharField(max_length=100, blank=True, help_text="The version it wrote, when done.")
    gate = models.JSONField(
        default=dict, blank=True, help_text="Gold-set comparison with the active version and the decision."
    )
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One job at a time: at most one row queued, running or cancelling.
            models.UniqueConstraint(
                models.Value(True),
                condition=models.Q(status__in=["queued", "running", "cancelling"]),
                name="one_training_job_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"


class ArtworkFeatures(models.Model):
    """Frozen image features of an artwork as the label checks use them, kept so that the next check computes only
    the new works' (a cache: deleting rows costs only time). ``extractor`` names the features
    (``inference.label_quality.FeatureSpec.name``); ``vector`` holds them as float16 bytes (half the room of
    float32, far finer than what a probe on them can tell apart)."""

    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="+")
    extractor = models.CharField(max_length=200)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artwork", "extractor"], name="one_feature_vector_per_extractor"),
        ]

    def __str__(self) -> str:
        return f"features of {self.artwork_id} ({self.extractor})"


class ArtworkDeletion(models.Model):
    """Who deleted which artwork, and when: the audit record that outlives the artwork, its files and predictions.
    Its label history stays (``LabelCorrection.deletion``); ``snapshot`` keeps the row's fields as they were."""

    artwork_pk = models.BigIntegerField(db_index=True, help_text="The deleted artwork's id.")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    sha256 = models.CharField(max_length=64, db_index=True)
    snapshot = models.JSONField(
        default=dict, blank=True, help_text="The artwork's fields when it was deleted."
    )
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deleted_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-deleted_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.artwork_pk} “{self.title}” deleted"


# --- History, bulk edits, near-duplicates -----------------------------------------------------------------------


class BulkEdit(models.Model):
    """One edit of many artworks at once (catalogue/services/bulk_edits.py): what was set, on which selection, by
    whom; its per-artwork changes are :class:`ArtworkChange` rows pointing here. Undone as one action."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=20, help_text="Where it was made: portal, api or admin.")
    values = models.JSONField(help_text="What was set: {artist, date, type (slug), note}.")
    selection = models.JSONField(help_text="How the works were chosen: {filter: {...}} or {ids: [...]}.")
    count = models.PositiveIntegerField(default=0, help_text="Artworks selected.")
    changed = models.PositiveIntegerField(default=0, help_text="Artworks it changed.")
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undo_result = models.JSONField(
        default=dict, blank=True, help_text="{restored: n, skipped: [{artwork, field, reason}]}"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"bulk edit {self.pk} ({self.count} artworks)"


class ArtworkChange(models.Model):
    """The history of an artwork: one row per changed field (metadata and type), who, when, where, old -> new.

    Kept after the artwork is deleted (``artwork`` becomes null, ``artwork_ref`` keeps its id). Type changes are
    also in :class:`LabelCorrection` (the labels' own audit trail, which training reads); here they make one
    timeline with the rest."""

    Source = LabelCorrection.Source  # one list of the places a change is made

    artwork = models.ForeignKey(
        Artwork, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    artwork_ref = models.BigIntegerField(db_index=True, help_text="The artwork's id, kept after a delete.")
    field = models.CharField(max_length=40)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=20, choices=LabelCorrection.Source.choices)
    bulk_edit = models.ForeignKey(
        BulkEdit, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["artwork_ref", "field", "-id"])]

    def __str__(self) -> str:
        return f"{self.artwork_ref}.{self.field}: {self.old_value!r} → {self.new_value!r} ({self.source})"


class WorkGroup(models.Model):
    """The photographs of one work (front and back, details, a rescan): artworks linked from the near-duplicate
    triage. Similar-works lists show a group once."""

    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"work {self.pk}"


class NearDuplicatePair(models.Model):
    """Two artworks whose images are very likely photographs of the same work, and the curators' decision. A pair
    decided *different* is kept so that no search ever proposes it again. ``artwork_a`` has the smaller id."""

    class Status(models.TextChoices):
        OPEN = "open", "To decide"
        SAME = "same", "Same work"
        DIFFERENT = "different", "Different works"

    class Found(models.TextChoices):
        UPLOAD = "upload", "Upload"
        IMPORT = "import", "Import"
        SCAN = "scan", "Search over the catalogue"

    artwork_a = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="+")
    artwork_b = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="+")
    hash_distance = models.PositiveSmallIntegerField(null=True, blank=True)
    similarity = models.FloatField(null=True, blank=True, help_text="Cosine similarity of the embeddings.")
    alignment = models.FloatField(help_text="Best normalised correlation of the aligned images (-1 to 1).")
    found_by = models.CharField(max_length=20, choices=Found.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-alignment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["artwork_a", "artwork_b"], name="one_near_duplicate_pair"),
            models.CheckConstraint(
                condition=Q(artwork_a__lt=F("artwork_b")), name="near_duplicate_pair_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.artwork_a_id} ~ {self.artwork_b_id} ({self.status})"


class MapLayout(models.Model):
    """The collection map of one model version: the two principal axes of its embeddings (fitted once, in the
    background, on a sample) and every work's place along them (:class:`MapPoint`).

    The projection is kept so that a work classified later is placed at once with the same axes
    (:func:`catalogue.services.maps.map_points_place`), without computing the layout again.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    model_version = models.OneToOneField(
        "inference.ModelVersion", on_delete=models.CASCADE, related_name="map_layout"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    mean = models.JSONField(default=list, blank=True, help_text="The sample's mean embedding.")
    components = models.JSONField(
        default=list, blank=True, help_text="The two principal axes (2 × embedding dimensions, unit length)."
    )
    explained_variance = models.JSONField(
        default=list, blank=True, help_text="Share of the sample's variance along each axis."
    )
    sample_size = models.PositiveIntegerField(default=0, help_text="Embeddings the axes were fitted on.")
    placed = models.PositiveIntegerField(default=0, help_text="Works placed when the layout was computed.")
    seconds = models.FloatField(default=0.0, help_text="How long computing it took.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    # The points as the page downloads them (catalogue/selectors/maps.py), built in the background at a million
    # works: a page is served the last build at once while a newer one is made.
    points_gzip = models.BinaryField(default=b"", blank=True, editable=False, help_text="The gzipped binary.")
    points_key = models.CharField(
        max_length=64, blank=True, help_text="What the stored binary was built from."
    )
    points_requested_key = models.CharField(
        max_length=64, blank=True, help_text="The newest build asked for."
    )
    points_count = models.PositiveIntegerField(default=0)
    points_seconds = models.FloatField(default=0.0, help_text="How long the last build took.")

    def __str__(self) -> str:
        return f"map layout of {self.model_version_id} ({self.status})"


class MapPoint(models.Model):
    """One work's place on a map layout, in the layout's own units (along the principal axes; the page scales them).

    One per prediction: a layout belongs to one model version, and a version has one prediction per work; deleting
    the work deletes its predictions and so its points.
    """

    # No index of its own on layout: the box index leads with it.
    layout = models.ForeignKey(MapLayout, on_delete=models.CASCADE, related_name="points", db_index=False)
    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="map_point")
    x = models.FloatField()
    y = models.FloatField()

    class Meta:
        # A small box selected on the map (the catalogue's map_box filter) is a range scan on x within the layout.
        indexes = [models.Index(fields=["layout", "x", "y"], name="map_point_box")]

    def __str__(self) -> str:
        return f"{self.prediction_id} at ({self.x:.3f}, {self.y:.3f})"
