"""A local stand-in for the MOICA ID confirmation service (身分確認服務).

Real HTTP on 127.0.0.1 in a background thread, speaking the message format of
:mod:`moica_auth.identity.confirmation` (our rendering of the service). It verifies each
request's XML signature against the registered client certificate, answers from a
registry table, signs its answers, and can misbehave on purpose (:attr:`faults`) so that
the client's fail-closed paths can be tested against a real server::

    with ConfirmationServer(service_cert=cert, service_key=key, clients=[rp_cert],
                            registry={("1200227722008215", "A123456789"):
                                      (date(1971, 1, 1), 0)}) as server:
        client = ConfirmationClient(server.url, ...)

Registry semantics for a record (serial, id, birth date):

* the pair is registered with status ``s`` ≠ 0 → ``s``;
* registered with status 0 → 0, unless a birth date was sent and differs → 1;
* the ID number is registered with another serial only → 1 (no such pair);
* the ID number is unknown → 2 (no certificate).

Server-level codes of this stand-in (the agency's own meanings of 1001–1022 are given to
approved RPs): 1001 internal error (the ``server_error`` fault), 1002 bad signature,
1003 unknown ClientID, 1004 malformed request, 1005 too many records.

For tests and demos only: it keeps personal data in memory and logs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from moica_auth.exceptions import PersonalDataUnverified
from moica_auth.identity.confirmation import (
    MAX_RECORDS,
    NAMESPACE,
    REQUEST_TAG,
    VERSION,
    SigningKey,
    client_id_for,
    sign_document,
    verify_document,
)
from moica_auth.testing.httpserver import (
    ServerWithDaemonThreads,
    StartStopContext,
    serve_in_thread,
    shut_down,
)

__all__ = ["ConfirmationServer", "Fault", "ReceivedRecord"]

Fault = Literal[
    "http500",  # answer HTTP 500 with no body
    "bad_signature",  # sign, then alter a signed value
    "wrong_signer",  # sign with a key that is not the service's
    "unsigned",  # answer without a signature
    "wrong_nonce",  # echo another nonce
    "server_error",  # answer result code 1001
    "missing_result",  # leave out the last record's result
]

_MAX_BODY = 4 * 1024 * 1024
_NS = f"{{{NAMESPACE}}}"

RegistryKey = tuple[str, str]  # (card serial, ID number)
RegistryEntry = tuple[date | None, int]  # (birth date, status code)


@dataclass(frozen=True, repr=False)
class ReceivedRecord:
    """A record as the server received it (tests assert on what the client sent)."""

    card_serial: str
    id_number: str
    birth_date: str | None

    def __repr__(self) -> str:
        return f"ReceivedRecord(card_serial={self.card_serial!r}, id_number=<masked>)"


class _BadRequest(Exception):
    def __init__(self, code: int, nonce: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.nonce = nonce  # refusals echo the nonce too, as read before verification


class ConfirmationServer(StartStopContext):
    """The test service. ``clients`` are the RP certificates it accepts (by ClientID).

    ``at`` pins the time at which certificates must be valid when verifying requests.
    Set :attr:`faults` (a set of :data:`Fault`) between requests to misbehave.
    """

    def __init__(
        self,
        *,
        service_cert: x509.Certificate,
        service_key: SigningKey,
        clients: Iterable[x509.Certificate],
        registry: Mapping[RegistryKey, RegistryEntry],
        at: datetime | None = None,
    ) -> None:
        self.service_cert = service_cert
        self.service_key = service_key
        self.clients = {client_id_for(cert): cert for cert in clients}
        self.registry = dict(registry)
        self.at = at
        self.faults: set[Fault] = set()
        self.received: list[list[ReceivedRecord]] = []
        self.last_request: bytes | None = None
        self._lock = threading.Lock()
        self._rogue_key: rsa.RSAPrivateKey | None = None
        self._httpd = ServerWithDaemonThreads(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/confirm"

    def start(self) -> ConfirmationServer:
        self._thread = serve_in_thread(self._httpd, name="moica-confirmation-server")
        return self

    def stop(self) -> None:
        shut_down(self._httpd, self._thread)

    # --- the service ---------------------------------------------------------------

    def status_for(self, serial: str, id_number: str, birth_date: str | None) -> int:
        """The per-record code, by the registry semantics in the module docstring."""
        entry = self.registry.get((serial, id_number))
        if entry is not None:
            registered_birth, status = entry
            if status != 0:
                return status
            if birth_date is not None and (
                registered_birth is None or registered_birth.strftime("%Y%m%d") != birth_date
            ):
                return 1
            return 0
        if any(known_id == id_number for _, known_id in self.registry):
            return 1
        return 2

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """HTTP status and body for a request ``body``."""
        with self._lock:
            faults = set(self.faults)
        if "http500" in faults:
            return 500, b""
        nonce = ""
        try:
            nonce, records = self._read_request(body)
        except _BadRequest as bad:
            return 200, self._respond(nonce=bad.nonce, code=bad.code, codes=[], faults=faults)
        with self._lock:
            self.received.append(records)
            self.last_request = body
        if "server_error" in faults:
            return 200, self._respond(nonce=nonce, code=1001, codes=[], faults=faults)
        codes = [self.status_for(r.card_serial, r.id_number, r.birth_date) for r in records]
        return 200, self._respond(nonce=nonce, code=0, codes=codes, faults=faults)

    def _read_request(self, body: bytes) -> tuple[str, list[ReceivedRecord]]:
        try:
            # Parsed without entities or network only to find the ClientID; nothing is
            # trusted until the signature has been verified below.
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            unverified = etree.fromstring(body, parser=parser)
        except etree.LxmlError as exc:
            raise _BadRequest(1004) from exc
        echo = (unverified.findtext(f"{_NS}Nonce") or "").strip()
        client_id = unverified.findtext(f"{_NS}ClientID")
        cert = self.clients.get((client_id or "").strip())
        if cert is None:
            raise _BadRequest(1003, echo)
        try:
            root = verify_document(body, cert=cert, expected_tag=REQUEST_TAG, at=self.at)
        except PersonalDataUnverified as exc:
            raise _BadRequest(1002, echo) from exc
        nonce = (root.findtext(f"{_NS}Nonce") or "").strip()
        if root.get("Version") != VERSION or not nonce:
            raise _BadRequest(1004, nonce)
        items = root.findall(f"{_NS}Records/{_NS}Record")
        if len(items) > MAX_RECORDS:
            raise _BadRequest(1005, nonce)
        records = []
        for expected_seq, item in enumerate(items, start=1):
            serial = item.findtext(f"{_NS}SerialNumber")
            id_number = item.findtext(f"{_NS}IDNumber")
            if item.get("Seq") != str(expected_seq) or not serial or not id_number:
                raise _BadRequest(1004, nonce)
            records.append(ReceivedRecord(serial, id_number, item.findtext(f"{_NS}BirthDate")))
        if not records:
            raise _BadRequest(1004, nonce)
        return nonce, records

    def _respond(self, *, nonce: str, code: int, codes: list[int], faults: set[Fault]) -> bytes:
        root = etree.Element(f"{_NS}IdConfirmationResponse", nsmap={None: NAMESPACE})  # type: ignore[dict-item]
        root.set("Version", VERSION)
        etree.SubElement(root, f"{_NS}Nonce").text = (
            "d3Jvbmcgbm9uY2U=" if "wrong_nonce" in faults else nonce
        )
        etree.SubElement(root, f"{_NS}ResultCode").text = str(code)
        if code == 0:
            results = etree.SubElement(root, f"{_NS}Results")
            shown = codes[:-1] if "missing_result" in faults else codes
            for seq, status in enumerate(shown, start=1):
                result = etree.SubElement(results, f"{_NS}Result")
                result.set("Seq", str(seq))
                etree.SubElement(result, f"{_NS}Code").text = str(status)
        if "unsigned" in faults:
            return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
        key = self._rogue() if "wrong_signer" in faults else self.service_key
        signed = sign_document(root, key=key, cert=self.service_cert)
        if "bad_signature" in faults:
            signed = signed.replace(b"<ResultCode>", b"<ResultCode> ", 1)
        return signed

    def _rogue(self) -> rsa.RSAPrivateKey:
        if self._rogue_key is None:
            self._rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._rogue_key

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= _MAX_BODY:
                    self._send(413, b"")
                    return
                status, body = server.answer(self.rfile.read(length))
                self._send(status, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                # Request lines are harmless, but tests stay quiet and nothing about
                # the records is ever written out.
                return

        return Handler
