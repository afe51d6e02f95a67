"""The "Possible mislabels" queue: which doubted labels it holds and in what order, each decision's effect on the
label, its provenance and the audit trail, the portal page (keys, skipping, empty states) and who may do what.

The detector is another part's work: these tests write LabelCheck / LabelIssue rows as it would."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalogue.models import Artwork, LabelCheck, LabelCorrection
from catalogue.selectors.label_issues import mislabel_progress, mislabel_queue
from catalogue.services.labels import label_confirm, label_correct
from catalogue.services.mislabels import MislabelDecision, NotInQueue, mislabel_decide
from tests.catalogue.curation_helpers import confident, logged_in, ready_artwork, type_of
from tests.factories import LabelCheckFactory, label_issue_for

pytestmark = pytest.mark.django_db

MISLABELS = "catalogue:mislabels"


@pytest.fixture
def curator_client(client, curator):
    return logged_in(client, curator)


@pytest.fixture
def viewer_client(client, viewer):
    return logged_in(client, viewer)


def imported(version, label: str, predicted: str, title: str) -> Artwork:
    """A ready work whose label came with the import, predicted ``predicted`` by the active model."""
    return ready_artwork(version, confident(predicted), curator_type=type_of(label), title=title)


@pytest.fixture
def checked(active_model, curator):
    """A finished check (and an older one) over eight imported labels, then some changes made since."""
    works = {
        name: imported(active_model, label, predicted, f"Work {name}")
        for name, label, predicted in [
            ("A", "drawings", "painting"),
            ("B", "engraving", "iconography"),
            ("C", "drawings", "engraving"),
            ("D", "painting", "painting"),  # not doubted
            ("E", "sculpture", "painting"),  # doubted, then confirmed by a curator
            ("F", "drawings", "painting"),  # doubted, then relabelled by a curator
            ("G", "engraving", "painting"),  # doubted only by the older check
        ]
    }
    older = LabelCheckFactory()
    label_issue_for(
        works["G"],
        check=older,
        suggested="painting",
        label_probability=0.1,
        suggested_probability=0.8,
        quality=0.01,
    )
    check = LabelCheckFactory(labelled=7)
    for name, suggested, p_label, p_suggested, quality in [
        ("A", "painting", 0.05, 0.85, 0.05),
        ("C", "engraving", 0.3, 0.6, 0.3),
        ("B", "iconography", 0.2, 0.7, 0.2),
        ("E", "painting", 0.1, 0.8, 0.1),
        ("F", "painting", 0.02, 0.9, 0.02),
    ]:
        label_issue_for(
            works[name],
            check=check,
            suggested=suggested,
            label_probability=p_label,
            suggested_probability=p_suggested,
            quality=quality,
        )
    label_issue_for(
        works["D"],
        check=check,
        suggested="painting",
        label_probability=0.9,
        suggested_probability=0.9,
        quality=0.9,
        flagged=False,
    )
    label_issue_for(
        works["G"],
        check=check,
        suggested="painting",
        label_probability=0.6,
        suggested_probability=0.6,
        quality=0.6,
        flagged=False,
    )
    label_confirm(artwork=works["E"], user=curator, source=LabelCorrection.Source.PORTAL)
    label_correct(
        artwork=works["F"], to_type=type_of("painting"), user=curator, source=LabelCorrection.Source.PORTAL
    )
    return works, check


def names(queue) -> list[str]:
    return [issue.artwork.title.removeprefix("Work ") for issue in queue]


# --- The selectors ------------------------------------------------------------------------------------------------


def test_queue_holds_the_open_flags_of_the_newest_finished_check_most_doubtful_first(checked):
    works, check = checked
    # Newer checks that have not finished (or failed) do not replace the finished one's queue.
    LabelCheckFactory(status=LabelCheck.Status.RUNNING)
    LabelCheckFactory(status=LabelCheck.Status.FAILED, error="out of memory")
    queue = list(mislabel_queue())
    assert names(queue) == ["A", "B", "C"]  # quality 0.05, 0.2, 0.3; E confirmed, F relabelled, G older check
    assert {issue.check_run_id for issue in queue} == {check.pk}
    first = queue[0]
    assert (first.label_type.slug, first.suggested_type.slug) == ("drawings", "painting")
    assert (first.label_probability, first.suggested_probability) == (0.05, 0.85)
    assert first.probabilities["painting"] == 0.85 and sum(first.probabilities.values()) == pytest.approx(1.0)
    assert names(mislabel_queue(exclude_ids=[works["A"].pk, works["C"].pk])) == ["B"]


def test_a_newer_finished_check_replaces_the_queue(checked):
    works, _ = checked
    newer = LabelCheckFactory()
    label_issue_for(
        works["D"],
        check=newer,
        suggested="sculpture",
        label_probability=0.1,
        suggested_probability=0.7,
        quality=0.1,
    )
    assert names(mislabel_queue()) == ["D"]


def test_queue_is_empty_until_a_check_has_finished(active_model):
    work = imported(active_model, "drawings", "painting", "Work A")
    running = LabelCheckFactory(status=LabelCheck.Status.RUNNING)
    label_issue_for(
        work,
        check=running,
        suggested="painting",
        label_probability=0.1,
        suggested_probability=0.8,
        quality=0.1,
    )
    assert list(mislabel_queue()) == []
    progress = mislabel_progress()
    assert progress.check is None and progress.running and progress.flagged == 0


def test_progress_counts_flagged_settled_and_remaining(checked):
    _, check = checked
    progress = mislabel_progress()
    assert progress.check == check and not progress.running
    # Flagged by the newest check: A, B, C, E, F; E and F are settled.
    assert (progress.flagged, progress.settled, progress.remaining) == (5, 2, 3)
    assert progress.settled_share == pytest.approx(2 / 5)
    LabelCheckFactory(status=LabelCheck.Status.QUEUED)
    assert mislabel_progress().running


def test_progress_follows_each_decision_although_the_open_count_is_kept_between_views(checked, curator):
    works, _ = checked
    assert mislabel_progress().remaining == 3  # counted, and kept for the next views
    mislabel_decide(artwork_id=works["A"].pk, decision=MislabelDecision.KEEP, user=curator)
    assert (mislabel_progress().settled, mislabel_progress().remaining) == (3, 2)
    label_correct(
        artwork=works["B"], to_type=type_of("sculpture"), user=curator, source=LabelCorrection.Source.API
    )
    assert mislabel_progress().remaining == 1  # a label changed anywhere settles its entry too


# --- The decisions ------------------------------------------------------------------------------------------------


def last_correction(artwork: Artwork) -> LabelCorrection:
    return LabelCorrection.objects.filter(artwork=artwork).order_by("-id").first()


def test_keeping_a_label_confirms_it_and_it_never_comes_back(checked, curator):
    works, _ = checked
    a = works["A"]
    correction = mislabel_decide(artwork_id=a.pk, decision=MislabelDecision.KEEP, user=curator)
    a.refresh_from_db()
    assert a.curator_type == type_of("drawings")
    assert a.label_provenance == Artwork.Provenance.CONFIRMED and a.label_verified
    assert correction == last_correction(a)
    assert (correction.from_type.slug, correction.to_type.slug) == ("drawings", "drawings")
    assert (correction.source, correction.user) == (LabelCorrection.Source.MISLABELS, curator)
    assert "Kept the label" in correction.note and "suggested Painting" in correction.note
    assert names(mislabel_queue()) == ["B", "C"]
    # Even a later check that flagged it again would not bring a confirmed label back.
    newer = LabelCheckFactory()
    label_issue_for(
        a, check=newer, suggested="painting", label_probability=0.05, suggested_probability=0.9, quality=0.01
    )
    assert names(mislabel_queue()) == []


def test_taking_the_suggestion_sets_the_suggested_type(checked, curator):
    works, _ = checked
    b = works["B"]
    correction = mislabel_decide(
        artwork_id=b.pk, decision=MislabelDecision.SUGGESTION, user=curator, note="A printed plate."
    )
    b.refresh_from_db()
    assert b.curator_type == type_of("iconography")
    assert b.label_provenance == Artwork.Provenance.SET and b.label_verified
    assert (correction.from_type.slug, correction.to_type.slug, correction.source, correction.note) == (
        "engraving",
        "iconography",
        LabelCorrection.Source.MISLABELS,
        "A printed plate.",
    )
    assert names(mislabel_queue()) == ["A", "C"]


def test_choosing_another_type_sets_it(checked, curator):
    works, _ = checked
    c = works["C"]
    correction = mislabel_decide(
        artwork_id=c.pk, decision=MislabelDecision.TYPE, to_type=type_of("sculpture"), user=curator
    )
    c.refresh_from_db()
    assert (c.curator_type.slug, c.label_provenance) == ("sculpture", Artwork.Provenance.SET)
    assert (correction.from_type.slug, correction.to_type.slug) == ("drawings", "sculpture")
    assert names(mislabel_queue()) == ["A", "B"]


def test_choosing_the_label_itself_confirms_it(checked, curator):
    works, _ = checked
    mislabel_decide(artwork_id=works["C"].pk, decision=MislabelDecision.TYPE, to_type=type_of("drawings"))
    works["C"].refresh_from_db()
    assert works["C"].label_provenance == Artwork.Provenance.CONFIRMED


def test_only_open_entries_can_be_settled_and_only_once(checked, curator):
    works, _ = checked
    before = LabelCorrection.objects.count()
    for name in ("D", "E", "F", "G"):  # not doubted, confirmed, relabelled, doubted only by an older check
        with pytest.raises(NotInQueue):
            mislabel_decide(artwork_id=works[name].pk, decision=MislabelDecision.KEEP, user=curator)
    with pytest.raises(NotInQueue):
        mislabel_decide(artwork_id=10**9, decision=MislabelDecision.KEEP)
    mislabel_decide(artwork_id=works["A"].pk, decision=MislabelDecision.SUGGESTION, user=curator)
    with pytest.raises(NotInQueue):  # a second curator deciding the same work a moment later
        mislabel_decide(artwork_id=works["A"].pk, decision=MislabelDecision.KEEP, user=curator)
    assert LabelCorrection.objects.count() == before + 1
    with pytest.raises(ValueError):
        mislabel_decide(artwork_id=works["B"].pk, decision="maybe")
    with pytest.raises(ValueError):
        mislabel_decide(artwork_id=works["B"].pk, decision=MislabelDecision.TYPE)
    assert LabelCorrection.objects.count() == before + 1


# --- The page -----------------------------------------------------------------------------------------------------


def test_page_shows_the_most_doubtful_label_with_its_evidence(curator_client, checked):
    works, check = checked
    response = curator_client.get(reverse(MISLABELS))
    assert response.status_code == 200
    html = response.content.decode()
    a = works["A"]
    assert response.context["issue"].artwork == a
    assert f'src="/artworks/{a.pk}/display.jpg"' in html  # the image (its display copy), not the thumbnail
    assert 'id="label-type">Drawing<' in html and 'id="suggested-type">Painting<' in html
    assert 'id="label-provenance">given at import<' in html
    assert "5% out-of-fold" in html and "85% out-of-fold" in html
    rows = dict((t.slug, p) for t, p in response.context["probabilities"])
    assert rows == pytest.approx(
        {
            "drawings": 0.05,
            "painting": 0.85,
            "engraving": 0.1 / 3,
            "iconography": 0.1 / 3,
            "sculpture": 0.1 / 3,
        }
    )
    assert len(response.context["similar"]) == 5
    similar_ids = {s.artwork.pk for s in response.context["similar"]}
    assert a.pk not in similar_ids and similar_ids <= {w.pk for w in works.values()}
    # Flagged 5, settled 2 (E and F), 3 to look at.
    assert (
        'id="flagged-count">5<' in html
        and 'id="settled-count">2<' in html
        and 'id="remaining-count">3<' in html
    )
    # Buttons for every decision, with their keys; a form the page works with without JavaScript.
    assert 'name="decision" value="suggestion"' in html and 'data-key="a enter"' in html
    assert 'name="decision" value="keep"' in html and 'data-key="k"' in html
    for i, slug in enumerate(["drawings", "engraving", "iconography", "painting", "sculpture"], start=1):
        assert f'name="type" value="{slug}" class="button" data-key="{i}"' in html
    assert 'data-key="s"' in html and "csrfmiddlewaretoken" in html
    assert "js/queue-keys.js" in html and "onclick" not in html and "onkeydown" not in html
    # The suggestion is the form's first button: Enter in the note field takes it.
    form = html[html.index('id="mislabel-form"') :]
    assert form.index('value="suggestion"') < form.index('value="keep"') < form.index('name="type"')


@pytest.mark.parametrize(
    ("post", "slug", "provenance"),
    [
        ({"decision": "keep"}, "drawings", Artwork.Provenance.CONFIRMED),
        ({"decision": "suggestion"}, "painting", Artwork.Provenance.SET),
        ({"type": "sculpture"}, "sculpture", Artwork.Provenance.SET),
        ({"type": "drawings"}, "drawings", Artwork.Provenance.CONFIRMED),
    ],
)
def test_each_button_settles_the_label_and_shows_the_next(
    curator_client, curator, checked, post, slug, provenance
):
    works, _ = checked
    a = works["A"]
    response = curator_client.post(
        reverse("catalogue:mislabels-decide", args=[a.pk]), {**post, "note": "Looked."}
    )
    assert response.status_code == 302 and response["Location"] == reverse(MISLABELS)
    a.refresh_from_db()
    assert (a.curator_type.slug, a.label_provenance) == (slug, provenance)
    correction = last_correction(a)
    assert (correction.to_type.slug, correction.source, correction.user, correction.note) == (
        slug,
        LabelCorrection.Source.MISLABELS,
        curator,
        "Looked.",
    )
    page = curator_client.get(reverse(MISLABELS))
    assert page.context["issue"].artwork == works["B"]


@pytest.mark.parametrize("post", [{}, {"decision": "maybe"}, {"type": "etching"}, {"decision": "type"}])
def test_a_bad_decision_changes_nothing(curator_client, checked, post):
    works, _ = checked
    before = LabelCorrection.objects.count()
    response = curator_client.post(
        reverse("catalogue:mislabels-decide", args=[works["A"].pk]), post, follow=True
    )
    assert response.status_code == 200
    assert LabelCorrection.objects.count() == before
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    works["A"].refresh_from_db()
    assert works["A"].label_provenance == Artwork.Provenance.IMPORTED


def test_deciding_a_work_not_in_the_queue_says_so(curator_client, checked):
    works, _ = checked
    before = LabelCorrection.objects.count()
    response = curator_client.post(
        reverse("catalogue:mislabels-decide", args=[works["D"].pk]), {"decision": "keep"}, follow=True
    )
    assert "no longer in the queue" in response.content.decode()
    assert LabelCorrection.objects.count() == before
    assert (
        curator_client.post(
            reverse("catalogue:mislabels-decide", args=[10**9]), {"decision": "keep"}
        ).status_code
        == 404
    )


def test_skipping_sets_a_work_aside_for_the_session_only(curator_client, checked, client, viewer):
    works, _ = checked
    curator_client.post(reverse("catalogue:mislabels-skip", args=[works["A"].pk]))
    page = curator_client.get(reverse(MISLABELS))
    assert page.context["issue"].artwork == works["B"] and page.context["skipped"] == 1
    works["A"].refresh_from_db()
    assert works["A"].label_provenance == Artwork.Provenance.IMPORTED  # skipping decides nothing
    curator_client.post(reverse("catalogue:mislabels-skip", args=[works["B"].pk]))
    curator_client.post(reverse("catalogue:mislabels-skip", args=[works["C"].pk]))
    html = curator_client.get(reverse(MISLABELS)).content.decode()
    assert 'id="queue-empty"' in html and "apart from the 3 you skipped" in html
    curator_client.post(reverse("catalogue:mislabels-reset"))
    assert curator_client.get(reverse(MISLABELS)).context["issue"].artwork == works["A"]


def test_viewers_look_but_cannot_decide(viewer_client, checked):
    works, _ = checked
    response = viewer_client.get(reverse(MISLABELS))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="mislabel-form"' not in html and "only curators can settle labels" in html
    assert response.context["issue"].artwork == works["A"]
    for name, post in [
        ("catalogue:mislabels-decide", {"decision": "keep"}),
        ("catalogue:mislabels-skip", {}),
    ]:
        assert viewer_client.post(reverse(name, args=[works["A"].pk]), post).status_code == 403
    works["A"].refresh_from_db()
    assert works["A"].label_provenance == Artwork.Provenance.IMPORTED


def test_anonymous_visitors_are_sent_to_log_in(client, checked):
    response = client.get(reverse(MISLABELS))
    assert response.status_code == 302 and "login" in response["Location"]


def test_empty_states_say_why(curator_client, active_model):
    def empty_text() -> str:
        html = curator_client.get(reverse(MISLABELS)).content.decode()
        return html[html.index('id="queue-empty"') :]

    assert "No label check has run yet" in empty_text()
    running = LabelCheckFactory(
        status=LabelCheck.Status.RUNNING, stage="out-of-fold predictions", done=2, total=5
    )
    assert "A label check is running" in empty_text()
    assert "out-of-fold predictions, 2 of 5" in curator_client.get(reverse(MISLABELS)).content.decode()
    LabelCheck.objects.filter(pk=running.pk).update(status=LabelCheck.Status.DONE, labelled=40)
    assert "Nothing is doubtful: label check" in empty_text() and "among 40" in empty_text()
    work = imported(active_model, "drawings", "painting", "Work A")
    label_issue_for(
        work,
        check=LabelCheck.objects.get(pk=running.pk),
        suggested="painting",
        label_probability=0.1,
        suggested_probability=0.8,
        quality=0.1,
    )
    mislabel_decide(artwork_id=work.pk, decision=MislabelDecision.KEEP)
    assert "Nothing doubtful left: all 1 labels" in empty_text()
    LabelCheckFactory(status=LabelCheck.Status.FAILED, error="The worker ran out of memory")
    assert (
        "the last label check failed: The worker ran out of memory"
        in curator_client.get(reverse(MISLABELS)).content.decode()
    )


def test_the_queue_is_linked_from_the_nav_and_the_review_queue(curator_client, active_model):
    mislabels_url = reverse(MISLABELS)
    assert f'href="{mislabels_url}"' in curator_client.get(reverse("catalogue:artwork-list")).content.decode()
    assert 'id="mislabels-link"' in curator_client.get(reverse("catalogue:review")).content.decode()


def test_a_curator_starts_a_label_check_from_the_queue_once(curator_client, viewer, active_model):
    from django.test import Client

    url = reverse("catalogue:label-check-start")
    as_viewer = Client()
    as_viewer.force_login(viewer)
    assert as_viewer.post(url).status_code == 403
    assert not LabelCheck.objects.exists()

    response = curator_client.post(url, follow=True)
    assert response.status_code == 200
    check = LabelCheck.objects.get()
    assert check.status == LabelCheck.Status.QUEUED
    assert f"Label check {check.pk} queued" in response.content.decode()

    again = curator_client.post(url, follow=True)  # one check at a time: the second is refused, not queued
    assert LabelCheck.objects.count() == 1
    assert "Check the labels now" not in again.content.decode()  # no button while one is waiting
