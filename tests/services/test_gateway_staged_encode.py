"""A visitor's photo encoded in stages (encoder.proto, EncodeInStages) through the gateway, in-process
services on the real model: the whole photo is searched while the encoder still looks for the painting,
the answer is the one its complete analysis gives, and an encoder that cannot stage (an older release) or
whose analysis fails after the descriptor still gets the photo answered."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from gateway_support import catalogue_subset, gateway_client, gateway_config, ingested_services
from painting_photos import gallery_wall, grey_print
from PIL import Image
from prometheus_client import REGISTRY

from artsearch.grpc_server import GrpcServiceServer, ServiceRegistration
from artsearch.v1 import encoder_pb2
from artsearch_tools.catalogue.folder import Catalogue
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.server import SERVICE_NAME, EncoderService, encoder_registration
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.gateway.visual_candidates import CLEAR_LEAD, CLEAR_LEAD_ALLOWANCE

pytestmark = pytest.mark.slow
# Long enough for the whole photo's search to run first on a loaded CI machine (~15 ms idle).
ANALYSIS_DELAY_S = 1.5
CONFIDENT_SCORE = GatewayConfig.whole_photo_confident_score


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    ids = [p.stem for p in sorted(gcompris_catalogue.glob("*.jpg"))[:10]]
    return catalogue_subset(gcompris_catalogue, ids)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("services")) as addresses:
        yield addresses


@pytest.fixture(scope="module")
def backend(model_path: Path) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model_path)


class SlowAnalysis(EncoderService):
    """Fault injected on purpose: the analysis (the second message) held back ANALYSIS_DELAY_S; records
    when it is sent."""

    analysis_sent_at: list[float] = []
    # Calls cancelled by the gateway while the analysis was held back (it needed none); set by the test.
    cancelled = asyncio.Event()

    async def EncodeInStages(self, request, context):
        stages = super().EncodeInStages(request, context)
        try:
            yield await anext(stages)
            try:
                await asyncio.sleep(ANALYSIS_DELAY_S)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            analysis = await anext(stages)
            self.analysis_sent_at.append(time.monotonic())
            yield analysis
        finally:
            await stages.aclose()


class FailingAnalysis(EncoderService):
    """Fault injected on purpose: the call fails after the whole photo's descriptor (a deadline, say)."""

    async def EncodeInStages(self, request, context):
        stages = super().EncodeInStages(request, context)
        try:
            yield await anext(stages)
        finally:
            await stages.aclose()
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected: the analysis ran out of time")


def without_stages(service: EncoderService) -> ServiceRegistration:
    """The encoder as a release before EncodeInStages serves it: Encode and GetModelInfo only (grpc itself
    answers UNIMPLEMENTED for the rest)."""

    def add(server: grpc.aio.Server) -> None:
        handlers = {
            "Encode": grpc.unary_unary_rpc_method_handler(
                service.Encode,
                request_deserializer=encoder_pb2.EncodeRequest.FromString,
                response_serializer=encoder_pb2.EncodeResponse.SerializeToString,
            ),
            "GetModelInfo": grpc.unary_unary_rpc_method_handler(
                service.GetModelInfo,
                request_deserializer=encoder_pb2.GetModelInfoRequest.FromString,
                response_serializer=encoder_pb2.ModelInfo.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))

    return ServiceRegistration(full_name=SERVICE_NAME, add_to_server=add)


