"""IIIF Presentation 3 documents as JSON-LD dicts, from what ``selectors.py`` read (no database here).

The classification is a W3C Web Annotation with motivation ``classifying`` whose body is a ``TextualBody`` naming
the type, with the type's Getty AAT concept as the body's ``id`` (``AAT``; a type curators added has its API URL
instead), ``creator`` a ``Software`` agent naming the model version, and the model's confidence in ``confidence``,
a property of Artsite's own JSON-LD context (``context_document``: the specifications define no confidence). The
curator's label is a second annotation, motivation ``assessing``, whose creator is a ``Person`` with a display name.
Both are in one AnnotationPage, embedded in the Canvas's ``annotations`` and also served on its own at its ``id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from catalogue.iiif.selectors import IiifArtwork
from catalogue.models import IMAGE_MEDIA_TYPES, ArtworkType

PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
MEDIA_TYPE = f'application/ld+json;profile="{PRESENTATION_CONTEXT}"'

#: Getty Art & Architecture Thesaurus concepts of the five default types (docs/export.md says where each was checked).
AAT = {
    "drawings": "http://vocab.getty.edu/aat/300033973",  # drawings (visual works)
    "engraving": "http://vocab.getty.edu/aat/300041340",  # engravings (prints)
    "iconography": "http://vocab.getty.edu/aat/300074603",  # icons (religious images)
    "painting": "http://vocab.getty.edu/aat/300033618",  # paintings (visual works)
    "sculpture": "http://vocab.getty.edu/aat/300047090",  # sculpture (visual works)
}


@dataclass(frozen=True)
class IiifUrls:
    """Absolute URLs of the IIIF resources; ``absolute`` turns a path into a URL of this site."""

    absolute: Callable[[str], str]

    def path(self, name: str, *args: Any, query: str = "") -> str:
        return self.absolute(reverse(name, args=args) + (f"?{query}" if query else ""))

    def manifest(self, pk: int) -> str:
        return self.path("iiif-manifest", pk)

    def canvas(self, pk: int) -> str:
        return self.manifest(pk).replace("/manifest.json", "/canvas/1")

    def annotations(self, pk: int) -> str:
        return self.path("iiif-annotations", pk)

    def image(self, pk: int) -> str:
        return self.path("iiif-image", pk)

    def thumbnail(self, pk: int) -> str:
        return self.path("iiif-thumbnail", pk)

    def context(self) -> str:
        return self.path("iiif-context")

    def type_id(self, artwork_type: ArtworkType) -> str:
        return AAT.get(artwork_type.slug) or self.path("api-type-detail", artwork_type.slug)


def _lang(text: str, language: str = "none") -> dict[str, list[str]]:
    return {language: [text]}


def _pair(label: str, value: str) -> dict[str, Any]:
    return {"label": _lang(label, "en"), "value": _lang(value)}


def context_document(urls: IiifUrls) -> dict[str, Any]:
    """Artsite's JSON-LD context: the extension properties its IIIF documents use."""
    vocabulary = urls.context() + "#"
    xsd = "http://www.w3.org/2001/XMLSchema#"
    return {
        "@context": {
            "artsite": vocabulary,
            "confidence": {"@id": "artsite:confidence", "@type": f"{xsd}double"},
            "labelProvenance": {"@id": "artsite:labelProvenance", "@type": f"{xsd}string"},
        }
    }


def manifest(item: IiifArtwork, urls: IiifUrls) -> dict[str, Any]:
    artwork = item.artwork
    pk = artwork.pk
    thumbnail = (
        [{"id": urls.thumbnail(pk), "type": "Image", "format": "image/jpeg"}] if artwork.thumbnail else []
    )
    document: dict[str, Any] = {
        "@context": [urls.context(), PRESENTATION_CONTEXT],
        "id": urls.manifest(pk),
        "type": "Manifest",
        "label": _lang(artwork.title),
        "metadata": _metadata(item),
        "homepage": [
            {
                "id": urls.path("catalogue:artwork-detail", pk),
                "type": "Text",
                "label": _lang(f"{artwork.title} in Artsite", "en"),
                "format": "text/html",
            }
        ],
        "items": [_canvas(item, urls, thumbnail)],
    }
    summary = artwork.description or ", ".join(v for v in (artwork.artist, artwork.date) if v)
    if summary:
        document["summary"] = _lang(summary)
    if thumbnail:
        document["thumbnail"] = thumbnail
    return document


