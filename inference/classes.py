"""The default class list: the five types every shipped version knows and every trained version learns.

A module of its own (no TensorFlow) so that the web process can name the default types without importing Keras.
Further types belong to the catalogue: a version's own class list is on its card (``card["classes"]``), and
training takes its list from the caller (:class:`inference.datasets.ImageSet` ``classes``).
"""

from __future__ import annotations

# Output order of the shipped models' probabilities; the slugs of the seeded catalogue.ArtworkType rows.
CLASSES: tuple[str, ...] = ("drawings", "engraving", "iconography", "painting", "sculpture")