@asynccontextmanager
async def gateway_over(
    services: dict[str, str], registration: ServiceRegistration
) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The gateway over the test's services with this encoder in place of theirs; yields its HTTP client and
    its Downstream (for recording calls)."""
    server = GrpcServiceServer([registration])
    port = await server.start()
    try:
        app = create_app(gateway_config({**services, "ENCODER_ADDR": f"127.0.0.1:{port}"}))
        async with gateway_client(app) as http:
            yield http, app.state.downstream
    finally:
        await server.stop(0)


def encoder_of(kind: type[EncoderService], backend: OnnxRuntimeBackend) -> EncoderService:
    return kind(backend, max_batch_images=4, max_image_pixels=50_000_000)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def wall_photo(catalogue: Catalogue, index: int) -> tuple[str, bytes]:
    entry = catalogue.entries[index]
    return entry.id, jpeg(gallery_wall(Image.open(catalogue.path_of(entry)).convert("RGB"), index)[0])


async def search_json(http: httpx.AsyncClient, photo: bytes | None = None, **fields: str) -> dict:
    params = {"k": "5", "rerank": "false"}
    if photo is None:
        response = await http.post("/v1/search", params=params, json=fields)
    else:
        response = await http.post(
            "/v1/search", params={**params, **fields}, files={"image": ("p.jpg", photo)}
        )
    assert response.status_code == 200, response.text
    return response.json()


def ranking(answer: dict) -> list[tuple[str, float]]:
    return [(r["id"], r["scores"]["visual"]) for r in answer["results"]]


async def test_the_whole_photo_is_searched_while_the_encoder_still_analyses_it(services, catalogue, backend):
    artwork_id, photo = wall_photo(catalogue, 2)
    encoder = encoder_of(SlowAnalysis, backend)
    async with gateway_over(services, encoder_registration(encoder)) as (http, downstream):
        real_search = downstream.search
        searched_at: list[float] = []
        calls: list[dict] = []

        async def search(*args, **kwargs):
            searched_at.append(time.monotonic())
            calls.append(kwargs)
            return await real_search(*args, **kwargs)

        downstream.search = search
        SlowAnalysis.analysis_sent_at.clear()
        answer = await search_json(http, photo)
    assert len(SlowAnalysis.analysis_sent_at) == 1 and len(searched_at) == 2
    # The whole photo's search (the artworks alone: no confident match on the wall) began before the analysis
    # was sent, the located painting's after it; that one matched with confidence, which spared the whole
    # photo's region matching.
    assert searched_at[0] < SlowAnalysis.analysis_sent_at[0] < searched_at[1]
    assert [kwargs.get("match_regions", False) for kwargs in calls] == [False, False]
    assert answer["query"]["located"] is not None and answer["query"]["searched_located"] is True
    assert answer["results"][0]["id"] == artwork_id
    assert answer["timings_ms"]["analyse"] >= ANALYSIS_DELAY_S * 1000 * 0.9


async def test_a_located_painting_matched_without_confidence_leaves_the_region_matching_to_run(
    services, catalogue
):
    """With no match confident (WHOLE_PHOTO_CONFIDENT_SCORE above 1), the wall photo's located painting is
    searched, then the whole photo against the artworks' regions too, and the two merged: the answer the
    whole photo's three searches gave before the located painting's confident match could spare one."""
    artwork_id, photo = wall_photo(catalogue, 1)
    app = create_app(gateway_config({**services, "WHOLE_PHOTO_CONFIDENT_SCORE": "1.5"}))
    async with gateway_client(app) as http:
        calls = record_searches(app.state.downstream)
        answer = await search_json(http, photo)
    assert [kwargs.get("match_regions", False) for kwargs in calls] == [False, False, True]
    assert answer["query"]["searched_located"] is True and answer["query"]["whole_photo_confident"] is False
    assert answer["query"]["best_from_located"] is True
    assert answer["results"][0]["id"] == artwork_id


async def test_a_confident_whole_photo_is_answered_without_its_analysis_or_regions(
    services, catalogue, backend
):
    """A clean photo of a painting matches it with confidence: one search (no region matching), no wait for
    the analysis (held back here); WHOLE_PHOTO_CONFIDENT_SCORE above 1 asks for both, as before it."""
    entry = catalogue.entries[7]
    photo = jpeg(Image.open(catalogue.path_of(entry)).convert("RGB"))
    encoder = encoder_of(SlowAnalysis, backend)
    SlowAnalysis.analysis_sent_at.clear()
    SlowAnalysis.cancelled = asyncio.Event()
    cancelled_calls = handled_stages("CANCELLED")
    async with gateway_over(services, encoder_registration(encoder)) as (http, downstream):
        calls = record_searches(downstream)
        started = time.monotonic()
        answer = await search_json(http, photo)
        answered_in = time.monotonic() - started
        # No search needs the analysis any more: the gateway cancelled the encoder's call (its locator and
        # the crop's network pass are not run), and the kept picture is the whole photo's.
        await asyncio.wait_for(SlowAnalysis.cancelled.wait(), ANALYSIS_DELAY_S)
        again = await search_json(http, picture_id=answer["picture_id"])
    assert not SlowAnalysis.analysis_sent_at
    # The encoder counts the call as the caller ended it: CANCELLED, not a failure of its own (UNKNOWN).
    assert handled_stages("CANCELLED") == cancelled_calls + 1
    assert ranking(again) == ranking(answer) and again["query"] == answer["query"]
    assert [kwargs.get("match_regions", False) for kwargs in calls] == [False, False]
    assert answer["results"][0]["id"] == entry.id and answer["results"][0]["scores"]["visual"] >= 0.7
    query = answer["query"]
    assert query["whole_photo_confident"] is True
    assert query["located"] is None and query["searched_located"] is False
    assert answered_in < ANALYSIS_DELAY_S and "analyse" not in answer["timings_ms"]
    config = {**services, "WHOLE_PHOTO_CONFIDENT_SCORE": "1.5"}
    async with gateway_client(create_app(gateway_config(config))) as http:
        both = await search_json(http, photo)
    assert both["query"]["whole_photo_confident"] is False and "analyse" in both["timings_ms"]
    assert both["results"][0]["id"] == entry.id


async def test_a_wall_photo_matched_with_a_clear_lead_is_answered_below_the_confident_score(
    services, catalogue
):
    """This wall photo's whole matches its painting at 0.69 (below WHOLE_PHOTO_CONFIDENT_SCORE, 0.7) and leads
    the next artwork by 0.14: answered from the whole photo, one search. The allowance is relative to the
    score set: at 0.75 the same photo is left to its located painting."""
    artwork_id, photo = wall_photo(catalogue, 1)
    app = create_app(gateway_config(services))
    async with gateway_client(app) as http:
        calls = record_searches(app.state.downstream)
        answer = await search_json(http, photo)
    best, second = [result["scores"]["visual"] for result in answer["results"][:2]]
    assert CONFIDENT_SCORE - CLEAR_LEAD_ALLOWANCE <= best < CONFIDENT_SCORE and best - second >= CLEAR_LEAD
    assert [kwargs.get("match_regions", False) for kwargs in calls] == [False]
    assert answer["query"]["whole_photo_confident"] is True and answer["query"]["searched_located"] is False
    assert answer["results"][0]["id"] == artwork_id
    stricter = create_app(gateway_config({**services, "WHOLE_PHOTO_CONFIDENT_SCORE": "0.75"}))
    async with gateway_client(stricter) as http:
        calls = record_searches(stricter.state.downstream)
        located = await search_json(http, photo)
    assert len(calls) >= 2 and located["query"]["searched_located"] is True
    assert located["query"]["whole_photo_confident"] is False
    assert located["results"][0]["id"] == artwork_id


async def test_a_search_refused_after_the_encode_cancels_the_encoders_analysis(services, catalogue, backend):
    """Weights that leave nothing to search with are refused (422) once the encoder's layout is known, before
    the gateway has read anything of the analysis: the encoder's call is cancelled all the same."""
    _, photo = wall_photo(catalogue, 6)
    SlowAnalysis.analysis_sent_at.clear()
    SlowAnalysis.cancelled = asyncio.Event()
    async with gateway_over(services, encoder_registration(encoder_of(SlowAnalysis, backend))) as (http, _):
        response = await http.post(
            "/v1/search",
            params={"k": "5", "w_content": "0", "w_style": "0", "w_colour": "0"},
            files={"image": ("p.jpg", photo)},
        )
        assert response.status_code == 422, response.text
        await asyncio.wait_for(SlowAnalysis.cancelled.wait(), ANALYSIS_DELAY_S)
    assert not SlowAnalysis.analysis_sent_at