def _metadata(item: IiifArtwork) -> list[dict[str, Any]]:
    artwork = item.artwork
    pairs = [
        ("Artist", artwork.artist),
        ("Date", artwork.date),
        ("Accession number", artwork.accession_number or ""),
        ("Type", item.effective_type.name if item.effective_type else ""),
    ]
    if item.label is not None:
        pairs.append(
            ("Type given by", f"the curator's label ({artwork.get_label_provenance_display().lower()})")
        )
    elif item.prediction is not None:
        pairs.append(("Type given by", "the model's prediction"))
    if item.prediction is not None:
        prediction = item.prediction
        pairs.append(
            (
                "Model prediction",
                f"{prediction.artwork_type.name} ({prediction.confidence:.0%}, {prediction.model_version})",
            )
        )
    return [_pair(label, value) for label, value in pairs if value]


def _canvas(item: IiifArtwork, urls: IiifUrls, thumbnail: list[dict[str, Any]]) -> dict[str, Any]:
    artwork = item.artwork
    pk, canvas_id = artwork.pk, urls.canvas(artwork.pk)
    suffix = PurePosixPath(artwork.image.name or "").suffix.lower()
    canvas: dict[str, Any] = {
        "id": canvas_id,
        "type": "Canvas",
        "label": _lang(artwork.title),
        "width": artwork.width,
        "height": artwork.height,
        "items": [
            {
                "id": f"{canvas_id}/page/1",
                "type": "AnnotationPage",
                "items": [
                    {
                        "id": f"{canvas_id}/page/1/image",
                        "type": "Annotation",
                        "motivation": "painting",
                        "body": {
                            "id": urls.image(pk),
                            "type": "Image",
                            "format": IMAGE_MEDIA_TYPES.get(suffix, "image/jpeg"),
                            "width": artwork.width,
                            "height": artwork.height,
                        },
                        "target": canvas_id,
                    }
                ],
            }
        ],
        "annotations": [annotation_page(item, urls)],
    }
    if thumbnail:
        canvas["thumbnail"] = thumbnail
    return canvas


def annotation_page(item: IiifArtwork, urls: IiifUrls) -> dict[str, Any]:
    """The classification and the label, as Web Annotations on the canvas."""
    pk = item.artwork.pk
    page_id, canvas_id = urls.annotations(pk), urls.canvas(pk)
    annotations = []
    if item.prediction is not None:
        prediction = item.prediction
        annotations.append(
            {
                "id": f"{page_id}#classification",
                "type": "Annotation",
                "motivation": "classifying",
                "body": _type_body(prediction.artwork_type, urls),
                "target": canvas_id,
                "creator": {
                    "id": urls.path("api-model-detail", prediction.model_version),
                    "type": "Software",
                    "name": f"Artsite classifier, model version {prediction.model_version}",
                },
                "confidence": round(prediction.confidence, 6),
            }
        )
    if item.label is not None:
        label = item.label
        annotation: dict[str, Any] = {
            "id": f"{page_id}#label",
            "type": "Annotation",
            "motivation": "assessing",
            "body": _type_body(label.artwork_type, urls),
            "target": canvas_id,
            "labelProvenance": label.provenance,
        }
        if label.author:
            annotation["creator"] = {"type": "Person", "name": label.author}
        if label.decided_at:
            annotation["created"] = label.decided_at
        annotations.append(annotation)
    return {"id": page_id, "type": "AnnotationPage", "items": annotations}


def annotation_page_document(item: IiifArtwork, urls: IiifUrls) -> dict[str, Any]:
    return {"@context": [urls.context(), PRESENTATION_CONTEXT], **annotation_page(item, urls)}


def _type_body(artwork_type: ArtworkType, urls: IiifUrls) -> dict[str, Any]:
    return {
        "id": urls.type_id(artwork_type),
        "type": "TextualBody",
        "value": artwork_type.name,
        "format": "text/plain",
        "language": "en",
    }


@dataclass(frozen=True)
class IdRange:
    """A node of a collection's tree: the works whose id is in ``first``..``last`` (inclusive)."""

    first: int
    last: int

    @property
    def span(self) -> int:
        return self.last - self.first + 1


