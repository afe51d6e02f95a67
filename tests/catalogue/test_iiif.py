"""IIIF Presentation 3: manifests (validated by iiif-prezi3's models, the reference implementation's schema),
the classification and the label as Web Annotations, collections paged as nested collections, media types, CORS,
and the setting that makes IIIF public or not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.test import Client
from iiif_prezi3 import Annotation, AnnotationPage, Canvas, Collection, Manifest
from rest_framework.authtoken.models import Token

from catalogue.models import Artwork, ArtworkType
from catalogue.services.labels import label_correct
from tests.factories import ArtworkFactory, prediction_for
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

PROFILE = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
AAT_PAINTING = "http://vocab.getty.edu/aat/300033618"
AAT_ENGRAVINGS = "http://vocab.getty.edu/aat/300041340"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return v / np.linalg.norm(v)


@pytest.fixture
def work(active_model, curator):  # type: ignore[no-untyped-def]
    """A 90×60 painting (the model says, at 0.82) that a curator named Ada Lovelace relabelled as an engraving."""
    curator.first_name, curator.last_name = "Ada", "Lovelace"
    curator.save()
    artwork = ArtworkFactory(
        status="ready",
        title="Melencolia I",
        artist="Dürer",
        date="1514",
        accession_number="RP-P-OB-1",
        description="A winged figure, brooding.",
        data=image_bytes(31, size=(90, 60)),
    )
    prediction_for(artwork, version=active_model, type_slug="painting", embedding=_unit(1), confidence=0.82)
    label_correct(
        artwork=artwork, to_type=ArtworkType.objects.get(slug="engraving"), user=curator, source="portal"
    )
    return artwork


def validate_manifest(content: bytes) -> dict:
    """Each level through its own iiif-prezi3 model: the Manifest model alone accepts any dict as an item (its
    items are a union that includes references), so canvases, pages and annotations are validated one by one."""
    Manifest.model_validate_json(content)
    document = json.loads(content)
    for canvas in document["items"]:
        Canvas.model_validate_json(json.dumps(canvas))
        assert isinstance(canvas["width"], int) and isinstance(canvas["height"], int)
        for page in canvas["items"] + canvas.get("annotations", []):
            AnnotationPage.model_validate_json(json.dumps(page))
            for annotation in page["items"]:
                Annotation.model_validate_json(json.dumps(annotation))
    return document


def _json(response):  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


def test_manifest_is_valid_presentation_3_with_the_true_size(viewer_client, work):
    response = viewer_client.get(f"/iiif/artworks/{work.pk}/manifest.json")
    assert response["Content-Type"] == PROFILE
    assert response.status_code == 200
    document = validate_manifest(response.content)  # raises on anything Presentation 3 does not allow
    assert document["@context"][-1] == "http://iiif.io/api/presentation/3/context.json"
    assert document["id"] == f"http://testserver/iiif/artworks/{work.pk}/manifest.json"
    assert document["label"] == {"none": ["Melencolia I"]}
    assert document["summary"] == {"none": ["A winged figure, brooding."]}
    metadata = {pair["label"]["en"][0]: pair["value"]["none"][0] for pair in document["metadata"]}
    assert metadata["Artist"] == "Dürer" and metadata["Date"] == "1514"
    assert metadata["Accession number"] == "RP-P-OB-1" and metadata["Type"] == "Engraving"
    (canvas,) = document["items"]
    assert (canvas["width"], canvas["height"]) == (90, 60)
    image = canvas["items"][0]["items"][0]
    assert image["motivation"] == "painting" and image["target"] == canvas["id"]
    assert (image["body"]["width"], image["body"]["height"], image["body"]["format"]) == (
        90,
        60,
        "image/jpeg",
    )
    assert document["thumbnail"][0]["id"].endswith(f"/iiif/artworks/{work.pk}/thumbnail.jpg")

    with work.image.open("rb") as handle:
        assert b"".join(viewer_client.get(image["body"]["id"]).streaming_content) == handle.read()


def test_classification_and_label_are_web_annotations_on_the_canvas(viewer_client, work, active_model):
    document = validate_manifest(viewer_client.get(f"/iiif/artworks/{work.pk}/manifest.json").content)
    canvas = document["items"][0]
    (page,) = canvas["annotations"]
    by_motivation = {a["motivation"]: a for a in page["items"]}
    assert set(by_motivation) == {"classifying", "assessing"}

    classifying = by_motivation["classifying"]
    assert classifying["target"] == canvas["id"]
    assert classifying["body"] == {
        "id": AAT_PAINTING,
        "type": "TextualBody",
        "value": "Painting",
        "format": "text/plain",
        "language": "en",
    }
    assert classifying["creator"]["type"] == "Software"
    assert active_model.version in classifying["creator"]["name"]
    assert classifying["confidence"] == pytest.approx(0.82)

    assessing = by_motivation["assessing"]
    assert assessing["body"]["id"] == AAT_ENGRAVINGS and assessing["body"]["value"] == "Engraving"
    assert assessing["creator"] == {"type": "Person", "name": "Ada Lovelace"}  # never the account name
    assert assessing["labelProvenance"] == "set"

    # The page is served on its own at its id too, and the extension context defines confidence.
    served = _json(viewer_client.get(page["id"].split("#")[0]))
    assert [a["motivation"] for a in served["items"]] == [a["motivation"] for a in page["items"]]
    context = _json(Client().get(document["@context"][0]))  # public: it only defines words
    assert context["@context"]["confidence"]["@id"] == "artsite:confidence"


def test_a_curator_without_a_full_name_is_not_named_by_account(viewer_client, work, curator):
    curator.first_name = curator.last_name = ""
    curator.save()
    page = _json(viewer_client.get(f"/iiif/artworks/{work.pk}/annotations.json"))
    assessing = next(a for a in page["items"] if a["motivation"] == "assessing")
    assert assessing["creator"]["name"] == "A curator"
    assert curator.username not in json.dumps(page)


def test_unlabelled_unclassified_work_has_no_annotations(viewer_client, active_model):
    pending = ArtworkFactory(status="pending", title="Untitled", artist="")
    response = viewer_client.get(f"/iiif/artworks/{pending.pk}/manifest.json")
    document = validate_manifest(response.content)
    assert document["items"][0]["annotations"][0]["items"] == []
    assert "summary" not in document


def test_collection_is_paged_as_nested_collections_and_filtered(viewer_client, active_model, settings):
    settings.ARTSITE_IIIF_PAGE_SIZE = 2
    works = [ArtworkFactory(status="ready", title=f"W{i}") for i in range(5)]
    for i, artwork in enumerate(works):
        prediction_for(
            artwork, version=active_model, type_slug="painting" if i < 3 else "sculpture", embedding=_unit(i)
        )
    top = viewer_client.get("/iiif/collection.json")
    assert top["Content-Type"] == PROFILE
    Collection.model_validate_json(top.content)
    listed = [item["id"] for item in _walk(viewer_client, "/iiif/collection.json", bound=100)]
    assert listed == [f"http://testserver/iiif/artworks/{w.pk}/manifest.json" for w in works]  # oldest first

    painting = _walk(viewer_client, "/iiif/collection.json?type=painting", bound=100)
    assert [i["label"]["none"][0] for i in painting] == ["W0", "W1", "W2"]
    assert "type=painting" in _json(viewer_client.get("/iiif/collection.json?type=painting"))["id"]
    assert viewer_client.get("/iiif/collection.json?type=watercolour").status_code == 400


def _walk(client: Client, url: str, *, bound: int) -> list[dict]:
    """Every manifest reference the collection's tree reaches, depth first in listed order; each document is
    validated as a IIIF Collection, lists at most ``bound`` items, and a page's manifests lie in its id range."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    assert response["Content-Type"] == PROFILE
    Collection.model_validate_json(response.content)
    document = _json(response)
    assert len(document["items"]) <= bound, (url, len(document["items"]))
    manifests = []
    for item in document["items"]:
        if item["type"] == "Collection":
            assert item["id"].split("?")[0].endswith(".json")
            manifests += _walk(client, item["id"], bound=bound)
        else:
            assert item["type"] == "Manifest"
            first, last = map(int, document["id"].split("/collection/")[1].split(".json")[0].split("-"))
            assert first <= _manifest_pk(item) <= last
            manifests.append(item)
    return manifests


