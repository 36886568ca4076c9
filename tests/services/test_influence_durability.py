"""The embedded influence graph's additions log (services/influence/additions_log.py) is all or nothing for a
reader and never blocks a start: a real `python -m services.influence` process with INFLUENCE_STATE_DIR is
SIGKILLed half-way through writing a batch (ARTSEARCH_TEST_CRASH_AT=additions.append, artsearch/
fault_injection.py), and has a write fail under a file-size limit (RLIMIT_FSIZE set on the running process:
a real short write); started again, it serves every acknowledged batch and nothing of the failed ones. A
damaged line in the middle stops the start with a message that says where and what to do."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from artsearch.grpc_client import is_serving, open_channel
from artsearch.v1 import influence_pb2, influence_pb2_grpc
from services.influence.additions_log import LOG_FILE
from services.influence.server import SERVICE_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class InfluenceProcess:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = _free_port()
        self.log = state_dir.parent / "influence.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.aio.Channel | None = None

    def start(self, crash_at: str | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "ARTSEARCH_TEST_"))}
        environ.update(
            INFLUENCE_STATE_DIR=str(self.state_dir), ARTSEARCH_PORT=str(self.port), ARTSEARCH_HOST="127.0.0.1"
        )
        if crash_at is not None:
            environ["ARTSEARCH_TEST_CRASH_AT"] = crash_at
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.influence"], cwd=REPO_ROOT, env=environ, stderr=log_file
            )

    async def serving(self) -> influence_pb2_grpc.InfluenceServiceStub:
        assert self.process is not None
        self._channel = open_channel(f"127.0.0.1:{self.port}")
        for _ in range(600):
            if self.process.poll() is not None:
                pytest.fail(f"the influence service exited with {self.process.returncode}: {self.log_tail()}")
            if await is_serving(self._channel, SERVICE_NAME, timeout=0.5):
                return influence_pb2_grpc.InfluenceServiceStub(self._channel)
            await asyncio.sleep(0.05)
        pytest.fail(f"the influence service did not report SERVING: {self.log_tail()}")

    async def stopped(self, sig: int | None = None) -> int:
        """Sends `sig` (if any) and waits for the exit; returns the exit status."""
        assert self.process is not None
        if sig is not None:
            self.process.send_signal(sig)
        status = await asyncio.to_thread(self.process.wait, 60)
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        return status

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[InfluenceProcess]:
    process = InfluenceProcess(tmp_path / "state")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait()


def painters(prefix: str, count: int) -> influence_pb2.AddArtistsRequest:
    """`count` new painters, the later ones influenced by the first: a batch of several lines' worth."""
    names = [f"{prefix} Painter {i}" for i in range(count)]
    return influence_pb2.AddArtistsRequest(
        artists=[influence_pb2.Artist(name=name, movement="Test school") for name in names],
        influences=[influence_pb2.NewInfluence(influencer=names[0], influenced=name) for name in names[1:]],
    )


async def missing(
    stub: influence_pb2_grpc.InfluenceServiceStub, request: influence_pb2.AddArtistsRequest
) -> list[str]:
    names = [artist.name for artist in request.artists]
    reply = await stub.GetArtists(influence_pb2.GetArtistsRequest(names=names), timeout=10)
    return list(reply.missing)


async def test_a_batch_torn_by_a_kill_is_wholly_absent_and_the_start_goes_on(service: InfluenceProcess):
    first, second, torn = painters("Alder", 5), painters("Birch", 5), painters("Cedar", 8)
    service.start(crash_at="additions.append@3")
    stub = await service.serving()
    assert (await stub.AddArtists(first, timeout=10)).artists_added == 5
    assert (await stub.AddArtists(second, timeout=10)).artists_added == 5
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.AddArtists(torn, timeout=10)  # killed half-way through writing the batch
    assert await service.stopped() == -signal.SIGKILL
    assert not (service.state_dir / LOG_FILE).read_bytes().endswith(b"\n")  # the kill did tear a line

    service.start()
    stub = await service.serving()
    assert await missing(stub, first) == [] and await missing(stub, second) == []
    assert len(await missing(stub, torn)) == 8  # all or nothing: nothing of the torn batch
    assert '"msg": "dropping a torn last line"' in service.log_tail()
    assert (await stub.AddArtists(painters("Damson", 3), timeout=10)).artists_added == 3
    assert await service.stopped(signal.SIGTERM) == 0
    service.start()
    stub = await service.serving()
    assert await missing(stub, painters("Damson", 3)) == []


async def test_a_write_that_fails_in_a_running_service_leaves_nothing_behind(service: InfluenceProcess):
    """A short write (the file-size limit reached half-way through the batch's line) answers
    RESOURCE_EXHAUSTED and is cut off at once: the next batches are written clean, and the restarted
    service has every acknowledged batch and nothing of the failed one."""
    kept, failed, later = painters("Elm", 4), painters("Fir", 30), painters("Gum", 4)
    service.start()
    stub = await service.serving()
    assert (await stub.AddArtists(kept, timeout=10)).artists_added == 4
    assert service.process is not None
    size = (service.state_dir / LOG_FILE).stat().st_size
    _, hard = resource.prlimit(service.process.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(service.process.pid, resource.RLIMIT_FSIZE, (size + 200, hard))
    with pytest.raises(grpc.aio.AioRpcError) as full:
        await stub.AddArtists(failed, timeout=10)
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, full.value.details()
    assert "cannot record the additions" in full.value.details()
    assert (service.state_dir / LOG_FILE).stat().st_size == size  # cut back at once
    assert len(await missing(stub, failed)) == 30
    resource.prlimit(service.process.pid, resource.RLIMIT_FSIZE, (hard, hard))
    assert (await stub.AddArtists(later, timeout=10)).artists_added == 4
    assert await service.stopped(signal.SIGKILL) == -signal.SIGKILL

    service.start()
    stub = await service.serving()
    assert await missing(stub, kept) == [] and await missing(stub, later) == []
    assert len(await missing(stub, failed)) == 30


async def test_a_damaged_line_in_the_middle_stops_the_start_saying_where(service: InfluenceProcess):
    service.state_dir.mkdir(parents=True)
    log = service.state_dir / LOG_FILE
    log.write_text(
        '{"batch": [{"artist": {"key": "ok painter", "name": "Ok Painter"}}]}\n'
        '{"batch": [{"artist": {"key": "half"\n'
        '{"batch": [{"artist": {"key": "later painter", "name": "Later Painter"}}]}\n',
        encoding="utf-8",
    )
    service.start()
    assert await service.stopped() == 2
    message = service.log_tail()
    assert "line 2 (byte 69) is not a batch of additions" in message
    assert "restore it from a backup, or remove that line" in message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
