"""Similar works of one type find the works curators moved into it, through the side table of moved works'
embeddings, whichever write moved them: the label service, a bulk edit and its undo, an import with a label, the
re-embedding of a new version. Expected neighbours come from numpy over the embeddings the tests generate."""

from __future__ import annotations

import hashlib
import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.db import connection

from catalogue.models import Artwork, ArtworkType, MovedEmbedding, Prediction
from catalogue.selectors.similarity import SimilarWork, embedding_nearest
from catalogue.services import model_rollout
from catalogue.services.artworks import artwork_delete, color_histogram, image_check, thumbnail_bytes
from catalogue.services.bulk_edits import BulkValues, bulk_edit_apply, bulk_edit_undo
from catalogue.services.classification import artwork_retry
from catalogue.services.imports import ArtworkDraft, VersionPredictions, artworks_create_batch
from catalogue.services.labels import label_confirm, label_correct
from catalogue.services.moved_embeddings import moved_embeddings_sync
from inference import services as model_services
from inference.models import ModelVersion
from tests.conftest import write_tiny_model
from tests.factories import ArtworkFactory, prediction_for
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

SLUGS = ["drawings", "engraving", "iconography", "painting", "sculpture"]
NEAR, FAR = 15, 15  # sculptures crowd the query's neighbourhood; paintings are farther away


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def type_of(slug: str) -> ArtworkType:
    return ArtworkType.objects.get(slug=slug)


@dataclass
class Catalogue:
    """The generated works, their vectors and the model's types; ``labels`` is what the test set (index → slug)."""

    query: np.ndarray
    works: list[Artwork]
    vectors: list[np.ndarray]
    predicted: list[str]
    labels: dict[int, str] = field(default_factory=dict)
    not_ready: set[int] = field(default_factory=set)

    def effective(self, i: int) -> str:
        return self.labels.get(i, self.predicted[i])

    def expected(self, slug: str, *, k: int = 5, query: np.ndarray | None = None) -> list[int]:
        """The k nearest ready works of effective type ``slug`` by brute force (artwork ids)."""
        q = self.query if query is None else query
        distances = 1.0 - np.stack(self.vectors) @ q
        order = np.argsort(distances, kind="stable")
        eligible = [i for i in order if self.effective(i) == slug and i not in self.not_ready]
        return [self.works[i].pk for i in eligible[:k]]

    def index(self, artwork: Artwork) -> int:
        return next(i for i, w in enumerate(self.works) if w.pk == artwork.pk)


@pytest.fixture
def catalogue(active_model) -> Catalogue:
    rng = np.random.default_rng(17)
    query = unit(rng.normal(size=128))
    works, vectors, predicted = [], [], []
    for i in range(NEAR + FAR):
        near = i < NEAR
        # Distinct distances: the nearest sculptures are far nearer to the query than any painting.
        vector = unit(query + rng.normal(scale=0.04 + 0.01 * i if near else 0.4, size=128))
        slug = "sculpture" if near else "painting"
        artwork = ArtworkFactory(status=Artwork.Status.READY)
        prediction_for(artwork, version=active_model, type_slug=slug, embedding=vector)
        works.append(artwork)
        vectors.append(vector)
        predicted.append(slug)
    return Catalogue(query=query, works=works, vectors=vectors, predicted=predicted)


def search(catalogue: Catalogue, slug: str, *, version: ModelVersion, k: int = 5) -> list[SimilarWork]:
    return embedding_nearest(embedding=catalogue.query, version=version, k=k, type_slug=slug)


def assert_found(catalogue: Catalogue, slug: str, version: ModelVersion, k: int = 5) -> list[int]:
    """The typed search gives exactly the brute-force answer, each work once, all of that effective type."""
    found = search(catalogue, slug, version=version, k=k)
    ids = [w.artwork.pk for w in found]
    assert ids == catalogue.expected(slug, k=k), slug
    assert len(set(ids)) == len(ids)
    assert {w.effective_type_id for w in found} <= {type_of(slug).pk}
    return ids


def test_a_label_moves_a_work_into_the_type_and_out_of_its_old_one(catalogue, active_model, curator):
    moved = catalogue.works[2]  # the model says sculpture, near the query
    label_correct(artwork=moved, to_type=type_of("painting"), user=curator, source="portal")
    catalogue.labels[2] = "painting"

    paintings = assert_found(catalogue, "painting", active_model)
    assert paintings[0] == moved.pk  # the nearest painting, although the model put it among the sculptures
    work = next(w for w in search(catalogue, "painting", version=active_model) if w.artwork.pk == moved.pk)
    assert (work.predicted_type_id, work.effective_type_id) == (
        type_of("sculpture").pk,
        type_of("painting").pk,
    )
    assert moved.pk not in assert_found(catalogue, "sculpture", active_model)

    row = MovedEmbedding.objects.get(artwork=moved)
    assert (row.model_version_id, row.artwork_type_id, row.predicted_type_id) == (
        active_model.pk,
        type_of("painting").pk,
        type_of("sculpture").pk,
    )
    assert np.allclose(np.asarray(row.embedding), catalogue.vectors[2], atol=1e-6)

    artwork_delete(artwork=moved, deleted_by=curator)
    assert not MovedEmbedding.objects.exists()  # deleting the work deletes its row


