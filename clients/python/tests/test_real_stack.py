"""The client against the real stack: the four services as real processes on 127.0.0.1 with the demo
catalogue ingested (the repository's tests/e2e/stack_support.py), through both clients, including the
gateway's real error answers and a real outage that the retries ride out."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from artsearch_client import (
    ArtsearchClient,
    AsyncArtsearchClient,
    BadRequest,
    InvalidRequest,
    NewArtist,
    NewInfluence,
    NotFound,
    PictureExpired,
    RetryPolicy,
    SearchResponse,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

try:  # the repository's code and stack fixtures; absent where the package is tested on its own
    from stack_support import catalogue_stack

    from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
    from artsearch_tools.cli import sample_query_image
    from artsearch_tools.launcher import ServiceStack
except ImportError as missing:
    pytest.skip(f"no repository around the package: {missing}", allow_module_level=True)

pytestmark = pytest.mark.slow
ADMIN_KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return load_catalogue(gcompris_catalogue)


@pytest.fixture(scope="module")
def stack(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    state_dir = tmp_path_factory.mktemp("client-stack")
    image_root = state_dir / "images"  # artworks added by the admin tests are written here, not in the repo
    shutil.copytree(catalogue.root, image_root / catalogue.root.name)
    extra_env = {
        "ADMIN_API_KEYS": f"client-tests:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}",
        "URL_FETCH_ALLOW_PRIVATE": "true",  # the test's image server is on 127.0.0.1
    }
    with catalogue_stack(model_path, catalogue, state_dir, extra_env, image_root) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: ServiceStack) -> Iterator[ArtsearchClient]:
    with ArtsearchClient(stack.settings.gateway_url, api_key=ADMIN_KEY, timeout=60) as opened:
        yield opened


@pytest.fixture(scope="module")
def image_server(catalogue: Catalogue) -> Iterator[str]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(catalogue.root))
    handler.log_message = lambda *_: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_health_and_readiness(client: ArtsearchClient):
    assert client.health() == {"status": "ok"}
    readiness = client.readiness()
    assert readiness.ready and readiness.services == {"encoder": True, "search": True, "influence": True}


def test_a_painting_finds_itself_first_with_its_score_explained(
    client: ArtsearchClient, catalogue: Catalogue
):
    entry = next(e for e in catalogue.entries if "gogh" in e.artist.lower())
    answer = client.search(catalogue.root / entry.filename, k=5, w_style=0.5)
    top = answer.results[0]
    assert (top.id, top.title, top.artist) == (entry.id, entry.title, entry.artist)
    assert top.scores.visual == pytest.approx(1.0, abs=1e-3)
    assert top.scores.final == pytest.approx(top.scores.visual * (1 + top.scores.influence_weight), abs=1e-5)
    assert len(answer.results) == answer.k == 5 and answer.degraded == []
    assert answer.source_artist.how == "inferred" and answer.source_artist.name == entry.artist
    assert answer.model is not None and answer.model.version and answer.collection
    assert answer.raw["results"][0]["id"] == entry.id  # the JSON as the gateway sent it


def test_search_by_url_similar_and_one_artwork(
    client: ArtsearchClient, catalogue: Catalogue, image_server: str
):
    entry = next(e for e in catalogue.entries if "hokusai" in e.artist.lower())
    by_url = client.search_url(f"{image_server}/{entry.filename}", k=3, rerank=False)
    assert by_url.results[0].id == entry.id
    similar = client.similar(entry.id, k=4, exclude_same_artist=True)
    assert similar.source_artist.how == "artwork" and len(similar.results) == 4
    assert all(r.id != entry.id and r.artist != entry.artist for r in similar.results)
    artwork = client.artwork(entry.id)
    assert (artwork.title, artwork.artist, artwork.thumbnail_url) == (
        entry.title,
        entry.artist,
        f"/v1/artworks/{entry.id}/thumbnail",
    )
    assert client.thumbnail(entry.id, 64)[:3] == b"\xff\xd8\xff"  # a JPEG


def test_next_page_follows_the_cursor_through_the_same_ranking(client: ArtsearchClient, catalogue: Catalogue):
    """A picture search's pages by cursor, without the picture: in order, no overlap, until the pool ends."""
    entry = next(e for e in catalogue.entries if "gogh" in e.artist.lower())
    whole = client.search(catalogue.root / entry.filename, k=12, pool=12)
    page: SearchResponse | None = client.search(catalogue.root / entry.filename, k=5, pool=12)
    ids: list[str] = []
    while page is not None:
        ids += [r.id for r in page.results]
        page = client.next_page(page)
    assert ids == [r.id for r in whole.results] and len(ids) == 12
    similar = client.similar(entry.id, k=3, pool=6)
    second = client.next_page(similar)
    assert second is not None and second.offset == 3 and second.next_cursor is None
    with pytest.raises(BadRequest) as garbage:
        client.search_page("not-a-cursor")
    assert garbage.value.code == "invalid_cursor"


def test_a_picture_is_searched_again_by_its_picture_id(client: ArtsearchClient, catalogue: Catalogue):
    """New weights for a picture sent a moment ago: by its picture_id, the answer a new upload would give."""
    entry = next(e for e in catalogue.entries if "hokusai" in e.artist.lower())
    first = client.search(catalogue.root / entry.filename, k=5)
    assert first.picture_id
    again = client.search_by_picture_id(first.picture_id, k=8, w_colour=0.9, influence_weight=0)
    uploaded = client.search(catalogue.root / entry.filename, k=8, w_colour=0.9, influence_weight=0)
    assert [r.id for r in again.results] == [r.id for r in uploaded.results]
    assert again.weights == uploaded.weights and "encode" not in again.timings_ms
    with pytest.raises(BadRequest) as malformed:
        client.search_by_picture_id("not-a-picture-id")
    assert malformed.value.code == "invalid_picture_id"
    with pytest.raises(PictureExpired):
        client.search_by_picture_id("0" * 64 + "-a")  # never sent: nothing kept
    resent = client.search_or_resend("0" * 64 + "-a", catalogue.root / entry.filename, k=2)
    assert resent.results[0].id == entry.id and resent.picture_id == first.picture_id


