"""IIIF Presentation 3 for the catalogue: a Manifest per artwork (its image as a Canvas, the model's classification
and the curator's label as W3C Web Annotations) and Collections of manifests, filtered as the catalogue list is.

``selectors.py`` reads what a manifest or a collection page needs, ``builder.py`` turns it into JSON-LD (plain
dicts, no database), ``views.py`` serves it with IIIF's media type, CORS and the access setting
(``ARTSITE_IIIF_PUBLIC``). docs/export.md describes the documents and the choices made.
"""