def test_a_label_set_back_to_the_models_type_removes_its_row(catalogue, active_model, curator):
    work = catalogue.works[0]
    label_correct(artwork=work, to_type=type_of("painting"), user=curator, source="portal")
    assert MovedEmbedding.objects.filter(artwork=work).exists()
    label_correct(artwork=work, to_type=type_of("sculpture"), user=curator, source="review")
    assert not MovedEmbedding.objects.exists()
    assert work.pk not in assert_found(catalogue, "painting", active_model)
    assert work.pk in assert_found(catalogue, "sculpture", active_model)

    label_confirm(artwork=catalogue.works[1], user=curator, source="review")  # the model's type, confirmed
    assert not MovedEmbedding.objects.exists()


def test_a_bulk_edit_moves_works_and_its_undo_moves_them_back(catalogue, active_model, curator):
    picked = [catalogue.works[1], catalogue.works[4]]
    edit = bulk_edit_apply(
        artworks=Artwork.objects.filter(pk__in=[w.pk for w in picked]),
        values=BulkValues(artwork_type=type_of("painting")),
        selection={"ids": [w.pk for w in picked]},
        user=curator,
        source="portal",
    )
    catalogue.labels.update({1: "painting", 4: "painting"})
    paintings = assert_found(catalogue, "painting", active_model)
    assert paintings[:2] == [catalogue.works[1].pk, catalogue.works[4].pk]

    bulk_edit_undo(bulk_edit=edit, user=curator)
    catalogue.labels.clear()  # they had no label before
    assert not MovedEmbedding.objects.exists()
    assert not {w.pk for w in picked} & set(assert_found(catalogue, "painting", active_model))
    assert {w.pk for w in picked} <= set(assert_found(catalogue, "sculpture", active_model, k=NEAR))


def test_the_undo_of_a_bulk_edit_moves_a_work_back_into_the_type(catalogue, active_model, curator):
    work = catalogue.works[3]
    label_correct(artwork=work, to_type=type_of("painting"), user=curator, source="portal")
    edit = bulk_edit_apply(
        artworks=Artwork.objects.filter(pk=work.pk),
        values=BulkValues(artwork_type=type_of("sculpture")),  # the model's type: no longer moved
        selection={"ids": [work.pk]},
        user=curator,
        source="portal",
    )
    catalogue.labels[3] = "sculpture"
    assert edit.changed == 1 and not MovedEmbedding.objects.exists()
    assert work.pk not in assert_found(catalogue, "painting", active_model)

    bulk_edit_undo(bulk_edit=edit, user=curator)
    catalogue.labels[3] = "painting"
    assert assert_found(catalogue, "painting", active_model)[0] == work.pk
    assert work.pk not in assert_found(catalogue, "sculpture", active_model)


def _draft(seed: int, slug: str) -> ArtworkDraft:
    data = image_bytes(seed)
    checked = image_check(data=data)
    return ArtworkDraft(
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        extension=checked.decoded.extension,
        width=checked.decoded.width,
        height=checked.decoded.height,
        thumbnail=thumbnail_bytes(checked.decoded.image),
        color_histogram=color_histogram(checked.decoded.image),
        title=f"Imported {seed}",
        curator_type=type_of(slug),
        label_note="Type given at import (folder).",
    )


def test_an_import_with_a_label_is_found_by_the_typed_search(catalogue, active_model):
    rng = np.random.default_rng(3)
    vectors = unit(catalogue.query + rng.normal(scale=[[0.02], [0.03]], size=(2, 128)))
    probabilities = np.full((2, len(SLUGS)), 0.025, dtype=np.float32)
    probabilities[:, SLUGS.index("sculpture")] = 0.9  # the model says sculpture for both
    with ThreadPoolExecutor(max_workers=2) as writers:
        # The folders say painting, then sculpture.
        created = artworks_create_batch(
            drafts=[_draft(1, "painting"), _draft(2, "sculpture")],
            predictions=[
                VersionPredictions(
                    model_version=active_model, classes=SLUGS, probabilities=probabilities, embeddings=vectors
                )
            ],
            file_writers=writers,
        )
    imported = [created.artworks[0], created.artworks[1]]
    for artwork, vector, label in zip(imported, vectors, ("painting", "sculpture"), strict=True):
        catalogue.labels[len(catalogue.works)] = label
        catalogue.works.append(artwork)
        catalogue.vectors.append(vector)
        catalogue.predicted.append("sculpture")

    assert list(MovedEmbedding.objects.values_list("artwork_id", flat=True)) == [imported[0].pk]
    assert assert_found(catalogue, "painting", active_model)[0] == imported[0].pk
    sculptures = assert_found(catalogue, "sculpture", active_model)
    assert sculptures[0] == imported[1].pk and imported[0].pk not in sculptures


