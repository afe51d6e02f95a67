"""Other photos of the same work: an altered copy is found (by its hash, or by its embedding and an alignment), a
distinct image is not; decisions stick; "same work" links the photos; similar-works lists show a work once; the
import counts what it found."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw

from catalogue.importing import artworks_import
from catalogue.models import Artwork, NearDuplicatePair
from catalogue.perceptual_hash import hash_distance, image_hashes
from catalogue.selectors.near_duplicates import near_duplicate_queue
from catalogue.selectors.similarity import artwork_similar
from catalogue.services.near_duplicates import (
    near_duplicate_decide,
    near_duplicates_find,
    near_duplicates_scan,
)
from tests.factories import ArtworkFactory, prediction_for

pytestmark = pytest.mark.django_db


def picture(seed: int, size: tuple[int, int] = (360, 270)) -> Image.Image:
    """A picture with structure (shapes on a background), different for each seed."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x0, y0 = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        x1, y1 = x0 + int(rng.integers(30, 160)), y0 + int(rng.integers(30, 120))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def rotated_copy(image: Image.Image) -> bytes:
    return jpeg(image.transpose(Image.Transpose.ROTATE_90), quality=40)


def cropped_copy(image: Image.Image) -> bytes:
    w, h = image.size
    return jpeg(image.crop((int(0.12 * w), int(0.05 * h), int(0.92 * w), int(0.85 * h))), quality=40)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def pairs() -> set[tuple[int, int]]:
    return set(NearDuplicatePair.objects.values_list("artwork_a_id", "artwork_b_id"))


def test_the_hash_sees_a_quarter_turn_that_plain_phash_misses():
    original = picture(1)
    copy = Image.open(io.BytesIO(rotated_copy(original)))
    hashes, copy_hashes = image_hashes(original), image_hashes(copy)
    plain = bin((hashes.phash ^ copy_hashes.phash) & ((1 << 64) - 1)).count("1")
    assert hash_distance(copy_hashes, hashes.phash) <= 4 < plain
    assert hash_distance(image_hashes(picture(2)), hashes.phash) > 10


def test_an_uploaded_rotated_copy_is_found_and_a_distinct_image_is_not():
    image = picture(3)
    original = ArtworkFactory(data=jpeg(image))
    copy = ArtworkFactory(data=rotated_copy(image))
    distinct = ArtworkFactory(data=jpeg(picture(4)))
    found = near_duplicates_find(artwork_ids=[copy.pk, distinct.pk], found_by="upload")
    assert found == 1 and pairs() == {(original.pk, copy.pk)}
    pair = NearDuplicatePair.objects.get()
    assert pair.hash_distance is not None and pair.hash_distance <= 4 and pair.found_by == "upload"


@pytest.fixture
def cropped(active_model):  # type: ignore[no-untyped-def]
    """A work, a cropped JPEG q40 copy of it, and a distinct work, all ready; the embeddings make each the
    other's nearest, as a look-alike's would be."""
    image = picture(5)
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=128))
    works = {
        "original": ArtworkFactory(data=jpeg(image), status="ready"),
        "copy": ArtworkFactory(data=cropped_copy(image), status="ready"),
        "distinct": ArtworkFactory(data=jpeg(picture(6)), status="ready"),
    }
    # Per-dimension noise: the copy at cosine ~0.9997, the distinct work ~0.97 (a look-alike by embedding).
    for noise, work in zip((0.0, 0.005, 0.02), works.values(), strict=True):
        prediction_for(
            work,
            version=active_model,
            type_slug="painting",
            embedding=unit(base + noise * rng.normal(size=128)),
        )
    return works


def test_a_cropped_copy_is_found_by_embedding_and_alignment(cropped):
    # The distinct work is close enough by embedding to be aligned: the alignment, not the cosine, rejects it.
    assert artwork_similar(artwork=cropped["distinct"], k=1)[0].similarity >= 0.9
    near_duplicates_find(artwork_ids=[cropped["copy"].pk, cropped["distinct"].pk], found_by="upload")
    assert pairs() == {(cropped["original"].pk, cropped["copy"].pk)}
    pair = NearDuplicatePair.objects.get()
    assert pair.similarity is not None and pair.alignment >= 0.88


