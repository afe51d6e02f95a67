"""The import command killed with SIGKILL in the middle of a run (a real process, a real kill), then run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from catalogue.importing import artworks_import
from catalogue.models import Artwork, Prediction
from tests.conftest import TINY_VERSION, wait_for
from tests.images import image_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

IMAGES = 240


def stored_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def referenced_files() -> set[str]:
    return {n for pair in Artwork.objects.values_list("image", "thumbnail") for n in pair if n}


def test_killed_import_loses_nothing_and_the_next_run_completes_it(
    active_model, settings, model_root, tmp_path
):
    from django.db import connection

    settings.MEDIA_ROOT = tmp_path / "media"
    folder = tmp_path / "collection"
    for index in range(IMAGES):
        path = folder / ("painting" if index % 2 else "sculpture") / f"work_{index:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(index, size=(360, 300)))

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "artsite.settings.test",
        "ARTSITE_DATABASE_NAME": connection.settings_dict["NAME"],
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTSITE_MODEL_DIRS": str(model_root),
        "ARTSITE_DEFAULT_MODEL": TINY_VERSION,
    }
    log = tmp_path / "import.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "import_artworks",
                str(folder),
                "--batch-size",
                "4",
                "--no-progress",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: Artwork.objects.count() >= 12, timeout=120, interval=0.01, explain=log.read_text)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    committed = Artwork.objects.count()
    assert 12 <= committed < IMAGES, "the kill came after the import had finished"
    # A row never lacks its files; files may lack rows only for the batch being written at the kill.
    assert referenced_files() <= stored_files()
    assert len(stored_files() - referenced_files()) <= 2 * 4
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}

    result = artworks_import(folder=folder, batch_size=16)

    assert result.imported == IMAGES - committed and result.duplicates_in_catalogue == committed
    assert Artwork.objects.count() == IMAGES == Prediction.objects.count()
    assert set(Artwork.objects.values_list("status", flat=True)) == {Artwork.Status.READY}
    assert stored_files() == referenced_files()  # leftovers of the killed batch were replaced, not duplicated
    again = artworks_import(folder=folder)
    assert again.imported == 0 and again.duplicates_in_catalogue == IMAGES