def test_the_gateway_errors_arrive_as_exceptions_with_code_message_and_request_id(
    stack: ServiceStack, client: ArtsearchClient, catalogue: Catalogue
):
    with pytest.raises(NotFound) as missing:
        client.artwork("no-such-artwork")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "no-such-artwork" in missing.value.message and missing.value.request_id
    with pytest.raises(UnsupportedMediaType) as not_an_image:
        client.search(b"this is not an image at all")
    assert not_an_image.value.code == "unsupported_media_type"
    with pytest.raises(InvalidRequest) as bad_k:
        client.search(catalogue.root / catalogue.entries[0].filename, k=0)
    assert bad_k.value.code == "invalid_request" and "k" in bad_k.value.message
    stranger = ArtsearchClient(stack.settings.gateway_url, api_key="not-the-key")
    with stranger, pytest.raises(Unauthorized) as refused:
        stranger.list_artworks(limit=1)
    assert refused.value.code == "unauthorized"


def test_artists_and_influence_reads(client: ArtsearchClient):
    page = client.artists("gogh", limit=5)
    assert any(a.name == "Vincent van Gogh" for a in page.artists)
    neighbours = client.artist_neighbours("Vincent van Gogh")
    assert neighbours.artist.key == "vincent van gogh" and neighbours.influencers
    path = client.artist_path("Hokusai", "Van Gogh")
    assert path.found and path.hops == len(path.edges) >= 1


def test_clusters_and_a_page_of_one(client: ArtsearchClient, catalogue: Catalogue):
    clustering = client.clusters(4)
    assert clustering.n == 4 and clustering.artworks == len(catalogue.entries)
    assert sum(c.size for c in clustering.clusters) == clustering.artworks
    largest = clustering.clusters[0]
    page = client.cluster_members(largest.id, n=4, limit=2)
    assert page.size == largest.size and len(page.members) == min(2, largest.size)
    assert page.members[0].artwork.id == largest.representatives[0].artwork.id


def test_admin_writes_add_edit_list_and_delete(client: ArtsearchClient, catalogue: Catalogue):
    entry = catalogue.entries[0]
    picture = sample_query_image(catalogue.root / entry.filename, 0.7)
    added = client.add_artwork(picture, "A detail", id="client-test-detail", artist=entry.artist, year=1900)
    assert added.artwork.id == "client-test-detail" and added.artwork.extra["added_by"] == "client-tests"
    edited = client.edit_artwork("client-test-detail", title="A detail, edited", year=None)
    assert (edited.artwork.title, edited.artwork.year) == ("A detail, edited", None)
    assert "client-test-detail" in {a.id for a in client.iter_artworks(page_size=10)}
    assert client.search(picture, k=1).results[0].id == "client-test-detail"
    client.delete_artwork("client-test-detail")
    with pytest.raises(NotFound):
        client.artwork("client-test-detail")
    additions = client.add_artists(
        [NewArtist("Hilma af Klint", 1862, 1944, "Abstract art")],
        [NewInfluence("Rudolf Steiner", "Hilma af Klint", source="Moderna Museet")],
    )
    assert (additions.artists_added, additions.influences_added) == (2, 1)
    assert client.artist_path("Rudolf Steiner", "Hilma af Klint").hops == 1


def test_the_async_client_searches_concurrently(stack: ServiceStack, catalogue: Catalogue):
    entries = catalogue.entries[:3]

    async def run() -> list[str]:
        async with AsyncArtsearchClient(stack.settings.gateway_url, timeout=60) as client:
            answers = await asyncio.gather(*(client.similar(e.id, k=2) for e in entries))
            readiness = await client.readiness()
        assert readiness.ready
        return [a.source_artist.name or "" for a in answers]

    assert asyncio.run(run()) == [e.artist for e in entries]


def test_an_encoder_outage_is_ridden_out_by_the_retries_honouring_retry_after(
    stack: ServiceStack, client: ArtsearchClient, catalogue: Catalogue
):
    # A picture the gateway never saw: its kept encoder answers would otherwise serve it without the encoder.
    picture = sample_query_image(catalogue.root / catalogue.entries[1].filename, 0.55)
    stack.stop_service("encoder")
    try:
        impatient = RetryPolicy(max_total_s=1.0)
        quick = ArtsearchClient(stack.settings.gateway_url, retry=impatient)
        with quick, pytest.raises(Unavailable) as down:
            quick.search(picture, k=3)
        # The gateway's Retry-After (2 s) did not fit in 1 s: raised at once, carrying it.
        assert (down.value.code, down.value.retry_after, down.value.attempts) == (
            "encoder_unavailable",
            2.0,
            1,
        )
        threading.Timer(1.0, stack.start_service, args=("encoder",)).start()
        patient = RetryPolicy(max_attempts=30, max_total_s=90)
        with ArtsearchClient(stack.settings.gateway_url, retry=patient, timeout=30) as retrying:
            answer = retrying.search(picture, k=3)
        assert answer.results and answer.degraded == []
    finally:
        stack.wait_ready(timeout=90)
