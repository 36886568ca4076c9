"""`search_batch` (sync and async) against the real stack: the four services as real processes on 127.0.0.1
with a few demo-catalogue paintings ingested (the repository's tests/e2e/stack_support.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from artsearch_client import (
    ArtsearchClient,
    AsyncArtsearchClient,
    BatchQuery,
    BatchSearchResponse,
    PayloadTooLarge,
    SearchResponse,
)

try:  # the repository's code and stack fixtures; absent where the package is tested on its own
    from stack_support import catalogue_stack

    from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
    from artsearch_tools.launcher import ServiceStack
except ImportError as missing:
    pytest.skip(f"no repository around the package: {missing}", allow_module_level=True)

pytestmark = pytest.mark.slow
BEDROOM = "van-gogh-bedroom-in-arles"
WAVE = "hokusai-the-great-wave-off-kanagawa"
IDS = {
    BEDROOM,
    WAVE,
    "van-gogh-cafe-terrace-at-night",
    "hokusai-poppies",
    "gauguin-arearea",
    "degas-the-dance-class",
}
MAX_QUERIES = 3


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    full = load_catalogue(gcompris_catalogue)
    return dataclasses.replace(full, entries=[e for e in full.entries if e.id in IDS], problems=[])


@pytest.fixture(scope="module")
def stack(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    extra_env = {"SEARCH_BATCH_MAX_QUERIES": str(MAX_QUERIES)}
    with catalogue_stack(model_path, catalogue, tmp_path_factory.mktemp("batch-stack"), extra_env) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: ServiceStack) -> Iterator[ArtsearchClient]:
    with ArtsearchClient(stack.settings.gateway_url, timeout=60) as opened:
        yield opened


def _picture(catalogue: Catalogue, artwork_id: str) -> Path:
    return catalogue.root / next(e.filename for e in catalogue.entries if e.id == artwork_id)


def _same_ranking(got: SearchResponse | None, expected: SearchResponse) -> None:
    assert got is not None
    assert [r.id for r in got.results] == [r.id for r in expected.results]
    assert [r.score for r in got.results] == pytest.approx([r.score for r in expected.results], abs=1e-4)


def test_uploads_answered_in_order_as_single_searches_with_a_bad_one_failing_alone(
    client: ArtsearchClient, catalogue: Catalogue
):
    wave, bedroom = _picture(catalogue, WAVE), _picture(catalogue, BEDROOM)
    queries = [BatchQuery(image=wave), BatchQuery(image=b"not a picture"), BatchQuery(image=bedroom)]
    batch = client.search_batch(queries, k=3)
    assert isinstance(batch, BatchSearchResponse)
    assert (batch.queries, batch.answered, batch.failed) == (3, 2, 1)
    assert [item.index for item in batch.results] == [0, 1, 2]
    first, bad, last = batch.results
    assert first.ok and last.ok and not bad.ok
    assert (bad.status, bad.error_code, bad.answer) == (415, "unsupported_media_type", None)
    _same_ranking(first.answer, client.search(wave, k=3))
    _same_ranking(last.answer, client.search(bedroom, k=3))
    assert last.answer is not None and last.answer.results[0].id == BEDROOM


def test_async_artwork_queries_with_their_own_parameters(stack: ServiceStack):
    async def run() -> tuple[BatchSearchResponse, SearchResponse, SearchResponse]:
        async with AsyncArtsearchClient(stack.settings.gateway_url, timeout=60) as client:
            queries = [
                BatchQuery(artwork_id=BEDROOM),
                BatchQuery(artwork_id=WAVE, params={"k": 3, "w_colour": 0.9}),
                BatchQuery(artwork_id="no-such-artwork"),
            ]
            batch = await client.search_batch(queries, k=2)
            bedroom = await client.similar(BEDROOM, k=2)
            wave = await client.similar(WAVE, k=3, w_colour=0.9)
            return batch, bedroom, wave

    batch, bedroom, wave = asyncio.run(run())
    first, second, unknown = batch.results
    _same_ranking(first.answer, bedroom)
    _same_ranking(second.answer, wave)
    assert (unknown.status, unknown.error_code) == (404, "not_found")


def test_a_picture_searched_a_moment_ago_is_batched_by_its_picture_id(
    client: ArtsearchClient, catalogue: Catalogue
):
    wave = _picture(catalogue, WAVE)
    first = client.search(wave, k=3)
    assert first.picture_id
    queries = [BatchQuery(picture_id=first.picture_id, params={"w_style": 0.7}), BatchQuery(artwork_id=WAVE)]
    by_id, similar = client.search_batch(queries, k=3).results
    _same_ranking(by_id.answer, client.search(wave, k=3, w_style=0.7))
    _same_ranking(similar.answer, client.similar(WAVE, k=3))


def test_too_many_queries_and_mixed_batches_are_refused(client: ArtsearchClient, catalogue: Catalogue):
    with pytest.raises(PayloadTooLarge):
        client.search_batch([BatchQuery(artwork_id=BEDROOM)] * (MAX_QUERIES + 1))
    with pytest.raises(ValueError, match="not both"):
        client.search_batch([BatchQuery(image=_picture(catalogue, WAVE)), BatchQuery(artwork_id=BEDROOM)])
    with pytest.raises(ValueError, match="exactly one"):
        BatchQuery(url="https://example.org/a.jpg", artwork_id=BEDROOM)
    with pytest.raises(ValueError, match="share"):
        BatchQuery(image=b"x", params={"k": 3})
