"""EncodeRequest.analyse through an in-process EncoderService on the real model: the located crop's
descriptor in the same answer as the whole photo's, the quadrilateral and confidence, grey-scale; and
nothing of it (and the same descriptors as before) when not asked."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from painting_photos import gallery_wall, grey_print
from PIL import Image
from prometheus_client import REGISTRY

from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from services.encoder import painting_locator
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.images import decode_image
from services.encoder.server import EncoderService, encoder_registration


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def paintings(gcompris_catalogue: Path) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(gcompris_catalogue.glob("*.jpg"))[:4]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub(model_path: Path) -> AsyncIterator[encoder_pb2_grpc.EncoderServiceStub]:
    service = EncoderService(OnnxRuntimeBackend(model_path), max_batch_images=8, max_image_pixels=50_000_000)
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    async with open_channel(f"127.0.0.1:{port}") as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel)
    await server.stop(0)
    await service.close()


def vectors(embeddings: object) -> np.ndarray:
    return np.array([list(e.values) for e in embeddings], dtype=np.float32)


async def test_without_analyse_the_answer_is_unchanged(stub, paintings):
    photo = jpeg(gallery_wall(paintings[0], 0)[0])
    response = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo]), timeout=30)
    assert len(response.analyses) == 0
    assert len(response.embeddings) == 1


async def test_a_wall_photo_comes_back_with_its_painting_located_and_described(stub, paintings):
    photo, truth = gallery_wall(paintings[1], 1)
    wall, plain = jpeg(photo), jpeg(paintings[1])
    response = await stub.Encode(encoder_pb2.EncodeRequest(images=[wall, plain], analyse=True), timeout=30)
    assert len(response.embeddings) == 2 and len(response.analyses) == 2
    on_wall = response.analyses[0]
    assert on_wall.located and on_wall.HasField("located_embedding")
    corners = np.array(on_wall.corners).reshape(4, 2)
    assert np.abs(corners - truth).max() < 0.05
    assert 0.5 <= on_wall.confidence <= 1.0
    assert 0.05 < on_wall.area_fraction < 0.6
    assert not on_wall.greyscale and on_wall.chroma_spread > 6
    whole, located = vectors(response.embeddings)[0], np.array(on_wall.located_embedding.values)
    np.testing.assert_allclose(np.linalg.norm(located), 1.0, atol=1e-5)
    # The crop is the painting: its descriptor is much closer to the painting's own than the photo's is.
    reference = vectors(response.embeddings)[1]  # the clean painting, in the same call
    assert float(located @ reference) > float(whole @ reference) + 0.1
    # A clean painting is its own photo: no second descriptor.
    assert not response.analyses[1].HasField("located_embedding")


async def test_a_grey_print_is_reported_grey(stub, paintings):
    response = await stub.Encode(
        encoder_pb2.EncodeRequest(
            images=[jpeg(grey_print(paintings[2], 2)), jpeg(paintings[2])], analyse=True
        ),
        timeout=30,
    )
    assert [a.greyscale for a in response.analyses] == [True, False]


async def test_the_whole_photo_descriptor_is_the_unanalysed_one(stub, paintings):
    """Analysis adds to the answer; the whole photo's descriptor stays exactly what it was."""
    for photo in (jpeg(gallery_wall(paintings[3], 3)[0]), jpeg(paintings[3])):
        plain = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo]), timeout=30)
        analysed = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo], analyse=True), timeout=30)
        np.testing.assert_array_equal(vectors(plain.embeddings), vectors(analysed.embeddings))


async def test_a_bad_image_in_an_analysed_call_is_invalid_argument(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[b"not an image"], analyse=True), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_working_copy_keeps_the_aspect_ratio(paintings):
    from services.encoder.images import open_image

    data = jpeg(paintings[0])
    pixels, working = open_image(
        data, size=224, max_pixels=50_000_000, work_side=672
    ).decode_with_working_copy()
    assert pixels.shape == (224, 224, 3)
    width, height = paintings[0].size
    assert max(working.shape[:2]) <= 672
    assert abs(working.shape[1] / working.shape[0] - width / height) < 0.02
    assert decode_image(data, size=224, max_pixels=50_000_000).shape == (224, 224, 3)