def handled_stages(code: str) -> float:
    """The encoder's EncodeInStages calls ended with `code` so far (its servers run in this process)."""
    labels = {"method": f"/{SERVICE_NAME}/EncodeInStages", "code": code}
    return REGISTRY.get_sample_value("artsearch_grpc_server_handled_total", labels) or 0.0


def record_searches(downstream: object) -> list[dict]:
    """The keyword arguments of every search call the gateway makes (the calls themselves unchanged)."""
    real_search = downstream.search
    calls: list[dict] = []

    async def search(*args, **kwargs):
        calls.append(kwargs)
        return await real_search(*args, **kwargs)

    downstream.search = search
    return calls


async def test_a_staged_answer_is_the_answer_of_its_complete_analysis(services, catalogue):
    """Searched again by its picture_id, the photo's kept answer (the complete analysis at once, both
    searches together) ranks exactly as the staged one did."""
    app = create_app(gateway_config(services))
    async with gateway_client(app) as http:
        for index in (2, 3):
            artwork_id, photo = wall_photo(catalogue, index)
            staged = await search_json(http, photo)
            kept = await search_json(http, picture_id=staged["picture_id"])
            assert ranking(kept) == ranking(staged)
            assert kept["query"] == staged["query"] and kept["weights"] == staged["weights"]
            assert "analyse" in staged["timings_ms"] and "analyse" not in kept["timings_ms"]
            assert staged["results"][0]["id"] == artwork_id