def _manifest_pk(reference: dict) -> int:
    return int(reference["id"].split("/artworks/")[1].split("/")[0])


def _generated_works(ids: list[int], *, painting: set[int], ready: set[int]) -> None:
    """Bare artwork rows with chosen ids (gaps where works were deleted), some labelled paintings, some ready."""
    painting_type = ArtworkType.objects.get(slug="painting")
    Artwork.objects.bulk_create(
        Artwork(
            id=pk,
            title=f"G{pk}",
            image=f"artworks/{pk:064x}.jpg",
            sha256=f"{pk:064x}",
            width=10,
            height=10,
            status="ready" if pk in ready else "failed",
            curator_type=painting_type if pk in painting else None,
            label_provenance="set" if pk in painting else "",
        )
        for pk in ids
    )


@pytest.fixture
def generated(settings):  # type: ignore[no-untyped-def]
    """400 works with ids scattered over 1..20,000, in a tree of pages of 10 ids and ranges of 4 children."""
    settings.ARTSITE_IIIF_PAGE_SIZE, settings.ARTSITE_IIIF_FANOUT = 10, 4
    rng = np.random.default_rng(17)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 20_001), size=400, replace=False))
    painting = {pk for pk in ids if rng.random() < 0.3}
    ready = {pk for pk in ids if rng.random() < 0.5}
    _generated_works(ids, painting=painting, ready=ready)
    return ids, painting, ready