def test_a_pair_decided_different_never_comes_back(cropped, curator):
    near_duplicates_find(artwork_ids=[cropped["copy"].pk], found_by="upload")
    pair = NearDuplicatePair.objects.get()
    near_duplicate_decide(pair=pair, decision="different", user=curator, source="portal")
    assert not near_duplicate_queue().exists()
    result = near_duplicates_scan()  # the whole catalogue again, and a new upload's search
    near_duplicates_find(artwork_ids=[cropped["copy"].pk, cropped["original"].pk], found_by="upload")
    assert result.pairs == 0 and not near_duplicate_queue().exists()
    assert list(NearDuplicatePair.objects.values_list("status", flat=True)) == ["different"]


def test_same_work_links_the_photos_and_similar_works_show_the_work_once(cropped, curator, curator_client):
    near_duplicates_find(artwork_ids=[cropped["copy"].pk], found_by="upload")
    near_duplicate_decide(
        pair=NearDuplicatePair.objects.get(), decision="same", user=curator, source="portal"
    )
    original, copy, distinct = (Artwork.objects.get(pk=w.pk) for w in cropped.values())
    assert original.work_group_id is not None and original.work_group_id == copy.work_group_id
    page = curator_client.get(f"/artworks/{original.pk}/").content.decode()
    assert "Other photos of this work" in page and f"/artworks/{copy.pk}/" in page
    similar = [s.artwork.pk for s in artwork_similar(artwork=distinct, k=5)]
    assert len(similar) == 1 and similar[0] in {original.pk, copy.pk}  # one work, shown once
    assert (
        artwork_similar(artwork=original, k=5)[0].artwork.pk == distinct.pk
    )  # its own photo is not "similar"


def test_triage_page_and_api(cropped, client, curator, viewer):
    near_duplicates_find(artwork_ids=[cropped["copy"].pk], found_by="upload")
    pair = NearDuplicatePair.objects.get()
    client.force_login(viewer)
    assert client.get("/near-duplicates/").status_code == 200
    listed = client.get("/api/v1/near-duplicates/").json()
    assert [p["id"] for p in listed["results"]] == [pair.pk]
    assert client.post(f"/api/v1/near-duplicates/{pair.pk}/decide/", {"decision": "same"}).status_code == 403
    client.force_login(curator)
    bad = client.post(f"/api/v1/near-duplicates/{pair.pk}/decide/", {"decision": "maybe"})
    assert bad.status_code == 400
    done = client.post(f"/api/v1/near-duplicates/{pair.pk}/decide/", {"decision": "different"})
    assert done.status_code == 200 and done.json()["status"] == "different"
    assert client.post(f"/api/v1/near-duplicates/{pair.pk}/decide/", {"decision": "same"}).status_code == 409
    page = client.get("/near-duplicates/").content.decode()
    assert "Nothing to decide" in page


def test_the_import_counts_other_photos_of_a_work(tmp_path: Path):
    folder = tmp_path / "collection"
    folder.mkdir()
    image = picture(7)
    (folder / "front.jpg").write_bytes(jpeg(image))
    (folder / "front-turned.jpg").write_bytes(rotated_copy(image))
    (folder / "other.jpg").write_bytes(jpeg(picture(8)))
    result = artworks_import(folder=folder)
    assert result.imported == 3 and result.near_duplicates == 1
    titles = {
        tuple(sorted((p.artwork_a.title, p.artwork_b.title)))
        for p in NearDuplicatePair.objects.select_related("artwork_a", "artwork_b")
    }
    assert titles == {("front", "front turned")}


def test_the_command_finds_pairs_over_the_catalogue_and_hashes_old_works():
    image = picture(9)
    original = ArtworkFactory(data=jpeg(image))
    copy = ArtworkFactory(data=rotated_copy(image))
    Artwork.objects.filter(pk=original.pk).update(
        phash=None, phash_turns=[]
    )  # catalogued before hashing existed
    out = io.StringIO()
    call_command("find_near_duplicates", stdout=out)
    assert pairs() == {(original.pk, copy.pk)}
    assert "Hashed 1 work(s)" in out.getvalue() and "1 new pair(s)" in out.getvalue()
    assert Artwork.objects.get(pk=original.pk).phash is not None
