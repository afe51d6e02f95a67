"""Writing an export's images to a folder, under the names its ``path`` column gives them, so that the folder and
the export together are what ``import_artworks FOLDER --manifest EXPORT`` takes on another site."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.files.storage import default_storage


def export_image_write(*, image_name: str, folder: Path, path: str) -> Path:
    """Copy the stored image ``image_name`` to ``folder / path`` (written aside, then renamed: an interrupted
    export leaves no half-written image). A file already there is kept: names are content hashes."""
    target = folder / path
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with default_storage.open(image_name, "rb") as source, partial.open("wb") as out:
        shutil.copyfileobj(source, out, length=1024 * 1024)
    partial.replace(target)
    return target