def test_the_tree_reaches_every_work_once_and_no_document_lists_more_than_the_bound(viewer_client, generated):
    ids, _, _ = generated
    reached = [_manifest_pk(item) for item in _walk(viewer_client, "/iiif/collection.json", bound=10)]
    assert reached == ids  # each once, by id
    # 20,000 ids in pages of 10 and ranges of 4: the top lists ranges of 10 × 4**5 = 10,240 ids (2 of them).
    top = _json(viewer_client.get("/iiif/collection.json"))
    assert [item["id"] for item in top["items"]] == [
        "http://testserver/iiif/collection/1-10240.json",
        "http://testserver/iiif/collection/10241-20480.json",
    ]


def test_a_deep_page_holds_the_works_of_its_id_range(viewer_client, generated):
    ids, _, _ = generated
    deepest = ids[-1]
    first = (deepest - 1) // 10 * 10 + 1
    expected = [pk for pk in ids if first <= pk <= first + 9]
    page = _json(viewer_client.get(f"/iiif/collection/{first}-{first + 9}.json"))
    assert [_manifest_pk(item) for item in page["items"]] == expected
    assert [item["label"]["none"][0] for item in page["items"]] == [f"G{pk}" for pk in expected]
    # A range of 40 ids lists its non-empty pages of 10.
    block = (deepest - 1) // 40 * 40 + 1
    expected_pages = sorted({(pk - 1) // 10 * 10 + 1 for pk in ids if block <= pk <= block + 39})
    ranges = _json(viewer_client.get(f"/iiif/collection/{block}-{block + 39}.json"))
    assert [item["id"] for item in ranges["items"]] == [
        f"http://testserver/iiif/collection/{lo}-{lo + 9}.json" for lo in expected_pages
    ]


def test_a_filtered_tree_reaches_exactly_the_filtered_works(viewer_client, generated):
    ids, painting, ready = generated
    query = "status=ready&type=painting"
    reached = [
        _manifest_pk(item) for item in _walk(viewer_client, f"/iiif/collection.json?{query}", bound=10)
    ]
    assert reached == [pk for pk in ids if pk in painting and pk in ready]
    top = _json(viewer_client.get("/iiif/collection.json?type=painting&status=ready&format=json"))
    assert top["id"] == f"http://testserver/iiif/collection.json?{query}"
    assert all(item["id"].endswith(f".json?{query}") for item in top["items"])
    # A filter that ranks (the full-text search) walks too: each probe orders by id whatever the filter's order.
    # (The search matches a work's sha256 exactly; the generated works' are their ids in hex.)
    searched = _walk(viewer_client, f"/iiif/collection.json?search={ids[-7]:064x}", bound=10)
    assert [_manifest_pk(item) for item in searched] == [ids[-7]]


def test_ranges_outside_the_tree_or_empty_are_not_found_and_old_pages_redirect(viewer_client, generated):
    ids, _, _ = generated
    empty = next(lo for lo in range(1, 20_000, 10) if not any(lo <= pk <= lo + 9 for pk in ids))
    assert viewer_client.get(f"/iiif/collection/{empty}-{empty + 9}.json").status_code == 404
    for bad in ("1-11", "2-11", "1-30", "21-60", "0-9", f"{2**63}-{2**63 + 9}", "11-10"):
        assert viewer_client.get(f"/iiif/collection/{bad}.json").status_code == 404, bad
    assert (
        viewer_client.get("/iiif/collection/30001-40000.json").status_code == 404
    )  # valid span, not aligned
    assert viewer_client.get("/iiif/collection/40961-81920.json").status_code == 404  # beyond the last work
    assert viewer_client.get("/iiif/collection/1-10.json?type=watercolour").status_code == 400
    # The former numbered pages redirect (permanently) to the page of the same ids, filters kept.
    old = viewer_client.get("/iiif/collection/3.json?type=painting")
    assert old.status_code == 301
    assert old["Location"] == "http://testserver/iiif/collection/21-30.json?type=painting"
    assert viewer_client.get("/iiif/collection/0.json").status_code == 404


def test_iiif_needs_a_token_or_session_unless_public(work, viewer, settings):
    url = f"/iiif/artworks/{work.pk}/manifest.json"
    anonymous = Client()
    refused = anonymous.get(url)
    assert refused.status_code == 401 and refused.json()["code"] == "not_authenticated"
    assert refused["Access-Control-Allow-Origin"] == "*"  # a viewer on another site can read why
    assert anonymous.get(f"/iiif/artworks/{work.pk}/image").status_code == 401
    assert anonymous.get("/iiif/collection.json").status_code == 401
    token = Token.objects.create(user=viewer).key
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    settings.ARTSITE_IIIF_PUBLIC = True
    assert anonymous.get(url).status_code == 200
    assert anonymous.get(f"/iiif/artworks/{work.pk}/image").status_code == 200
    assert anonymous.get("/iiif/collection.json").status_code == 200


def test_cors_on_documents_images_and_preflights(viewer_client, work):
    for path in ("manifest.json", "annotations.json", "image", "thumbnail.jpg"):
        response = viewer_client.get(f"/iiif/artworks/{work.pk}/{path}")
        assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == "*", path
    image = viewer_client.get(f"/iiif/artworks/{work.pk}/image")
    assert image["Content-Type"] == "image/jpeg" and image["X-Content-Type-Options"] == "nosniff"
    preflight = Client().options(
        f"/iiif/artworks/{work.pk}/manifest.json",
        HTTP_ORIGIN="https://viewer.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]


def test_missing_artwork_is_a_json_404(viewer_client, active_model):
    response = viewer_client.get("/iiif/artworks/999999/manifest.json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert viewer_client.get(f"/iiif/artworks/{2**63}/manifest.json").status_code == 404


def test_custom_type_has_its_api_url_as_id(viewer_client, active_model, curator):
    collage = ArtworkType.objects.create(slug="collage", name="Collage", position=9)
    artwork = ArtworkFactory(status="ready")
    label_correct(artwork=artwork, to_type=collage, user=curator, source="portal")
    Artwork.objects.get(pk=artwork.pk)
    page = _json(viewer_client.get(f"/iiif/artworks/{artwork.pk}/annotations.json"))
    (assessing,) = page["items"]
    assert assessing["body"]["id"] == "http://testserver/api/v1/types/collage/"
