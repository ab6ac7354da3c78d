"""Start real replicated Redis deployments on loopback ports for the tests.

* :func:`sentinel_deployment`: one master, one replica and three sentinels (Debian's
  ``redis-server`` and ``redis-sentinel``), with a short ``down-after-milliseconds`` so a
  failover takes a few seconds;
* :func:`cluster_deployment`: three masters joined by ``redis-cli --cluster create``.

Every process is started here and stopped when the context exits; nothing persists.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.redis_server import redis_server_args

MASTER_NAME = "moica"
#: Sentinel's down-after-milliseconds: how long a master may be silent before a failover.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def missing_binaries(*names: str) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def _free_port(*, cluster_bus: bool = False) -> int:
    """A loopback port that is free (and whose cluster-bus twin, port + 10000, is too)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    port: int

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _start(args: list[str], port: int, workdir: Path, name: str) -> _Process:
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()
    process = _Process(proc, port)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    try:
        _wait(lambda: proc.poll() is None and client.ping(), 10, f"{name} to start")
    finally:
        client.close()
    return process


def _server_args(port: int, workdir: Path, *extra: str) -> list[str]:
    return redis_server_args(port, str(workdir), *extra)


@dataclass
class SentinelDeployment:
    """Handles on a running Sentinel deployment."""

    servers: dict[int, _Process]
    sentinels: list[_Process]
    master_port: int
    workdir: Path
    _clients: list[redis.Redis] = field(default_factory=list)

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{MASTER_NAME}/0"

    def client(self, port: int) -> redis.Redis:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        self._clients.append(client)
        return client

    def reported_master(self) -> int | None:
        """The master port that a majority of the sentinels report, if any."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            if sentinel.proc.poll() is not None:
                continue
            try:
                client = self.client(sentinel.port)
                _host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            votes[int(port)] = votes.get(int(port), 0) + 1
        for port, count in votes.items():
            if count >= 2:
                return port
        return None

    def kill_master(self) -> int:
        """SIGKILL the current master (no shutdown, no goodbye); returns its port."""
        port = self.master_port
        self.servers[port].kill()
        return port

    def wait_for_new_master(self, old: int, timeout: float) -> int:
        """Wait until the sentinels promoted another server and it accepts writes."""
        found: list[int] = []

        def promoted() -> bool:
            port = self.reported_master()
            if port is None or port == old:
                return False
            if self.client(port).info("replication")["role"] != "master":
                return False
            found.append(port)
            return True

        _wait(promoted, timeout, "a new master")
        self.master_port = found[-1]
        return self.master_port

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def sentinel_deployment() -> Iterator[SentinelDeployment]:
    """One master, one replica, three sentinels (quorum 2) on 127.0.0.1."""
    sentinel_binary = shutil.which("redis-sentinel")
    if sentinel_binary is None or shutil.which("redis-server") is None:
        raise RuntimeError("redis-server/redis-sentinel missing: apt-get install redis-sentinel")
    workdir = Path(tempfile.mkdtemp(prefix="moica-sentinel-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        processes: list[_Process] = []
        stack.callback(lambda: [p.stop() for p in reversed(processes)])
        master_port, replica_port = _free_port(), _free_port()
        master = _start(_server_args(master_port, workdir), master_port, workdir, "master")
        processes.append(master)
        replica = _start(
            _server_args(replica_port, workdir, "--replicaof", "127.0.0.1", str(master_port)),
            replica_port,
            workdir,
            "replica",
        )
        processes.append(replica)
        link = redis.Redis(host="127.0.0.1", port=replica_port, socket_timeout=1.0)
        _wait(
            lambda: link.info("replication").get("master_link_status") == "up",
            15,
            "the replica to sync",
        )
        link.close()
        sentinels: list[_Process] = []
        for i in range(3):
            port = _free_port()
            conf = workdir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            sentinel = _start([sentinel_binary, str(conf)], port, workdir, f"sentinel-{i}")
            processes.append(sentinel)
            sentinels.append(sentinel)
        deployment = SentinelDeployment(
            servers={master_port: master, replica_port: replica},
            sentinels=sentinels,
            master_port=master_port,
            workdir=workdir,
        )
        stack.callback(deployment.close)

        def ready() -> bool:
            # Every sentinel knows the replica and the two other sentinels, or a
            # failover could not reach its quorum / find a replica to promote.
            for s in sentinels:
                state = deployment.client(s.port).sentinel_master(MASTER_NAME)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
            return True

        _wait(ready, 30, "the sentinels to discover each other")
        yield deployment


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):  # redis-py may parse CLUSTER INFO
        return "\n".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


@dataclass
class ClusterDeployment:
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)


@contextmanager
def cluster_deployment(masters: int = 3) -> Iterator[ClusterDeployment]:
    """``masters`` cluster-enabled servers joined with ``redis-cli --cluster create``."""
    cli = shutil.which("redis-cli")
    if cli is None or shutil.which("redis-server") is None:
        raise RuntimeError("redis-server/redis-cli missing: apt-get install redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="moica-cluster-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        processes: list[_Process] = []
        stack.callback(lambda: [p.stop() for p in reversed(processes)])
        ports: list[int] = []
        for i in range(masters):
            port = _free_port(cluster_bus=True)
            args = _server_args(
                port,
                workdir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
            )
            processes.append(_start(args, port, workdir, f"node-{i}"))
            ports.append(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        clients = [redis.Redis(host="127.0.0.1", port=p, socket_timeout=1.0) for p in ports]

        def ok() -> bool:
            return all(
                "cluster_state:ok" in _text(c.execute_command("CLUSTER INFO")) for c in clients
            )

        try:
            _wait(ok, 30, "the cluster to converge")
        finally:
            for c in clients:
                c.close()
        yield ClusterDeployment(ports)
