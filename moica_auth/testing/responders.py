"""Local CRL and OCSP HTTP responders for tests and the demo (PUBLIC, documented API).

.. warning::

   Test tooling. It signs whatever you tell it to with the test PKI's keys; never expose it
   beyond 127.0.0.1 and never point production at it.

:class:`ResponderServer` is a real HTTP server (``http.server.ThreadingHTTPServer`` in a
daemon thread) on 127.0.0.1 that serves

* CRL files at paths you register with :meth:`ResponderServer.publish_crl`;
* OCSP responders (RFC 6960) at paths you register with :meth:`ResponderServer.add_ocsp`:
  POST ``application/ocsp-request`` and GET ``<path>/<url-encoded base64 request>``
  (RFC 6960 App. A.1). A responder answers from a status table
  (:meth:`OcspResponder.set_status`), signs with a given key (the CA itself or a delegated
  responder), echoes the request nonce (RFC 8954) and takes thisUpdate, nextUpdate and
  producedAt from an injectable clock, so tests can pin time.

Faults are set per path with :meth:`ResponderServer.set_fault` (see :data:`FAULTS`), and
every request is counted per path (:meth:`ResponderServer.hits`), so tests can assert that a
cache avoided a second upstream request.

Example::

    with ResponderServer(clock=lambda: NOW) as server:
        ocsp = server.add_ocsp(issuer=pki.moica_g3.certificate, signer=pki.moica_g3)
        ocsp.set_status(card.signing.certificate.serial_number, "revoked",
                        revoked_at=NOW - timedelta(days=1), reason="key_compromise")
        server.publish_crl("/crl/MOICA-G3-complete.crl", crl.public_bytes(Encoding.DER))
        server.set_fault("/ocsp", "slow")
        ... OcspSource(responder_url=server.url_for("/ocsp"), timeout=0.3) ...
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Protocol, get_args

from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp

from moica_auth._x509 import key_digest
from moica_auth.testing.httpserver import (
    ServerWithDaemonThreads,
    StartStopContext,
    serve_in_thread,
    serve_until_interrupted,
    shut_down,
)
from moica_auth.testing.pki import TestPKI

__all__ = [
    "FAULTS",
    "Fault",
    "OcspResponder",
    "ResponderServer",
    "SigningIdentity",
    "demo_crls",
    "main",
    "serve_demo",
]

Fault = Literal[
    "down",  # the connection is closed without an answer (refused/reset)
    "slow",  # the answer comes after ``slow_seconds``, longer than any client timeout
    "http500",  # HTTP 500 with an empty body
    "garbage",  # HTTP 200 with bytes that are not DER
    "truncate",  # Content-Length promises more than is sent, then the connection closes
    "wrong_signer",  # OCSP: signed by an unrelated key (the ResponderID is unchanged)
    "wrong_nonce",  # OCSP: echoes a different nonce
    "no_nonce",  # OCSP: omits the nonce
    "stale",  # OCSP: nextUpdate already in the past
    "wrong_cert_id",  # OCSP: answers for serial + 1 instead of the requested CertID
]
FAULTS: frozenset[str] = frozenset(get_args(Fault))
StatusName = Literal["good", "revoked", "hold", "unknown"]

_MAX_REQUEST_BYTES = 64 * 1024


class SigningIdentity(Protocol):
    """A certificate with its private key (``moica_auth.testing.pki.CertifiedKey`` fits)."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes: ...


@dataclass(frozen=True)
class _Entry:
    status: StatusName
    revoked_at: datetime | None
    reason: x509.ReasonFlags | None


