"""Picture ids (services/gateway/query_cache.py): the name of a kept encoder answer that a search may send
instead of the picture; 400 when malformed, 410 picture_expired when the answer is gone or lacks the
analysis the search needs."""

from __future__ import annotations

import pytest

from artsearch.v1 import common_pb2, encoder_pb2
from services.gateway.errors import ApiError
from services.gateway.query_cache import (
    PICTURE_ID_SEARCHES,
    EncodedPictureCache,
    key_of_picture_id,
    picture_id_of,
)


def answer(version: str = "v1") -> encoder_pb2.EncodeResponse:
    return encoder_pb2.EncodeResponse(
        embeddings=[common_pb2.Embedding(values=[0.5, 0.25])],
        model=encoder_pb2.ModelInfo(version=version, dimension=2),
    )


def searches(result: str) -> float:
    return PICTURE_ID_SEARCHES.labels(result)._value.get()


def test_a_picture_id_names_the_key_both_ways():
    for analysed, suffix in ((True, "-a"), (False, "-n")):
        key = EncodedPictureCache.key(b"a picture", analysed)
        picture_id = picture_id_of(key)
        assert picture_id.endswith(suffix) and len(picture_id) == 66
        assert key_of_picture_id(picture_id) == key


@pytest.mark.parametrize(
    "text", ["", "a", "0" * 64, "0" * 64 + "-A", "G" * 64 + "-a", "0" * 65 + "-a", " " + "0" * 64 + "-a"]
)
def test_a_malformed_picture_id_is_400(text: str):
    with pytest.raises(ApiError) as refused:
        key_of_picture_id(text)
    assert (refused.value.status, refused.value.code) == (400, "invalid_picture_id")


def test_a_kept_answer_is_found_by_its_id_until_evicted_or_of_another_model():
    cache = EncodedPictureCache(max_entries=1, ttl_s=60)
    first, second = (EncodedPictureCache.key(p, analysed=True) for p in (b"first", b"second"))
    assert cache.put(first, answer())
    hits = searches("hit")
    assert cache.by_picture_id(picture_id_of(first), analyse=True, model_version="v1") is not None
    assert cache.by_picture_id(picture_id_of(first), analyse=False, model_version="v1") is not None
    assert searches("hit") == hits + 2
    with pytest.raises(ApiError) as other_model:
        cache.by_picture_id(picture_id_of(first), analyse=True, model_version="v2")
    assert (other_model.value.status, other_model.value.code) == (410, "picture_expired")
    cache.put(first, answer())
    cache.put(second, answer())  # the first is evicted
    expired = searches("expired")
    with pytest.raises(ApiError) as evicted:
        cache.by_picture_id(picture_id_of(first), analyse=False, model_version="v1")
    assert evicted.value.status == 410 and searches("expired") == expired + 1


def test_an_answer_kept_without_analysis_does_not_serve_a_search_that_needs_one():
    cache = EncodedPictureCache(max_entries=4, ttl_s=60)
    plain = EncodedPictureCache.key(b"photo", analysed=False)
    cache.put(plain, answer())
    assert cache.by_picture_id(picture_id_of(plain), analyse=False, model_version=None) is not None
    with pytest.raises(ApiError) as refused:
        cache.by_picture_id(picture_id_of(plain), analyse=True, model_version=None)
    assert refused.value.status == 410 and "locate=off" in refused.value.message


def test_nothing_is_kept_with_zero_entries():
    cache = EncodedPictureCache(max_entries=0, ttl_s=60)
    assert cache.put(EncodedPictureCache.key(b"p", analysed=False), answer()) is False