@pytest.fixture
def second_version(settings, model_root, tmp_path):
    write_tiny_model(tmp_path, version="test-tiny-2", seed=7)
    settings.ARTSITE_MODEL_DIRS = [model_root, tmp_path]
    model_services.model_versions_sync()
    return ModelVersion.objects.get(version="test-tiny-2")


def test_reembedding_with_a_new_version_writes_the_moved_works_of_that_version(
    catalogue, active_model, second_version, curator
):
    # Two labels of two types: whatever the new version predicts, at least one of them is not its type.
    labelled = {0: "painting", NEAR: "drawings"}
    for i, slug in labelled.items():
        label_correct(artwork=catalogue.works[i], to_type=type_of(slug), user=curator, source="portal")
    model_rollout.model_activate(version=second_version, enqueue=False)
    while model_rollout.model_reembed_batch(version=second_version, batch_size=8).remaining:
        pass

    # The new version's own embeddings and types, read back: the truth the expected answer is computed from.
    slug_of = {t.pk: t.slug for t in ArtworkType.objects.all()}
    rows = {
        artwork_id: (slug_of[type_id], np.asarray(embedding, dtype=np.float32))
        for artwork_id, type_id, embedding in Prediction.objects.filter(
            model_version=second_version
        ).values_list("artwork_id", "predicted_type_id", "embedding")
    }
    assert len(rows) == len(catalogue.works)
    second = Catalogue(
        query=catalogue.query,
        works=catalogue.works,
        vectors=[rows[w.pk][1] for w in catalogue.works],
        predicted=[rows[w.pk][0] for w in catalogue.works],
        labels=labelled,
    )
    moved = {i for i, slug in labelled.items() if slug != second.predicted[i]}
    assert moved
    assert set(
        MovedEmbedding.objects.filter(model_version=second_version).values_list("artwork_id", flat=True)
    ) == {catalogue.works[i].pk for i in moved}
    for i in moved:
        work = catalogue.works[i]
        query = second.vectors[i]
        found = embedding_nearest(embedding=query, version=second_version, k=5, type_slug=labelled[i])
        ids = [w.artwork.pk for w in found]
        assert ids[0] == work.pk and len(set(ids)) == len(ids)
        # Ties among the tiny model's embeddings are possible: each result within the fifth distance.
        distances = {
            w.pk: float(1.0 - v @ query) for w, v in zip(catalogue.works, second.vectors, strict=True)
        }
        expected = second.expected(labelled[i], query=query)
        assert len(ids) == len(expected)
        kth = max(distances[pk] for pk in expected)
        assert all(distances[pk] <= kth + 1e-5 for pk in ids)


def test_five_results_when_five_exist_though_the_nearest_moved_work_is_not_ready(
    catalogue, active_model, curator
):
    # No work is a drawing for the model: the drawings are all moved works, from both types.
    for i in (0, 1, 2, NEAR, NEAR + 1, NEAR + 2):
        label_correct(artwork=catalogue.works[i], to_type=type_of("drawings"), user=curator, source="portal")
        catalogue.labels[i] = "drawings"
    artwork_retry(artwork=catalogue.works[0])  # the nearest goes back to pending
    catalogue.not_ready.add(0)

    found = assert_found(catalogue, "drawings", active_model)
    assert len(found) == 5 and catalogue.works[0].pk not in found
    assert len(assert_found(catalogue, "drawings", active_model, k=10)) == 5  # only five exist

    Artwork.objects.filter(pk__in=[catalogue.works[i].pk for i in (1, 2)]).update(
        status=Artwork.Status.FAILED
    )
    catalogue.not_ready |= {1, 2}
    assert len(assert_found(catalogue, "drawings", active_model)) == 3


def _rows() -> set[tuple[int, int, int, int]]:
    return set(
        MovedEmbedding.objects.values_list(
            "artwork_id", "model_version_id", "artwork_type_id", "predicted_type_id"
        )
    )


def test_the_whole_catalogue_sync_and_the_backfill_give_the_rows_the_labels_say(
    catalogue, active_model, curator
):
    # NEAR + 3 gets the model's own type: no row.
    labels = {0: "painting", 5: "drawings", NEAR: "sculpture", NEAR + 3: "painting"}
    for i, slug in labels.items():
        label_correct(artwork=catalogue.works[i], to_type=type_of(slug), user=curator, source="portal")
    expected = {
        (catalogue.works[i].pk, active_model.pk, type_of(slug).pk, type_of(catalogue.predicted[i]).pk)
        for i, slug in labels.items()
        if slug != catalogue.predicted[i]
    }
    assert len(expected) == 3 and _rows() == expected

    MovedEmbedding.objects.all().delete()
    assert moved_embeddings_sync(artwork_ids=None) == 3  # what the benchmarks' bulk loads call
    assert _rows() == expected

    MovedEmbedding.objects.all().delete()
    backfill = importlib.import_module("catalogue.migrations.0013_moved_embeddings").BACKFILL
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    assert _rows() == expected