async def test_a_large_photo_is_analysed_from_its_reduced_copy(stub, paintings):
    """A 4000x3000 PNG wall photo: the locator works on the working copy (at most 672 px), the answer is the
    same painting found."""
    photo, truth = gallery_wall(paintings[1], 1)
    large = photo.resize((4000, 3000), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    large.save(buffer, "PNG", compress_level=1)
    response = await stub.Encode(
        encoder_pb2.EncodeRequest(images=[buffer.getvalue()], analyse=True), timeout=60
    )
    corners = np.array(response.analyses[0].corners).reshape(4, 2)
    assert np.abs(corners - truth).max() < 0.05


async def test_a_photo_over_the_pixel_limit_is_refused_before_any_analysis(model_path):
    service = EncoderService(
        OnnxRuntimeBackend(model_path), max_batch_images=2, max_image_pixels=100_000, max_queued_images=2
    )
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            big = jpeg(Image.new("RGB", (1000, 1000), (200, 10, 10)))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Encode(encoder_pb2.EncodeRequest(images=[big], analyse=True), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "limit" in (raised.value.details() or "")
            # A full call of analysed photos is served even at the smallest queue limit (2 images here).
            small = jpeg(Image.new("RGB", (200, 150), (10, 200, 10)))
            answer = await stub.Encode(
                encoder_pb2.EncodeRequest(images=[small, small], analyse=True), timeout=30
            )
            assert len(answer.analyses) == 2
    finally:
        await server.stop(0)
        await service.close()


# --- EncodeInStages: the whole photos' descriptors first, the analyses after --------------------------------


async def staged(
    stub: encoder_pb2_grpc.EncoderServiceStub, images: list[bytes]
) -> list[encoder_pb2.EncodeResponse]:
    return [
        message async for message in stub.EncodeInStages(encoder_pb2.EncodeRequest(images=images), timeout=30)
    ]


async def test_in_stages_the_answer_is_the_analysed_encode_in_two_messages(stub, paintings):
    """The first message: the whole photos' descriptors (the analysed Encode's, exactly) with only their
    grey-scale test; the second: the complete analyses, the same as the analysed Encode's."""
    photos = [jpeg(gallery_wall(paintings[1], 1)[0]), jpeg(paintings[2])]
    whole_first, complete = await staged(stub, photos)
    unary = await stub.Encode(encoder_pb2.EncodeRequest(images=photos, analyse=True), timeout=30)
    np.testing.assert_array_equal(vectors(whole_first.embeddings), vectors(unary.embeddings))
    assert whole_first.model == unary.model == complete.model
    assert [a.located for a in whole_first.analyses] == [False, False]
    assert not any(a.HasField("located_embedding") for a in whole_first.analyses)
    assert [a.greyscale for a in whole_first.analyses] == [False, False]
    assert len(complete.embeddings) == 0
    for streamed, single in zip(complete.analyses, unary.analyses, strict=True):
        assert streamed.located == single.located
        np.testing.assert_allclose(streamed.corners, single.corners)
        np.testing.assert_array_equal(streamed.located_embedding.values, single.located_embedding.values)
        assert (streamed.greyscale, streamed.photo_greyscale) == (single.greyscale, single.photo_greyscale)
    assert complete.analyses[0].located and complete.analyses[0].HasField("located_embedding")


async def test_a_grey_print_on_a_coloured_wall_is_grey_but_its_photo_is_not(stub, paintings):
    """With a crop, `greyscale` is the painting's and `photo_greyscale` the whole photo's: the whole photo
    is searched with its colour (the wall's), the crop without."""
    photo = jpeg(gallery_wall(grey_print(paintings[0], 4), 4)[0])
    whole_first, complete = await staged(stub, [photo])
    assert not whole_first.analyses[0].greyscale and not whole_first.analyses[0].photo_greyscale
    analysis = complete.analyses[0]
    assert analysis.HasField("located_embedding")
    assert analysis.greyscale and not analysis.photo_greyscale
    unary = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo], analyse=True), timeout=30)
    assert (unary.analyses[0].greyscale, unary.analyses[0].photo_greyscale) == (True, False)


async def test_a_grey_photo_is_known_grey_from_the_first_message(stub, paintings):
    whole_first, complete = await staged(stub, [jpeg(grey_print(paintings[2], 2))])
    assert whole_first.analyses[0].greyscale and whole_first.analyses[0].photo_greyscale
    assert complete.analyses[0].greyscale and complete.analyses[0].photo_greyscale


async def test_a_bad_image_in_stages_is_invalid_argument_and_the_service_goes_on(stub, paintings):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await staged(stub, [jpeg(paintings[0]), b"not an image"])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1" in (raised.value.details() or "")  # the image's index
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await staged(stub, [])
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await staged(stub, [jpeg(paintings[0])])) == 2


async def test_a_staged_call_is_counted_and_timed_like_a_unary_one(stub, paintings):
    method = "/artsearch.v1.EncoderService/EncodeInStages"
    before = REGISTRY.get_sample_value(
        "artsearch_grpc_server_handled_total", {"method": method, "code": "OK"}
    )
    await staged(stub, [jpeg(paintings[1])])
    after = REGISTRY.get_sample_value("artsearch_grpc_server_handled_total", {"method": method, "code": "OK"})
    assert after == (before or 0.0) + 1


async def test_a_locator_that_raises_leaves_the_photo_answered_as_a_whole(
    stub, paintings, monkeypatch, caplog
):
    """A bug met by the locator on some photo costs that photo its crop, not its answer: both the analysed
    Encode and the staged one answer with the whole photo's descriptor and no painting located; the failure
    is logged with its traceback and counted."""

    def broken(rgb: np.ndarray) -> None:
        raise ValueError("a bug in the locator")

    monkeypatch.setattr(painting_locator, "locate_painting", broken)
    photo = jpeg(gallery_wall(paintings[1], 1)[0])
    counted = "artsearch_encoder_analysis_failures_total"
    before = REGISTRY.get_sample_value(counted) or 0.0
    unary = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo], analyse=True), timeout=30)
    whole_first, complete = await staged(stub, [photo])
    plain = await stub.Encode(encoder_pb2.EncodeRequest(images=[photo]), timeout=30)
    for analysis in (unary.analyses[0], complete.analyses[0]):
        assert not analysis.located and not analysis.HasField("located_embedding")
        assert analysis.greyscale == whole_first.analyses[0].greyscale is False
    np.testing.assert_array_equal(vectors(unary.embeddings), vectors(plain.embeddings))
    assert REGISTRY.get_sample_value(counted) == before + 2
    failures = [r for r in caplog.records if "locating the painting failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info and r.exc_info[0] is ValueError for r in failures)
