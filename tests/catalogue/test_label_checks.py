"""Label checks over the catalogue: one verdict per labelled work, the planted mislabel flagged, verified labels never
flagged, progress, one check at a time, when one is due, and the task sent by name.

The frozen ImageNet features are replaced by a stand-in the test controls (each image's mean colour): the three
"types" here are red, green and blue pictures, so which label is wrong is known without any model.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import IntegrityError
from PIL import Image

from catalogue.models import Artwork, ArtworkFeatures, ArtworkType, LabelCheck, LabelCorrection, LabelIssue
from catalogue.selectors.label_checks import label_check_progress
from catalogue.services import label_checks
from catalogue.services.label_checks import (
    LabelCheckBusy,
    label_check_due,
    label_check_request,
    label_check_request_if_due,
    label_check_run,
)
from catalogue.services.labels import label_confirm
from tests.factories import ArtworkFactory

COLOURS = {"drawings": (200, 40, 40), "painting": (40, 200, 40), "sculpture": (40, 40, 200)}
PER_TYPE = 8


class MeanColour:
    """Stand-in features: an image's mean colour. Counts the images it was asked about."""

    name = "test:mean-colour"

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.seen += len(images)
        return np.asarray([np.asarray(image, dtype=np.float32).mean(axis=(0, 1)) / 255 for image in images])


def picture(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour) + rng.normal(0, 12, size=(24, 32, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


_seed = iter(range(10_000, 20_000))


def work(look: str, label: str | None, *, status: str = Artwork.Status.READY, title: str = "") -> Artwork:
    """A ready artwork that looks like ``look`` and is labelled ``label`` (given at import)."""
    curator_type = ArtworkType.objects.get(slug=label) if label else None
    return ArtworkFactory(
        data=picture(COLOURS[look], next(_seed)),
        curator_type=curator_type,
        status=status,
        title=title or look,
    )


@pytest.fixture
def catalogue(db) -> dict[str, Artwork]:  # type: ignore[no-untyped-def]
    """Eight correctly labelled works of each of three types, one red picture labelled painting (the planted
    mislabel), and works that must not be checked: unlabelled, and labelled but still pending."""
    for slug in COLOURS:
        for _ in range(PER_TYPE):
            work(slug, slug)
    return {
        "planted": work("drawings", "painting", title="planted"),
        "unlabelled": work("drawings", None),
        "pending": work("drawings", "drawings", status=Artwork.Status.PENDING),
    }


def run_check(extractor: MeanColour | None = None) -> LabelCheck:
    check = label_check_request(enqueue=False)
    return label_check_run(check_id=check.pk, extractor=extractor or MeanColour())


def test_a_check_writes_one_verdict_per_labelled_work_and_flags_the_planted_one(catalogue) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, int, int]] = []
    check = label_check_request(enqueue=False)

    check = label_check_run(
        check_id=check.pk, extractor=MeanColour(), progress=lambda c: seen.append((c.stage, c.done, c.total))
    )

    labelled = 3 * PER_TYPE + 1
    assert check.status == LabelCheck.Status.DONE
    assert (check.labelled, check.done, check.total) == (labelled, labelled, labelled)
    assert check.finished_at is not None and check.error == ""
    assert LabelIssue.objects.filter(check_run=check).count() == labelled
    assert not LabelIssue.objects.filter(artwork__in=[catalogue["unlabelled"], catalogue["pending"]]).exists()
    planted = LabelIssue.objects.get(check_run=check, artwork=catalogue["planted"])
    assert planted.flagged
    assert (planted.label_type.slug, planted.suggested_type.slug) == ("painting", "drawings")
    assert planted.suggested_probability > planted.label_probability
    assert planted.probabilities["drawings"] == pytest.approx(planted.suggested_probability, abs=1e-5)
    assert set(planted.probabilities) == set(COLOURS)
    assert check.flagged == LabelIssue.objects.filter(check_run=check, flagged=True).count() == 1
    lowest = LabelIssue.objects.filter(check_run=check).order_by("quality").first()
    assert lowest == planted
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "Reading the labelled catalogue" and stages[-1] == "Done"
    assert "Out-of-fold predictions (5 folds) and confident learning" in stages
    assert label_check_progress(check=check)["percent"] == 100


def test_a_confirmed_label_is_never_flagged_again(catalogue) -> None:  # type: ignore[no-untyped-def]
    first = run_check()
    assert LabelIssue.objects.get(check_run=first, artwork=catalogue["planted"]).flagged

    label_confirm(artwork=catalogue["planted"], source=LabelCorrection.Source.MISLABELS)
    second = run_check()

    issue = LabelIssue.objects.get(check_run=second, artwork=catalogue["planted"])
    assert not issue.flagged
    assert issue.suggested_type.slug == "drawings"  # still doubted by the model, but a curator settled it
    assert second.flagged == 0


