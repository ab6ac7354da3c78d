"""Start a real, throw-away ``redis-server`` for the tests (never an in-memory imitation)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_args(port: int, workdir: str, *extra: str) -> list[str]:
    """The command line of a throw-away server: loopback only, nothing written to disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        *extra,
    ]


@contextmanager
def redis_process(*extra: str) -> Iterator[tuple[str, int]]:
    """Like :func:`redis_server`, but yields (URL, pid): the benchmarks read the server's
    CPU time from its pid."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="moica-redis-")
    proc = subprocess.Popen(
        redis_server_args(port, workdir, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def redis_server(*extra: str) -> Iterator[str]:
    """Yield the URL of a fresh redis-server on 127.0.0.1; stop it afterwards.

    ``extra`` arguments go on the server's command line after the defaults (to simulate
    an old server without GETDEL, say).
    """
    with redis_process(*extra) as (url, _pid):
        yield url
