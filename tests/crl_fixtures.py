"""Fixtures for the CRL tests: the shared test PKI, DER helpers and a real HTTP server.

The server (``CrlHttpServer``) is a real ``http.server`` on 127.0.0.1 whose answers the
test sets per path: a body with an ETag (answering If-None-Match with 304), a body cut
short of its Content-Length, an oversized or endless body, a slow answer, an HTTP error.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    # normal | truncate | no_length | slow | gzip | drip | drip_headers | redirect
    mode: str = "normal"
    hits: int = 0
    location: str = ""  # mode "redirect": the Location header (302)
    conditional: bool = False  # answer 304 to any request, validators or not
    sent: int = 0  # body bytes written (mode "drip")
    done: threading.Event = field(default_factory=threading.Event)


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
        if route.mode == "drip_headers":
            # Slowloris in the headers: each byte well inside the read timeout.
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                for _ in range(3000):
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    route.sent += 1
                    time.sleep(0.01)
            except OSError:
                pass
            finally:
                route.done.set()
                self.close_connection = True
            return
        if route.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.conditional or (route.etag and self.headers.get("If-None-Match") == route.etag):
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
        if route.mode == "gzip":
            # Sent compressed although the client asked for identity.
            packed = gzip.compress(route.body, compresslevel=9)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)
            return
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.mode == "drip":
            # Slowloris: one byte at a time, each well inside the read timeout.
            try:
                for byte in route.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    route.sent += 1
                    time.sleep(0.01)
            except OSError:
                pass
            finally:
                route.done.set()
                self.close_connection = True
            return
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


# --- hand-built DER: what a hostile or careless CA could sign ---------------------------

SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def der_len(n: int) -> bytes:
    """A DER definite length (X.690 §8.1.3)."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_len(len(content)) + content


def _content(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """(content start, content end) of the TLV at ``pos``."""
    first = buf[pos + 1]
    start = pos + 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(buf[start : start + count], "big")
        start += count
    return start, start + length


def tbs_fields(crl_der: bytes) -> list[bytes]:
    """The top-level TLVs inside a CRL's tbsCertList, in order."""
    start, _ = _content(crl_der)
    tbs_start, tbs_end = _content(crl_der, start)
    fields: list[bytes] = []
    pos = tbs_start
    while pos < tbs_end:
        _, nxt = _content(crl_der, pos)
        fields.append(crl_der[pos:nxt])
        pos = nxt
    return fields


def sign_tbs(key: Any, fields: list[bytes], outer_algorithm: bytes = SHA256_RSA) -> bytes:
    """A CertificateList around ``fields``, signed SHA-256 / PKCS#1 v1.5 by ``key``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    tbs = tlv(0x30, b"".join(fields))
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return tlv(0x30, tbs + outer_algorithm + tlv(0x03, b"\x00" + signature))


def with_revoked(crl_der: bytes, key: Any, entries: bytes | None) -> bytes:
    """``crl_der`` with its revokedCertificates replaced by SEQUENCE { ``entries`` }
    (``None``: omitted), re-signed by ``key``."""
    fields = [f for f in tbs_fields(crl_der)]
    # version, signature, issuer, thisUpdate, nextUpdate, [revoked], [0] extensions
    head = fields[:5]
    tail = [f for f in fields[5:] if f[0] != 0x30]
    middle = [] if entries is None else [tlv(0x30, entries)]
    return sign_tbs(key, head + middle + tail)


def revoked_entry(serial: bytes, extensions: bytes = b"", when: bytes | None = None) -> bytes:
    """One revokedCertificates entry with a raw serial content and raw extensions TLV."""
    date = when if when is not None else tlv(0x17, b"260101000000Z")
    return tlv(0x30, tlv(0x02, serial) + date + extensions)
