"""Authentication between the services (artsearch/service_auth.py): with SERVICE_TOKEN set, a server answers
UNAUTHENTICATED to calls without the token, except health checks; `open_channel` sends the token; reflection
can be turned off."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from artsearch.config import ConfigError, Env, ListenSettings, ServiceAuth
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import RPC_TOTAL, GrpcServiceServer, ServiceRegistration
from artsearch.service_auth import token_matches
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc

SERVICE = "artsearch.v1.EncoderService"
TOKEN = "a" * 40
NEXT_TOKEN = "b" * 40


class _Encoder(encoder_pb2_grpc.EncoderServiceServicer):
    calls = 0

    async def GetModelInfo(self, request, context):
        type(self).calls += 1
        return encoder_pb2.ModelInfo(name="test-model")


async def _serve(auth: ServiceAuth) -> tuple[GrpcServiceServer, str]:
    servicer = _Encoder()
    registration = ServiceRegistration(
        SERVICE, lambda s: encoder_pb2_grpc.add_EncoderServiceServicer_to_server(servicer, s)
    )
    server = GrpcServiceServer([registration], auth=auth)
    return server, f"127.0.0.1:{await server.start()}"


@pytest.fixture
async def guarded():
    server, address = await _serve(ServiceAuth(tokens=(TOKEN, NEXT_TOKEN), reflection=False))
    yield address
    await server.stop(0)


async def _model_info(address: str, token: str | None) -> encoder_pb2.ModelInfo:
    async with open_channel(address, token=token or "") as channel:
        return await encoder_pb2_grpc.EncoderServiceStub(channel).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=5
        )


@pytest.mark.parametrize(("token", "details"), [(None, "required"), ("c" * 40, "not valid")])
async def test_a_call_without_the_token_is_unauthenticated_and_never_reaches_the_service(
    guarded, token, details
):
    before = _Encoder.calls
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _model_info(guarded, token)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details in error.value.details()
    assert _Encoder.calls == before
    refused = RPC_TOTAL.labels(f"/{SERVICE}/GetModelInfo", "UNAUTHENTICATED")._value.get()
    assert refused >= 1


@pytest.mark.parametrize("token", [TOKEN, NEXT_TOKEN])
async def test_each_configured_token_is_accepted(guarded, token):
    assert (await _model_info(guarded, token)).name == "test-model"


async def test_open_channel_sends_the_first_token_of_the_environment(guarded, monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", f"{NEXT_TOKEN},{TOKEN}")
    async with open_channel(guarded) as channel:
        reply = await encoder_pb2_grpc.EncoderServiceStub(channel).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=5
        )
    assert reply.name == "test-model"


async def test_health_checks_need_no_token(guarded):
    async with open_channel(guarded, token="") as channel:
        assert await is_serving(channel)
        assert await is_serving(channel, SERVICE)
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_off_is_not_offered_at_all(guarded):
    async with open_channel(guarded, token=TOKEN) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for _ in stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            ):
                pass
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_on_with_a_token_needs_the_token():
    server, address = await _serve(ServiceAuth(tokens=(TOKEN,), reflection=True))
    try:
        for token, expected in (("", grpc.StatusCode.UNAUTHENTICATED), (TOKEN, None)):
            async with open_channel(address, token=token) as channel:
                stub = reflection_pb2_grpc.ServerReflectionStub(channel)
                request = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                if expected is None:
                    names = [
                        s.name
                        async for reply in stub.ServerReflectionInfo(request, timeout=5)
                        for s in reply.list_services_response.service
                    ]
                    assert SERVICE in names
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    async for _ in stub.ServerReflectionInfo(request, timeout=5):
                        pass
                assert error.value.code() == expected
    finally:
        await server.stop(0)


def test_settings_read_the_token_list_and_refuse_short_tokens():
    listen = ListenSettings.from_env(
        Env({"SERVICE_TOKEN": f" {TOKEN} , {NEXT_TOKEN}", "GRPC_REFLECTION": "false"}), 1
    )
    assert listen.auth == ServiceAuth(tokens=(TOKEN, NEXT_TOKEN), reflection=False)
    assert listen.auth.client_token == TOKEN
    assert ListenSettings.from_env(Env({}), 1).auth == ServiceAuth()
    with pytest.raises(ConfigError, match="SERVICE_TOKEN entry 2: at least 32"):
        ServiceAuth.from_env(Env({"SERVICE_TOKEN": f"{TOKEN},short"}))
    with pytest.raises(ConfigError, match="entry 1"):
        ServiceAuth.from_env(Env({"SERVICE_TOKEN": f",{TOKEN}"}))


def test_token_comparison_checks_every_token():
    assert token_matches(TOKEN, (NEXT_TOKEN, TOKEN))
    assert not token_matches(TOKEN[:-1], (TOKEN,))
    assert not token_matches("", (TOKEN,))