@dataclass(frozen=True)
class _Issuer:
    certificate: x509.Certificate
    signer: SigningIdentity


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _naive_utc(value: datetime) -> datetime:
    """cryptography's OCSP builder reads naive datetimes as UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _key_hash(certificate: x509.Certificate) -> bytes:
    return key_digest(certificate)


@functools.cache
def _unrelated_key(kind: str) -> CertificateIssuerPrivateKeyTypes:
    """A key nobody certified, for the ``wrong_signer`` fault (same type as the real one)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """Sign as cryptography's OCSPResponseBuilder.sign(key, SHA256) does."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.sign(data)
    raise TypeError(f"unsupported responder key type {type(key).__name__}")


def _key_kind(key: CertificateIssuerPrivateKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    return "rsa"


class OcspResponder:
    """An OCSP responder (RFC 6960 §2.2, §4.2) for one or more CAs, from a status table.

    Serials not in the table get ``default_status`` ("good" by default, so that every
    card of a demo PKI works; set "unknown" to model a responder that knows nothing).
    A request for a CA the responder does not serve gets ``unauthorized`` (RFC 6960 §2.3).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        validity: timedelta = timedelta(hours=12),
        default_status: StatusName = "good",
    ) -> None:
        self.clock = clock
        self.validity = validity
        self.default_status: StatusName = default_status
        self._issuers: dict[bytes, _Issuer] = {}
        self._table: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def add_issuer(self, *, issuer: x509.Certificate, signer: SigningIdentity) -> None:
        """Answer for certificates issued by ``issuer``, signing with ``signer``.

        ``signer`` is the CA itself or a delegated responder (RFC 6960 §4.2.2.2); a
        delegated responder's certificate is included in each response.
        """
        with self._lock:
            self._issuers[_key_hash(issuer)] = _Issuer(issuer, signer)

    def set_status(
        self,
        serial: int,
        status: StatusName,
        *,
        revoked_at: datetime | None = None,
        reason: str | x509.ReasonFlags | None = None,
    ) -> None:
        """Set what the responder says about ``serial``.

        ``reason`` is an RFC 5280 CRLReason name (``"key_compromise"``) or ReasonFlags;
        "hold" always answers revoked with reason certificateHold (RFC 6960 §2.2).
        ``revoked_at`` defaults to the clock's time now.
        """
        if status not in get_args(StatusName):
            raise ValueError(f"unknown status {status!r}")
        flag = x509.ReasonFlags[reason] if isinstance(reason, str) else reason
        if status == "hold":
            flag = x509.ReasonFlags.certificate_hold
        when = revoked_at if revoked_at is not None else self.clock()
        with self._lock:
            self._table[serial] = _Entry(
                status, when if status in ("revoked", "hold") else None, flag
            )

    def clear(self) -> None:
        """Forget every status set (serials fall back to ``default_status``)."""
        with self._lock:
            self._table.clear()

    def respond(self, request_der: bytes, *, fault: str | None = None) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest, with an optional OCSP fault."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return self._unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        with self._lock:
            served = self._issuers.get(request.issuer_key_hash)
            serial = request.serial_number
            entry = self._table.get(serial, _Entry(self.default_status, self.clock(), None))
        if served is None:
            return self._unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)

        now = self.clock()
        this_update, next_update = now, now + self.validity
        if fault == "stale":
            this_update, next_update = now - 2 * self.validity, now - self.validity
        if fault == "wrong_cert_id":
            serial += 1

        cert_status = {
            "good": ocsp.OCSPCertStatus.GOOD,
            "revoked": ocsp.OCSPCertStatus.REVOKED,
            "hold": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN,
        }[entry.status]
        revoked = cert_status == ocsp.OCSPCertStatus.REVOKED
        signer = served.signer
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=serial,
                algorithm=request.hash_algorithm,
                cert_status=cert_status,
                this_update=_naive_utc(this_update),
                next_update=_naive_utc(next_update),
                revocation_time=(
                    _naive_utc(entry.revoked_at) if revoked and entry.revoked_at else None
                ),
                revocation_reason=entry.reason if revoked else None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
        )
        if _key_hash(signer.certificate) != _key_hash(served.certificate):
            # A delegated responder ships its certificate (RFC 6960 §4.2.2.2).
            builder = builder.certificates([signer.certificate])
        nonce = self._request_nonce(request)
        if nonce is not None and fault != "no_nonce":
            echoed = secrets.token_bytes(len(nonce)) if fault == "wrong_nonce" else nonce
            builder = builder.add_extension(x509.OCSPNonce(echoed), critical=False)
        response = builder.sign(signer.private_key, self._hash_for(signer.private_key))
        key = signer.private_key
        if fault == "wrong_signer":
            key = _unrelated_key(_key_kind(key))
        return _set_produced_at(response, produced_at=now, key=key)

    @staticmethod
    def _request_nonce(request: ocsp.OCSPRequest) -> bytes | None:
        try:
            return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            return None

    @staticmethod
    def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            return None
        return hashes.SHA256()

    @staticmethod
    def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
            serialization.Encoding.DER
        )


