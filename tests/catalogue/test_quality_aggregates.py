"""The agreement figures are counted once per change of the labels or predictions, not once per page view (the shared
cache under a labels generation, catalogue/selectors/curation.py); the quality page's unfinished works come a page at
a time; the review queue's queries do not grow with the catalogue.

Expected figures are worked out by hand from the works each test makes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue import curation_views
from catalogue.models import Artwork, LabelCorrection
from catalogue.selectors.curation import model_agreement, model_agreements
from catalogue.services.artworks import artwork_delete
from catalogue.services.bulk_edits import BulkValues, bulk_edit_apply, bulk_edit_undo
from catalogue.services.classification import prediction_store
from catalogue.services.labels import label_confirm, label_correct
from inference.models import ModelVersion
from tests.catalogue.curation_helpers import SLUGS, confident, logged_in, ready_artwork, type_of
from tests.factories import ArtworkFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


def label(artwork, slug, user=None):
    label_correct(artwork=artwork, to_type=type_of(slug), user=user, source=LabelCorrection.Source.REVIEW)


# (the model's type, the curator's label): the model is right on the first four.
CASES = [
    ("painting", "painting"),
    ("painting", "painting"),
    ("sculpture", "sculpture"),
    ("drawings", "drawings"),
    ("painting", "engraving"),
    ("iconography", "painting"),
]


@pytest.fixture
def labelled(active_model, curator):
    works = []
    for predicted, curated in CASES:
        artwork = ready_artwork(active_model, confident(predicted))
        label(artwork, curated, curator)
        works.append(artwork)
    return works


@pytest.fixture
def unlabelled(active_model):
    return ready_artwork(active_model, confident("painting"))


def counted(agreement) -> tuple[int, int]:
    return agreement.compared, agreement.agreed


def recounts(fn):
    """Call ``fn`` and say whether it read the predictions (counted the agreement again)."""
    with CaptureQueriesContext(connection) as queries:
        result = fn()
    return result, any('"catalogue_prediction"' in q["sql"] for q in queries.captured_queries)


def test_figures_are_read_back_until_a_label_changes_then_counted_again(labelled, unlabelled, curator):
    first, read = recounts(model_agreement)
    assert read and counted(first) == (6, 4)
    again, read = recounts(model_agreement)
    assert not read, "nothing changed: the figures come from the cache"
    assert counted(again) == (6, 4) and again.computed_at == first.computed_at

    label(unlabelled, "painting", curator)  # the model said painting: one more agreement
    after, read = recounts(model_agreement)
    assert read and counted(after) == (7, 5)

    label(labelled[5], "iconography", curator)  # the model said iconography; the label was painting
    after = model_agreement()
    assert counted(after) == (7, 6)
    index = {t.slug: i for i, t in enumerate(after.types)}
    assert after.matrix[index["painting"]][index["iconography"]] == 0
    assert after.matrix[index["iconography"]][index["iconography"]] == 1

    # A confirmation moves a work from "set" to "confirmed" (the model said painting; the label is painting).
    label_confirm(artwork=labelled[0], user=curator, source=LabelCorrection.Source.REVIEW)
    by = {p.provenance: counted(p.agreement) for p in model_agreement().by_provenance}
    assert by == {"imported": (0, 0), "set": (6, 5), "confirmed": (1, 1)}


def test_the_quality_page_shows_the_new_figures_on_reload(curator_client, labelled, unlabelled, curator):
    html = curator_client.get(reverse("catalogue:quality")).content.decode()
    assert re.search(r'id="overall-agreement">67%<', html)  # 4 of 6
    assert 'id="agreement-computed"' in html

    label(unlabelled, "painting", curator)
    html = curator_client.get(reverse("catalogue:quality")).content.decode()
    assert re.search(r'id="overall-agreement">71%<', html)  # 5 of 7
    row = re.search(r'<tr class="selected">(.*?)</tr>', html, re.S)
    assert row is not None
    assert re.findall(r'<td class="num">(\d+)</td>', row.group(1)) == ["7", "5"]


def test_a_prediction_of_a_labelled_work_is_counted_one_of_an_unlabelled_work_recounts_nothing(
    labelled, unlabelled, active_model
):
    newer = ModelVersion.objects.create(version="v-next", path="/nowhere")
    assert [a.version for a in model_agreements()] == [active_model]  # counted, and cached

    def store(works, predicted):
        probabilities = np.array([[0.9 if s == predicted else 0.025 for s in SLUGS] for _ in works])
        prediction_store(
            artwork_ids=[w.pk for w in works],
            model_version=newer,
            classes=SLUGS,
            probabilities=probabilities,
            embeddings=np.ones((len(works), 128), dtype=np.float32) / np.sqrt(128),
        )

    store([unlabelled], "engraving")
    agreements, read = recounts(model_agreements)
    assert not read, "a prediction of an unlabelled work moves no count"
    assert "v-next" not in [a.version.version for a in agreements]

    # The new version calls the labelled painting (CASES[0]) and the labelled engraving (CASES[4]) engravings.
    store([labelled[0], labelled[4]], "engraving")
    agreements, read = recounts(model_agreements)
    assert read
    by_version = {a.version.version: counted(a) for a in agreements}
    assert by_version["v-next"] == (2, 1)
    assert counted(model_agreement()) == (6, 4)  # the active version's figures did not move


def test_a_label_committed_between_a_prediction_and_its_commit_is_seen_by_the_second_look(
    labelled, unlabelled, django_capture_on_commit_callbacks
):
    newer = ModelVersion.objects.create(version="v-next", path="/nowhere")
    model_agreements()  # counted, and cached
    with django_capture_on_commit_callbacks() as on_commit:
        prediction_store(
            artwork_ids=[unlabelled.pk],
            model_version=newer,
            classes=SLUGS,
            probabilities=np.array([[0.9 if s == "engraving" else 0.025 for s in SLUGS]]),
            embeddings=np.ones((1, 128), dtype=np.float32) / np.sqrt(128),
        )
    assert on_commit, "the prediction announces itself again once committed"
    # Someone else's label of that work commits before this transaction does (its own announcement left out here).
    Artwork.objects.filter(pk=unlabelled.pk).update(curator_type=type_of("engraving"), label_provenance="set")
    assert "v-next" not in [a.version.version for a in model_agreements()]  # still the figures counted before
    for callback in on_commit:
        callback()
    by_version = {a.version.version: counted(a) for a in model_agreements()}
    assert by_version["v-next"] == (1, 1)


def test_deleting_a_labelled_work_and_undoing_a_bulk_edit_recount(labelled, curator):
    assert counted(model_agreement()) == (6, 4)
    artwork_delete(artwork=labelled[5], deleted_by=curator)  # the model was wrong on it
    assert counted(model_agreement()) == (5, 4)

    # The bulk edit calls the work the model took for a painting (labelled engraving) a painting: the model is right.
    edit = bulk_edit_apply(
        artworks=Artwork.objects.filter(pk=labelled[4].pk),
        values=BulkValues(artwork_type=type_of("painting")),
        selection={"ids": [labelled[4].pk]},
        user=curator,
        source="portal",
    )
    assert counted(model_agreement()) == (5, 5)
    bulk_edit_undo(bulk_edit=edit, user=curator)  # back to engraving
    assert counted(model_agreement()) == (5, 4)


def test_with_redis_down_the_figures_are_counted_and_labels_still_saved(
    settings, curator_client, labelled, unlabelled, curator
):
    settings.CACHES = {
        **settings.CACHES,
        "shared": {**settings.CACHES["shared"], "LOCATION": "unix:///nonexistent/redis.sock?db=1"},
    }
    assert counted(model_agreement()) == (6, 4)
    label(unlabelled, "painting", curator)
    assert Artwork.objects.get(pk=unlabelled.pk).curator_type == type_of("painting")
    assert counted(model_agreement()) == (7, 5)
    response = curator_client.get(reverse("catalogue:quality"))
    assert response.status_code == 200
    assert re.search(r'id="overall-agreement">71%<', response.content.decode())


def _review_page_queries(client) -> int:
    """The queries of a view of the review page, apart from the similar-works search: that is one index search, plus
    an exact one when the index came back short — which depends on where the (random) embeddings fall in a tiny
    catalogue, not on how many works there are (catalogue/selectors/similarity.py, tested there)."""
    client.get(reverse("catalogue:review"))  # counts the agreement once; the next views read it back
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("catalogue:review"))
    assert response.status_code == 200 and response.context["artwork"] is not None
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any('GROUP BY "catalogue_prediction"' in q for q in sql)
    searches = [q for q in sql if "p.embedding <=>" in q]
    assert 1 <= len(searches) <= 2
    return len(sql) - len(searches)


def test_the_review_page_makes_as_many_queries_with_30_labelled_works_as_with_3(
    curator_client, active_model, curator
):
    def add(n: int, labelled: int) -> None:
        for i in range(n):
            artwork = ready_artwork(active_model, confident(SLUGS[i % 5], 0.4 + i / 100), seed=i)
            if i < labelled:
                label(artwork, SLUGS[(i + 1) % 5], curator)

    add(15, labelled=3)
    few = _review_page_queries(curator_client)
    progress = curator_client.get(reverse("catalogue:review")).context["progress"]
    assert (progress.reviewed, progress.remaining) == (3, 12)
    add(45, labelled=27)
    progress = curator_client.get(reverse("catalogue:review")).context["progress"]
    assert (progress.reviewed, progress.remaining) == (30, 30)
    many = _review_page_queries(curator_client)
    assert many == few


def test_the_review_page_shows_when_the_agreement_was_counted(curator_client, labelled, unlabelled):
    html = curator_client.get(reverse("catalogue:review")).content.decode()
    assert 'id="agreement-rate">67%<' in html and 'id="agreement-computed"' in html


def test_unfinished_works_come_a_page_at_a_time(curator_client, monkeypatch):
    monkeypatch.setattr(curation_views, "UNFINISHED_PAGE_SIZE", 2)
    failed = [ArtworkFactory(status=Artwork.Status.FAILED) for _ in range(2)]
    pending = [ArtworkFactory() for _ in range(3)]
    expected = [a.pk for a in failed + pending]  # failed first, then the oldest first

    seen, url, pages = [], reverse("catalogue:quality"), 0
    while url:
        html = curator_client.get(url).content.decode()
        pages += 1
        assert "2 failed · 3 pending · 0 processing" in html  # the counts are of every unfinished work
        jobs = html[html.index('id="jobs"') :]
        rows = [int(pk) for pk in re.findall(r'href="/artworks/(\d+)/"', jobs)]
        assert 1 <= len(rows) <= 2
        seen += rows
        more = re.search(r'rel="next" href="([^"]+)"', jobs)
        url = more.group(1).replace("&amp;", "&") if more else None
        if url:
            url = reverse("catalogue:quality") + url
    assert seen == expected and pages == 3


def test_a_broken_page_link_of_the_unfinished_list_shows_the_first_page(curator_client):
    work = ArtworkFactory(status=Artwork.Status.FAILED)
    response = curator_client.get(reverse("catalogue:quality"), {"jobs": "not-a-cursor"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "This page link is not valid" in html and work.title in html
