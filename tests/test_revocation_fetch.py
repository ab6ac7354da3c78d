"""The bounded HTTP exchange shared by CRL downloads and OCSP (issue #9 item 6): a server
on 127.0.0.1 that drips its status line and headers a byte at a time is cut off at the
overall deadline, for OCSP as for CRLs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from moica_auth.exceptions import OcspInvalid, RevocationUnavailable
from moica_auth.revocation.http_fetch import post_bounded
from moica_auth.revocation.ocsp import OcspSource
from moica_auth.testing.pki import TestPKI
from tests.crl_fixtures import pki  # noqa: F401 - fixture


class DrippingServer:
    """Accepts connections and sends ``HTTP/1.1 200 OK`` then one header byte every 50 ms
    for up to 30 s; never finishes the headers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/ocsp"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(1.0)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                for _ in range(600):
                    if self.stop.is_set():
                        return
                    conn.sendall(b"a")
                    time.sleep(0.05)
            except OSError:
                return


@pytest.fixture(scope="module")
def dripping() -> Iterator[DrippingServer]:
    server = DrippingServer()
    server.thread.start()
    yield server
    server.stop.set()
    server.listener.close()


def test_post_bounded_cuts_off_dripping_headers(dripping: DrippingServer) -> None:
    started = time.monotonic()
    with pytest.raises(RevocationUnavailable) as info:
        post_bounded(
            dripping.url,
            data=b"request",
            headers={},
            timeout=0.5,
            total_timeout=1.0,
            max_bytes=1024,
            too_large=OcspInvalid,
        )
    took = time.monotonic() - started
    # Each byte arrives well inside the read timeout: only the overall deadline stops it.
    assert took < 2.5, took
    assert "too long" in info.value.detail


def test_ocsp_source_is_bounded_against_dripping_headers(
    dripping: DrippingServer,
    pki: TestPKI,  # noqa: F811 - the fixture
) -> None:
    source = OcspSource(timeout=0.5, responder_url=dripping.url)
    started = time.monotonic()
    with pytest.raises(RevocationUnavailable):
        source.status(
            certificate=pki.moica_g3.certificate,
            issuer=pki.grca_g3.certificate,
            at=datetime.now(UTC),
        )
    assert time.monotonic() - started < 2.5