def _set_produced_at(
    response: ocsp.OCSPResponse, *, produced_at: datetime, key: CertificateIssuerPrivateKeyTypes
) -> bytes:
    """Rewrite producedAt (RFC 6960 §4.2.1) to the injected clock and sign again.

    cryptography's builder always stamps the wall-clock time, which would make responses
    under a pinned test clock look future-dated; asn1crypto lets us edit the field.
    """
    der = response.public_bytes(serialization.Encoding.DER)
    outer = asn1_ocsp.OCSPResponse.load(der)
    basic = outer["response_bytes"]["response"].parsed
    tbs = basic["tbs_response_data"]
    tbs["produced_at"] = asn1_core.GeneralizedTime(
        produced_at.astimezone(UTC).replace(microsecond=0)
    )
    tbs_der = tbs.dump(force=True)
    fields: dict[str, Any] = {
        "tbs_response_data": asn1_ocsp.ResponseData.load(tbs_der),
        "signature_algorithm": basic["signature_algorithm"],
        "signature": _sign(key, tbs_der),
    }
    if basic["certs"].native is not None:
        fields["certs"] = basic["certs"]
    new_basic = asn1_ocsp.BasicOCSPResponse(fields)
    rebuilt = asn1_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": new_basic},
        }
    )
    return bytes(rebuilt.dump(force=True))


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # Tests run many requests; stay quiet.
        return

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")


