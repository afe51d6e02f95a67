"""Every read of the catalogue that is more than a primary-key lookup, one module per sub-domain.

- ``artworks``: the catalogue list and its filters, an artwork's prediction, type and history, counts.
- ``similarity``: similar works by embedding (pgvector HNSW).
- ``curation``: the review queue and how the model agrees with the curators.
- ``maps``: the collection map.
- ``training``: the catalogue as training examples, the gold set, the types the next version learns, label changes
  since a version, training jobs.
- ``explanations``: which types an artwork's explanation maps are drawn for.
"""
