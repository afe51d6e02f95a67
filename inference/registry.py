"""Model versions on disk: one folder per version, ``<dir>/<version>/model.keras`` + ``card.json``, in the folders
listed by ``settings.ARTSITE_MODEL_DIRS`` (the first is the shipped one in the repository, the last is where new
trainings go). When two folders hold the same version name, the earlier folder wins.

This module never imports TensorFlow, so listing versions stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from inference import model_card

CARD_FILE = "card.json"
MODEL_FILE = "model.keras"


class ModelUnavailable(RuntimeError):
    """A model version cannot serve; ``reason`` says why in words an operator can act on."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"Model {version!r} is unavailable: {reason}")
        self.version = version
        self.reason = reason


class ModelNotFound(ModelUnavailable, LookupError):
    """No folder for this version in any of ``settings.ARTSITE_MODEL_DIRS``."""

    def __init__(self, version: str, reason: str | None = None) -> None:
        dirs = ", ".join(str(d) for d in model_dirs()) or "(none configured)"
        super().__init__(version, reason or f"no folder named {version!r} in {dirs}")


def model_dirs() -> list[Path]:
    return [Path(d) for d in settings.ARTSITE_MODEL_DIRS]


def version_dirs() -> list[Path]:
    """Every version folder (a sub-folder holding a card.json) across the model dirs, in settings order, then by
    name. Other sub-folders (e.g. ``backbones/``) are not versions, nor are hidden ones: a version being written
    (``.<version>.partial``, a training job's ``.training-job-<id>/``) appears only when it is renamed, complete."""
    found: list[Path] = []
    for root in model_dirs():
        if not root.is_dir():
            continue
        found.extend(
            sorted(
                p
                for p in root.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / CARD_FILE).is_file()
            )
        )
    return found


def find_version(version: str) -> Path:
    """The folder of ``version``; raises :class:`ModelNotFound`."""
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ModelNotFound(version, f"{version!r} is not a valid version name")
    for root in model_dirs():
        candidate = root / version
        if candidate.is_dir():
            return candidate
    raise ModelNotFound(version)


def read_card(path: Path | str) -> dict[str, Any]:
    """The card of a version, given its folder or the card file itself. Raises ``ValueError`` if it is unreadable."""
    path = Path(path)
    card_path = path / CARD_FILE if path.is_dir() else path
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{card_path} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{card_path} could not be read: {exc}") from None
    if not isinstance(card, dict):
        raise ValueError(f"{card_path} does not hold a JSON object")
    return card


def rewrite_card(folder: Path | str, card: dict[str, Any]) -> None:
    """Replace a version's card.json in one step (a temporary file, then a rename: no reader sees half of it), and
    render its MODEL_CARD.md again from it."""

    folder = Path(folder)
    temporary = folder / f".{CARD_FILE}.tmp"
    temporary.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, folder / CARD_FILE)
    model_card.write(folder, card)


def list_cards() -> list[dict[str, Any]]:
    """Cards of all versions, newest ``created`` first; each with an added ``path`` key (its folder). Unreadable
    cards are left out; a version name seen in an earlier model dir hides later ones."""
    cards: list[dict[str, Any]] = []
    seen: set[str] = set()
    for folder in version_dirs():
        try:
            card = read_card(folder)
        except ValueError:
            continue
        version = str(card.get("version") or folder.name)
        if version in seen:
            continue
        seen.add(version)
        cards.append({**card, "version": version, "path": str(folder)})
    cards.sort(key=lambda c: str(c.get("created", "")), reverse=True)
    return cards


def newest_version() -> str | None:
    cards = list_cards()
    return cards[0]["version"] if cards else None


def default_version_name() -> str | None:
    """The version to activate on a fresh database: ARTSITE_DEFAULT_MODEL, else the version named in the first
    model dir's ``DEFAULT`` file (the shipped ``inference/weights/DEFAULT``), else the oldest version."""
    if settings.ARTSITE_DEFAULT_MODEL:
        return str(settings.ARTSITE_DEFAULT_MODEL)
    dirs = model_dirs()
    marker = dirs[0] / "DEFAULT" if dirs else None
    if marker is not None and marker.exists():
        return marker.read_text().strip() or None
    cards = list_cards()
    return cards[-1]["version"] if cards else None


@dataclass(frozen=True)
class DefaultArchitecture:
    """What ``train_model`` trains unless told otherwise: the architecture and input size of the default version."""

    architecture: str
    input_size: int
    version: str
    soup: int = 1  # members averaged into the shipped network (its card's hyperparameters.soup.members)


def default_architecture() -> DefaultArchitecture:
    """The default version's architecture, input size and soup size, read from its card, so that a plain
    ``train_model`` (and a training job from the portal) retrains what ships. Raises ``LookupError`` when there is no default version (``ModelNotFound`` when its folder
    is missing) and ``ValueError`` when its card cannot be read or lacks either field."""
    version = default_version_name()
    if version is None:
        dirs = ", ".join(str(d) for d in model_dirs()) or "(none configured)"
        raise LookupError(f"No default model version in {dirs}, so no default architecture.")
    card = read_card(find_version(version))
    try:
        soup = ((card.get("hyperparameters") or {}).get("soup") or {}).get("members", 1)
        return DefaultArchitecture(
            architecture=str(card["architecture"]),
            input_size=int(card["input_size"]),
            version=version,
            soup=int(soup),
        )
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"The card of the default version {version!r} names no architecture and input size."
        ) from None


def new_version_name(prefix: str) -> str:
    """A fresh version name, ``<prefix>-YYYYMMDD-HHMM`` (local time), with ``-2``, ``-3``... if already taken."""
    base = f"{prefix}-{datetime.now():%Y%m%d-%H%M}"
    taken = {p.name for root in model_dirs() if root.is_dir() for p in root.iterdir()}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