class _HttpServer(ServerWithDaemonThreads):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ResponderServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class ResponderServer(StartStopContext):
    """A real HTTP server on 127.0.0.1 serving CRLs and OCSP (see the module docstring).

    :param port: 0 picks a free port; :attr:`url` tells which.
    :param clock: the time used by OCSP responders added later (thisUpdate, producedAt).
    :param slow_seconds: how long the ``slow`` fault sleeps before answering.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] = _utcnow,
        slow_seconds: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.slow_seconds = slow_seconds
        self._crls: dict[str, tuple[bytes, str]] = {}
        self._ocsp: dict[str, OcspResponder] = {}
        self._faults: dict[str, str] = {}
        self._hits: dict[str, int] = {}
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> ResponderServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HttpServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = serve_in_thread(
            self._httpd, name=f"moica-responders-{self.port}", poll_interval=0.05
        )
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (clients then get "connection refused").

        The port is kept, so :meth:`start` serves again at the same :attr:`url`.
        """
        self._stopping.set()
        with self._lock:
            for gate in self._gates.values():
                gate.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            shut_down(httpd, self._thread, timeout=5)
        self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + _norm(path)

    # --- content --------------------------------------------------------------------

    def publish_crl(
        self, path: str, der: bytes, *, content_type: str = "application/pkix-crl"
    ) -> str:
        """Serve ``der`` at ``path`` (replacing what was there); returns the full URL."""
        with self._lock:
            self._crls[_norm(path)] = (der, content_type)
        return self.url_for(path)

    def unpublish(self, path: str) -> None:
        """Stop serving ``path`` (it then answers 404)."""
        with self._lock:
            self._crls.pop(_norm(path), None)

    def clear_crls(self) -> None:
        """Stop serving every CRL."""
        with self._lock:
            self._crls.clear()

    def add_ocsp(
        self,
        *,
        issuer: x509.Certificate,
        signer: SigningIdentity,
        path: str = "/ocsp",
        validity: timedelta = timedelta(hours=12),
        default_status: StatusName = "good",
    ) -> OcspResponder:
        """Serve OCSP for ``issuer`` at ``path``, signed by ``signer``; returns the responder.

        Several CAs may share one path (like one MOICA responder for G2 and G3); the
        responder's clock is this server's :attr:`clock` at the time of each request.
        """
        p = _norm(path)
        with self._lock:
            responder = self._ocsp.get(p)
            if responder is None:
                responder = OcspResponder(
                    clock=lambda: self.clock(), validity=validity, default_status=default_status
                )
                self._ocsp[p] = responder
        responder.add_issuer(issuer=issuer, signer=signer)
        return responder

    def ocsp(self, path: str = "/ocsp") -> OcspResponder:
        """The OCSP responder at ``path``."""
        return self._ocsp[_norm(path)]

    def set_status(
        self,
        serial: int,
        status: StatusName,
        *,
        revoked_at: datetime | None = None,
        reason: str | x509.ReasonFlags | None = None,
        path: str = "/ocsp",
    ) -> None:
        """Shortcut for ``server.ocsp(path).set_status(...)``."""
        self.ocsp(path).set_status(serial, status, revoked_at=revoked_at, reason=reason)

    # --- faults and counters --------------------------------------------------------

    def set_fault(self, path: str, fault: str | None) -> None:
        """Make ``path`` misbehave (one of :data:`FAULTS`); ``None`` heals it."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        with self._lock:
            if fault is None:
                self._faults.pop(_norm(path), None)
            else:
                self._faults[_norm(path)] = fault

    def clear_faults(self) -> None:
        """Heal every path (faults and pauses)."""
        with self._lock:
            self._faults.clear()
            gates = list(self._gates.values())
            self._gates.clear()
        for gate in gates:
            gate.set()

    def pause(self, path: str) -> None:
        """Hold requests to ``path`` (after counting them) until :meth:`resume`.

        Lets a test keep one request provably in flight, e.g. to show that concurrent
        callers wait for it instead of sending their own.
        """
        with self._lock:
            self._gates.setdefault(_norm(path), threading.Event())

    def resume(self, path: str) -> None:
        """Release the requests held by :meth:`pause`."""
        with self._lock:
            gate = self._gates.pop(_norm(path), None)
        if gate is not None:
            gate.set()

    def hits(self, path: str) -> int:
        """How many requests reached ``path`` (OCSP GETs count under the responder path)."""
        with self._lock:
            return self._hits.get(_norm(path), 0)

    def reset_hits(self) -> None:
        with self._lock:
            self._hits.clear()

    # --- request handling -----------------------------------------------------------

    def _route(self, raw_path: str) -> tuple[str, str, str]:
        """(kind, registered path, rest) for a request path; kind is crl|ocsp|none."""
        path = urllib.parse.urlsplit(raw_path).path
        with self._lock:
            if path in self._crls:
                return "crl", path, ""
            for base in self._ocsp:
                if path == base or path.startswith(base.rstrip("/") + "/"):
                    return "ocsp", base, path[len(base.rstrip("/")) + 1 :]
        return "none", path, ""

    def _handle(self, handler: _Handler, method: str) -> None:
        kind, path, rest = self._route(handler.path)
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            fault = self._faults.get(path)
            gate = self._gates.get(path)
        body_in = b""
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            if length > _MAX_REQUEST_BYTES:
                self._send(handler, 413, b"", "text/plain")
                return
            body_in = handler.rfile.read(length)

        while gate is not None and not gate.wait(0.05):
            if self._stopping.is_set():
                handler.close_connection = True
                return
        if fault == "down":
            handler.close_connection = True
            return
        if fault == "slow" and self._stopping.wait(self.slow_seconds):
            handler.close_connection = True
            return
        if fault == "http500":
            self._send(handler, 500, b"", "text/plain")
            return
        if fault == "garbage":
            self._send(handler, 200, b"this is not DER \x00\xff" * 8, _content_type(kind))
            return

        if kind == "crl" and method == "GET":
            with self._lock:
                body, ctype = self._crls[path]
        elif kind == "ocsp":
            request_der = body_in if method == "POST" else _decode_get(rest)
            if request_der is None:
                self._send(handler, 400, b"", "text/plain")
                return
            body = self._ocsp[path].respond(request_der, fault=fault)
            ctype = "application/ocsp-response"
        else:
            self._send(handler, 404, b"", "text/plain")
            return

        if fault == "truncate":
            handler.send_response(200)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body) + 1024))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        self._send(handler, 200, body, ctype)

    @staticmethod
    def _send(handler: _Handler, code: int, body: bytes, ctype: str) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _content_type(kind: str) -> str:
    return "application/ocsp-response" if kind == "ocsp" else "application/pkix-crl"


def _decode_get(rest: str) -> bytes | None:
    """RFC 6960 App. A.1: GET {url}/{url-encoding of base-64 encoding of the DER request}."""
    try:
        return base64.b64decode(urllib.parse.unquote(rest), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- demo -------------------------------------------------------------------------------


def demo_crls(
    pki: TestPKI, *, now: datetime, validity: timedelta = timedelta(days=1)
) -> dict[str, bytes]:
    """Empty, current CRLs at the paths ``pki``'s certificates name: for MOICA G2 and G3 the
    ``10-31`` partition (with its critical IssuingDistributionPoint) and the complete CRL,
    and the GRCA G2/G3 CRLs that cover the MOICA CAs. Returns ``{path: DER}``.
    """
    out: dict[str, bytes] = {}
    this_update = now.astimezone(UTC).replace(microsecond=0)
    number = int(this_update.strftime("%Y%m%d%H"))  # MOICA-style YYYYMMDDHH
    for generation in ("G2", "G3"):
        moica = pki.moica(generation)
        partition, complete = pki.default_crl_urls(generation)
        for url, scope in ((partition, partition), (complete, None)):
            crl = pki.make_crl(
                issuer=moica,
                number=number,
                this_update=this_update,
                next_update=this_update + validity,
                scope_url=scope,
            )
            out[urllib.parse.urlsplit(url).path] = crl.public_bytes(serialization.Encoding.DER)
        root = pki.root(generation)
        grca = pki.make_crl(
            issuer=root, number=number, this_update=this_update, next_update=this_update + validity
        )
        out[urllib.parse.urlsplit(f"{pki.grca_crl_base_url}/GRCA-{generation}.crl").path] = (
            grca.public_bytes(serialization.Encoding.DER)
        )
    return out


def serve_demo(
    pki: TestPKI,
    *,
    port: int = 8765,
    host: str = "127.0.0.1",
    crls: Mapping[str, bytes] | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> ResponderServer:
    """Start a responder for a test PKI and return it (call ``stop()`` when done).

    OCSP at ``/ocsp`` for MOICA G2 and G3 (signed by each CA itself) and for the GRCA
    roots (the MOICA G3 CA names the same responder), every serial "good" until you say
    otherwise; CRLs from ``crls`` (``{path: DER}``), by default :func:`demo_crls`.
    """
    server = ResponderServer(host=host, port=port, clock=clock)
    for ca in (pki.moica_g2, pki.moica_g3, pki.grca_g2, pki.grca_g3):
        server.add_ocsp(issuer=ca.certificate, signer=ca, path="/ocsp")
    for path, der in (crls if crls is not None else demo_crls(pki, now=clock())).items():
        server.publish_crl(path, der)
    return server.start()


def main(argv: list[str] | None = None) -> int:
    """``python -m moica_auth.testing.responders --pki-seed moica-auth-test --port 8765``.

    Builds ``TestPKI(seed=…, now=<wall clock>)`` with its URLs on this port and serves it
    with :func:`serve_demo` until interrupted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pki-seed", default="moica-auth-test")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    test_pki = TestPKI(
        seed=args.pki_seed, now=_utcnow(), crl_base_url=f"{base}/crl", ocsp_url=f"{base}/ocsp"
    )
    server = serve_demo(test_pki, port=args.port)
    print(f"OCSP responder at {server.url_for('/ocsp')}, CRLs under {base}/crl; Ctrl-C to stop")
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