def test_features_are_cached_per_artwork_and_a_rerun_is_idempotent(catalogue) -> None:  # type: ignore[no-untyped-def]
    extractor = MeanColour()
    check = run_check(extractor)
    assert extractor.seen == 3 * PER_TYPE + 1
    assert ArtworkFeatures.objects.filter(extractor=MeanColour.name).count() == 3 * PER_TYPE + 1

    again = label_check_run(check_id=check.pk, extractor=extractor)  # e.g. a redelivered task
    assert again.status == LabelCheck.Status.DONE
    assert extractor.seen == 3 * PER_TYPE + 1
    assert LabelIssue.objects.filter(check_run=check).count() == 3 * PER_TYPE + 1

    work("sculpture", "sculpture")
    run_check(extractor)
    assert extractor.seen == 3 * PER_TYPE + 2  # only the new work's features were computed


def test_a_check_left_running_by_a_dead_worker_starts_over(catalogue) -> None:  # type: ignore[no-untyped-def]
    check = label_check_request(enqueue=False)
    LabelCheck.objects.filter(pk=check.pk).update(status=LabelCheck.Status.RUNNING, stage="Image features")

    check = label_check_run(check_id=check.pk, extractor=MeanColour())

    assert check.status == LabelCheck.Status.DONE
    assert LabelIssue.objects.filter(check_run=check).count() == 3 * PER_TYPE + 1


def test_an_unreadable_image_is_skipped_and_counted(catalogue) -> None:  # type: ignore[no-untyped-def]
    broken = work("sculpture", "sculpture")
    default_storage.delete(broken.image.name)

    check = run_check()

    assert check.status == LabelCheck.Status.DONE
    assert check.method["unreadable"] == 1
    assert not LabelIssue.objects.filter(artwork=broken).exists()


def test_too_few_labelled_works_end_failed_with_the_reason(db) -> None:  # type: ignore[no-untyped-def]
    for _ in range(6):
        work("drawings", "drawings")
    work("painting", "painting")

    check = run_check()

    assert check.status == LabelCheck.Status.FAILED
    assert "at least two types" in check.error
    assert check.finished_at is not None
    assert not LabelIssue.objects.exists()
    label_check_request(enqueue=False)  # a failed check does not block the next one


def test_a_request_is_refused_while_a_check_is_queued_or_running(db) -> None:  # type: ignore[no-untyped-def]
    check = label_check_request(enqueue=False)
    with pytest.raises(LabelCheckBusy, match="already under way"):
        label_check_request(enqueue=False)
    LabelCheck.objects.filter(pk=check.pk).update(status=LabelCheck.Status.RUNNING)
    with pytest.raises(LabelCheckBusy):
        label_check_request(enqueue=False)
    with pytest.raises(IntegrityError):  # the database holds the line too, whatever a caller does
        LabelCheck.objects.create(status=LabelCheck.Status.QUEUED)


def test_a_request_sends_the_task_by_name_once_committed(
    db, monkeypatch, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    sent: list[tuple[str, list[int], str]] = []
    monkeypatch.setattr(
        label_checks.current_app,
        "send_task",
        lambda name, args, queue, **kwargs: sent.append((name, args, queue)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        check = label_check_request()
        assert sent == []
    assert sent == [("catalogue.tasks.label_check_run", [check.pk], "training")]


def test_a_request_with_the_broker_down_stays_queued_and_the_sweep_resends_it(  # type: ignore[no-untyped-def]
    db, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(label_checks.current_app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        check = label_check_request()
    check.refresh_from_db()
    assert check.status == LabelCheck.Status.QUEUED

    sent: list[int] = []
    monkeypatch.setattr(label_checks.current_app, "send_task", lambda name, args, **kw: sent.extend(args))
    LabelCheck.objects.filter(pk=check.pk).update(created_at=check.created_at.replace(year=2020))
    assert label_check_request_if_due() == check
    assert sent == [check.pk]


def test_a_check_is_due_after_enough_label_changes(catalogue, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ARTSITE_LABEL_CHECK_MIN_LABELS = 26
    assert not label_check_due()  # 25 ready labelled works, none checked yet
    work("painting", "painting")
    assert label_check_due()

    run_check()
    settings.ARTSITE_LABEL_CHECK_AFTER = 2
    assert not label_check_due()
    label_confirm(artwork=catalogue["planted"], source=LabelCorrection.Source.MISLABELS)
    assert not label_check_due()
    work("painting", "painting")
    assert label_check_due()

    label_check_request(enqueue=False)
    assert not label_check_due()  # one is under way


def test_the_task_ignores_a_check_that_no_longer_exists(db) -> None:  # type: ignore[no-untyped-def]
    from catalogue.tasks import label_check_run as task

    task.apply(args=[987654]).get()
    assert not LabelCheck.objects.exists()