def id_range_valid(node: IdRange, *, page_size: int, fanout: int) -> bool:
    """Whether ``node`` is a node of the tree: its span is ``page_size`` × ``fanout`` ** k and it is aligned
    on its span (``first`` − 1 a multiple of it), so every node has one URL and lists at most ``fanout`` children
    or ``page_size`` manifests."""
    span = page_size
    while span < node.span:
        span *= fanout
    return span == node.span and node.first >= 1 and (node.first - 1) % span == 0


def id_range_is_page(node: IdRange, *, page_size: int) -> bool:
    """A leaf (a page): it lists manifests, not collections."""
    return node.span == page_size


def id_range_children(node: IdRange, *, fanout: int) -> list[IdRange]:
    """The ``fanout`` ranges a valid node that is not a page splits into."""
    span = node.span // fanout
    return [IdRange(node.first + i * span, node.first + (i + 1) * span - 1) for i in range(fanout)]


def id_ranges_top(*, last_id: int | None, page_size: int, fanout: int) -> list[IdRange]:
    """The top collection's children: the smallest span ``page_size`` × ``fanout`` ** k that covers ids
    1..``last_id`` in at most ``fanout`` ranges (pages themselves up to ``page_size`` × ``fanout`` ids; one more
    level each time the highest id grows ``fanout`` times). Nodes keep their URLs as the catalogue grows: a
    deeper tree only puts a level above them."""
    if not last_id or last_id < 1:
        return []
    span = page_size
    while ceil(last_id / span) > fanout:
        span *= fanout
    return [IdRange(i * span + 1, (i + 1) * span) for i in range(ceil(last_id / span))]


def _catalogue_label(query: str) -> str:
    return "Artsite catalogue" + (f" ({query})" if query else "")


def _range_reference(node: IdRange, *, page_size: int, query: str, urls: IiifUrls) -> dict[str, Any]:
    kind = "page" if id_range_is_page(node, page_size=page_size) else "works"
    return {
        "id": urls.path("iiif-collection-range", node.first, node.last, query=query),
        "type": "Collection",
        "label": _lang(f"{_catalogue_label(query)}, {kind} with ids {node.first}–{node.last}", "en"),
    }


def collection(*, children: list[IdRange], page_size: int, query: str, urls: IiifUrls) -> dict[str, Any]:
    """The top collection: at most ``fanout`` nested Collections, each an id range (IIIF Presentation 3 has no
    paging of collections; nesting is its way), only those that hold works."""
    label = _catalogue_label(query)
    return {
        "@context": PRESENTATION_CONTEXT,
        "id": urls.path("iiif-collection", query=query),
        "type": "Collection",
        "label": _lang(label, "en"),
        "summary": _lang(
            f"Works by id; a page lists the works of {page_size} consecutive ids (fewer where works were"
            " deleted or filtered out), larger ranges list their pages.",
            "en",
        ),
        "items": [_range_reference(node, page_size=page_size, query=query, urls=urls) for node in children],
    }


def collection_range(
    *, node: IdRange, children: list[IdRange], page_size: int, query: str, urls: IiifUrls
) -> dict[str, Any]:
    """A node above the pages: its non-empty child ranges as nested Collections."""
    return {
        "@context": PRESENTATION_CONTEXT,
        **_range_reference(node, page_size=page_size, query=query, urls=urls),
        "partOf": [{"id": urls.path("iiif-collection", query=query), "type": "Collection"}],
        "items": [_range_reference(child, page_size=page_size, query=query, urls=urls) for child in children],
    }


def collection_page(
    *, node: IdRange, works: list[tuple[int, str, str]], page_size: int, query: str, urls: IiifUrls
) -> dict[str, Any]:
    """A page: the manifests of the works in its id range (label and thumbnail each), by id."""
    items = []
    for pk, title, thumbnail in works:
        reference: dict[str, Any] = {"id": urls.manifest(pk), "type": "Manifest", "label": _lang(title)}
        if thumbnail:
            reference["thumbnail"] = [{"id": urls.thumbnail(pk), "type": "Image", "format": "image/jpeg"}]
        items.append(reference)
    return {
        "@context": PRESENTATION_CONTEXT,
        **_range_reference(node, page_size=page_size, query=query, urls=urls),
        "partOf": [{"id": urls.path("iiif-collection", query=query), "type": "Collection"}],
        "items": items,
    }


def query_string(params: dict[str, str]) -> str:
    """The filters as a canonical query string (sorted, empty values left out), part of a collection's id."""
    return urlencode(sorted((k, v) for k, v in params.items() if v))