async def test_an_encoder_without_stages_answers_one_analysed_encode(services, catalogue, backend):
    """A rolling upgrade: the gateway is new, the encoder a release before EncodeInStages."""
    artwork_id, photo = wall_photo(catalogue, 4)
    async with gateway_over(services, encoder_registration(encoder_of(EncoderService, backend))) as (http, _):
        staged = await search_json(http, photo)
    async with gateway_over(services, without_stages(encoder_of(EncoderService, backend))) as (http, _):
        unary = await search_json(http, photo)
    assert ranking(unary) == ranking(staged) and unary["query"] == staged["query"]
    assert unary["results"][0]["id"] == artwork_id and unary["query"]["searched_located"] is True
    assert "analyse" not in unary["timings_ms"]


async def test_an_analysis_failing_after_the_descriptor_leaves_the_whole_photos_answer(
    services, catalogue, backend
):
    _, photo = wall_photo(catalogue, 5)
    async with gateway_over(services, encoder_registration(encoder_of(FailingAnalysis, backend))) as (
        http,
        _,
    ):
        answer = await search_json(http, photo)
        whole = await search_json(http, photo, locate="off")
        again = await search_json(http, picture_id=answer["picture_id"])
        assert (await http.get("/healthz")).status_code == 200
    assert answer["query"]["located"] is None and answer["query"]["searched_located"] is False
    assert ranking(answer) == ranking(whole)
    # Kept as far as it came: the picture searched again by its id is the whole photo's answer again.
    assert ranking(again) == ranking(answer) and again["query"] == answer["query"]


async def test_a_grey_print_on_a_coloured_wall_drops_colour_for_the_painting_only(services, catalogue):
    entry = catalogue.entries[6]
    painting = grey_print(Image.open(catalogue.path_of(entry)).convert("RGB"), 6)
    photo = jpeg(gallery_wall(painting, 6)[0])
    app = create_app(gateway_config(services))
    async with gateway_client(app) as http:
        answer = await search_json(http, photo)
    query = answer["query"]
    assert query["searched_located"] is True
    assert (query["photo_greyscale"], query["photo_colour_dropped"]) == (False, False)
    assert (query["greyscale"], query["colour_dropped"]) == (True, True)
    assert answer["weights"]["colour"] == 0
