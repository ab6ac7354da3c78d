"""Fixtures for the CRL tests: the shared test PKI, DER helpers and a real HTTP server.

The server (``CrlHttpServer``) is a real ``http.server`` on 127.0.0.1 whose answers the
test sets per path: a body with an ETag (answering If-None-Match with 304), a body cut
short of its Content-Length, an oversized or endless body, a slow answer, an HTTP error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from moica_auth.testing.pki import TestPKI, default_pki


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    etag: str | None = None
    mode: str = "normal"  # normal | truncate | no_length | slow
    hits: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        route.hits += 1
        if route.mode == "slow":
            time.sleep(1.0)
        if route.etag and self.headers.get("If-None-Match") == route.etag:
            self.send_response(304)
            self.send_header("ETag", route.etag)
            self.end_headers()
            return
        self.send_response(route.status)
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.mode == "no_length":
            # Close-delimited body: the size limit must be enforced while streaming.
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(64):
                self.wfile.write(route.body)
            return
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.mode == "truncate":
            self.wfile.write(route.body[: len(route.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(route.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes: dict[str, Route]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on purpose (size limit, timeouts): stay quiet.
        return


class CrlHttpServer:
    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes = b"", **kwargs: Any) -> str:
        self.httpd.routes[path] = Route(body=body, **kwargs)
        return self.base + path

    def route(self, path: str) -> Route:
        return self.httpd.routes[path]


@pytest.fixture(scope="session")
def crl_http() -> Iterator[CrlHttpServer]:
    server = CrlHttpServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return default_pki()


DAY = timedelta(days=1)
