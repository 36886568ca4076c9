"""The shared server bootstrap: health checking, reflection, request ids, graceful shutdown."""

from __future__ import annotations

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
