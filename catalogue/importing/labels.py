"""Labels from names: the type a folder (``painting/``, ``Drawings/``...) or a manifest's ``type`` column names."""

from __future__ import annotations

from pathlib import PurePosixPath

from catalogue.models import ArtworkType
from catalogue.selectors.artworks import artwork_type_by_slug


class TypeNames:
    """Folder and manifest names to types (``artwork_type_by_slug``), remembered for one run."""

    def __init__(self) -> None:
        self._cache: dict[str, ArtworkType | None] = {}

    def __call__(self, name: str) -> ArtworkType | None:
        key = (name or "").strip().lower()
        if not key:
            return None
        if key not in self._cache:
            self._cache[key] = artwork_type_by_slug(key)
        return self._cache[key]

    def folder_label(self, rel: str) -> tuple[ArtworkType | None, str, str | None]:
        """The type named by the nearest enclosing folder (so ``painting/italian/x.jpg`` and
        ``museum/painting/x.jpg`` are both paintings), that folder, and else the top-level folder that names no
        type (reported as unknown)."""
        folders = list(PurePosixPath(rel).parts[:-1])
        for index in range(len(folders) - 1, -1, -1):
            artwork_type = self(folders[index])
            if artwork_type is not None:
                return artwork_type, "folder " + "/".join(folders[: index + 1]) + "/", None
        return None, "", (folders[0] if folders else None)
