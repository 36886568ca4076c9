"""The admin routes' remote calls: every one through `Downstream.call` with the configured deadline of its
service and the request id, and the services' verdicts on bad input turned into 4xx answers."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import Request

from artsearch.jsonlog import request_id_var
from artsearch.v1 import encoder_pb2_grpc, influence_pb2_grpc, search_pb2_grpc
from services.gateway.answer_cache import AnswerCaches
from services.gateway.downstream import ENCODER, INFLUENCE, SEARCH, Downstream, DownstreamError
from services.gateway.errors import ApiError

_STUBS = {
    ENCODER: encoder_pb2_grpc.EncoderServiceStub,
    SEARCH: search_pb2_grpc.SearchServiceStub,
    INFLUENCE: influence_pb2_grpc.InfluenceServiceStub,
}


# The RPCs that change stored data: they get ADMIN_WRITE_TIMEOUT_S instead of the query deadlines.
WRITE_METHODS = frozenset({"Upsert", "UpdateArtwork", "Delete", "AddArtists"})


class Services:
    """Stubs of the three services over the gateway's shared channels, for one request."""

    def __init__(self, request: Request) -> None:
        self._downstream: Downstream = request.app.state.downstream
        config = request.app.state.config
        self.collection: str = config.collection
        self._timeouts = {
            ENCODER: config.encode_timeout_s,
            SEARCH: config.search_timeout_s,
            INFLUENCE: config.influence_timeout_s,
        }
        self._write_timeout = config.admin.write_timeout_s
        self._answers: AnswerCaches | None = getattr(request.app.state, "answer_caches", None)

    def _timeout(self, service: str, method: str) -> float:
        return self._write_timeout if method in WRITE_METHODS else self._timeouts[service]

    async def call(self, service: str, method: str, message: Any) -> Any:
        """Calls `method` of `service`. INVALID_ARGUMENT becomes 400 (invalid_image from the encoder),
        NOT_FOUND 404; other failures propagate as DownstreamError (the app answers 503 + Retry-After).
        After a write, succeeded or not (it may have landed), the kept answers are dropped
        (services/gateway/answer_cache.py): the catalogue or the influence graph changed."""
        stub = _STUBS[service](self._downstream.channel(service))
        try:
            return await self._downstream.call(
                service, getattr(stub, method), message, self._timeout(service, method), request_id_var.get()
            )
        except DownstreamError as error:
            if error.status == grpc.StatusCode.INVALID_ARGUMENT:
                code = "invalid_image" if service == ENCODER else "invalid_request"
                raise ApiError(400, code, f"{service}: {error.details}") from error
            if error.status == grpc.StatusCode.NOT_FOUND:
                raise ApiError(404, "not_found", error.details) from error
            raise
        finally:
            if method in WRITE_METHODS and self._answers is not None:
                self._answers.invalidate()
