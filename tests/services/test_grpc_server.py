"""The shared server bootstrap: health checking, reflection, request ids (in every log line of a call),
access log lines, graceful shutdown."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from artsearch.grpc_client import is_serving, open_channel, request_metadata
from artsearch.grpc_server import GrpcServiceServer, ServiceRegistration
from artsearch.jsonlog import request_id_var
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc

SERVICE = "artsearch.v1.EncoderService"


class _EchoRequestIdEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    async def GetModelInfo(self, request, context):
        return encoder_pb2.ModelInfo(name=request_id_var.get())

    async def Encode(self, request, context):
        logging.getLogger("test.encoder").info("encoding", extra={"images": len(request.images)})
        raise RuntimeError("a bug in the handler")


@pytest.fixture
async def server():
    servicer = _EchoRequestIdEncoder()
    registration = ServiceRegistration(
        SERVICE, lambda s: encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, s)
    )
    server = GrpcServiceServer([registration])
    port = await server.start()
    yield server, f"127.0.0.1:{port}"
    await server.stop(0)


async def test_health_reports_serving_for_server_and_each_service(server):
    _, address = server
    async with open_channel(address) as channel:
        assert await is_serving(channel)
        assert await is_serving(channel, SERVICE)
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=1)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(server):
    _, address = server
    async with open_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_request_id_metadata_reaches_the_handler_context(server):
    _, address = server
    async with open_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        reply = await stub.GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), metadata=request_metadata("abc123"), timeout=2
        )
    assert reply.name == "abc123"


async def test_graceful_shutdown_reports_not_serving_then_closes(server):
    grpc_server, address = server
    async with open_channel(address) as channel:
        await grpc_server.health.enter_graceful_shutdown()
        assert not await is_serving(channel)
        await grpc_server.stop(0)
        assert not await is_serving(channel, timeout=0.5)


async def test_a_call_without_request_id_gets_a_fresh_one_each_time(server):
    _, address = server
    async with open_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        first = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=2)
        second = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=2)
        unsafe = await stub.GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), metadata=request_metadata("x" * 500), timeout=2
        )
    assert len(first.name) == 32 and len(second.name) == 32 and first.name != second.name
    assert len(unsafe.name) == 32


async def test_every_line_logged_for_a_call_carries_its_request_id(server, json_log_lines):
    _, address = server
    async with open_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Encode(
                encoder_pb2.EncodeRequest(images=[b"x"]), metadata=request_metadata("req-77"), timeout=2
            )
        await stub.GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), metadata=request_metadata("req-78"), timeout=2
        )
        assert await is_serving(channel)
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    served = [line for line in json_log_lines() if line["logger"] != "asyncio"]
    # The handler's own line, grpc's report of the exception, and the access line of each call.
    handler_line = next(line for line in served if line["msg"] == "encoding")
    assert handler_line["request_id"] == "req-77" and handler_line["images"] == 1
    grpc_error = next(line for line in served if "a bug in the handler" in json.dumps(line))
    assert grpc_error["request_id"] == "req-77"
    access = {line["method"]: line for line in served if line["msg"] == "rpc"}
    assert access["/artsearch.v1.EncoderService/Encode"]["request_id"] == "req-77"
    assert access["/artsearch.v1.EncoderService/Encode"]["code"] == "UNKNOWN"
    assert access["/artsearch.v1.EncoderService/GetModelInfo"]["request_id"] == "req-78"
    assert access["/artsearch.v1.EncoderService/GetModelInfo"]["code"] == "OK"
    assert not any("Health" in line.get("method", "") for line in served), "probes are not logged"
