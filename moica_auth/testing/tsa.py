"""A local RFC 3161 time-stamp authority over HTTP (TEST USE ONLY; public test keys).

:func:`tsa_identities` issues, from a :class:`~moica_auth.testing.pki.TestPKI`'s seed, a
test TSA root and a TSA certificate under it (extendedKeyUsage **critical**, only
id-kp-timeStamping, RFC 3161 §2.3), plus an *untrusted* TSA (same profile, another root)
for refusal tests, and a TSA *under an intermediate CA* of the trusted root
(``intermediate`` → ``deep_tsa``) for chains deeper than one CA. :class:`TsaServer`
answers ``POST /`` (``application/timestamp-query``) with a TimeStampResp whose token
is a CMS SignedData over a TSTInfo, with the contentType, messageDigest and ESS
signingCertificateV2 signed attributes (RFC 3161 §2.4.2, RFC 5816).

Fault modes (``server.fault = …``):

* ``"down"``: HTTP 503, no token;
* ``"wrong_imprint"``: a valid token over another imprint;
* ``"untrusted"``: a valid token signed by the untrusted TSA;
* ``"rejection"``: a TimeStampResp with status rejection.

``TsaServer(…, deep=True)`` signs with ``deep_tsa`` and carries its intermediate in the
token (``carry_intermediate=False`` leaves it out, as a TSA that omits it would).
:func:`tsa_under` issues further TSA certificates (without the timeStamping EKU, under
another issuer, …) for refusal tests.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from moica_auth.signing.timestamp import TimeStampResp
from moica_auth.testing.httpserver import (
    ServerWithDaemonThreads,
    StartStopContext,
    serve_in_thread,
    shut_down,
)
from moica_auth.testing.pki import CertifiedKey, TestPKI

__all__ = [
    "FAULTS",
    "TEST_TSA_POLICY",
    "TsaIdentities",
    "TsaServer",
    "sign_timestamp",
    "tsa_ca",
    "tsa_identities",
    "tsa_under",
]

TEST_TSA_POLICY: Final = "1.3.6.1.4.1.99999.3161.1"
FAULTS: Final = frozenset({"down", "wrong_imprint", "untrusted", "rejection"})
_MAX_REQUEST: Final = 8192


@dataclass(frozen=True)
class TsaIdentities:
    root: CertifiedKey
    tsa: CertifiedKey
    untrusted_root: CertifiedKey
    untrusted_tsa: CertifiedKey
    #: A CA under ``root`` and a TSA under it: a two-level TSA chain.
    intermediate: CertifiedKey
    deep_tsa: CertifiedKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "moica-auth TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def tsa_ca(
    pki: TestPKI,
    label: str,
    cn: str,
    *,
    issuer: CertifiedKey | None = None,
    path_length: int | None = 0,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A TSA CA: self-signed (``issuer=None``) or issued by ``issuer``."""
    key = pki.key(f"tsa/{label}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(pki.serial(f"tsa/{label}"))
        .not_valid_before(pki.now - timedelta(days=365))
        .not_valid_after(not_after or pki.now + timedelta(days=20 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    cert = builder.sign(issuer.private_key if issuer else key, hashes.SHA256())
    return CertifiedKey(cert, key)


def _root(pki: TestPKI, label: str, cn: str) -> CertifiedKey:
    # pathLen 1: the root certifies TSAs directly and through one intermediate CA.
    return tsa_ca(pki, label, cn, path_length=1)


def tsa_under(
    pki: TestPKI,
    issuer: CertifiedKey,
    label: str,
    cn: str = "moica-auth TEST TSA",
    *,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.TIME_STAMPING,),
    eku_critical: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    crl_url: str | None = None,
) -> CertifiedKey:
    """A TSA certificate issued by ``issuer``; ``eku=None`` leaves extendedKeyUsage out;
    ``crl_url`` names a CRL distribution point."""
    key = pki.key(f"tsa/{label}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(pki.serial(f"tsa/{label}"))
        .not_valid_before(not_before or pki.now - timedelta(days=30))
        .not_valid_after(not_after or pki.now + timedelta(days=10 * 365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    cert = builder.sign(issuer.private_key, hashes.SHA256())
    return CertifiedKey(cert, key)


def _tsa(
    pki: TestPKI, root: CertifiedKey, label: str, cn: str, *, eku_critical: bool
) -> CertifiedKey:
    return tsa_under(pki, root, label, cn, eku_critical=eku_critical)


def tsa_identities(pki: TestPKI) -> TsaIdentities:
    """The test TSA (trusted through ``root``) and an untrusted one, from ``pki``'s seed."""
    root = _root(pki, "root", "moica-auth TEST TSA Root")
    other = _root(pki, "untrusted-root", "moica-auth TEST Untrusted TSA Root")
    intermediate = tsa_ca(pki, "intermediate", "moica-auth TEST TSA CA", issuer=root, path_length=0)
    return TsaIdentities(
        root=root,
        tsa=_tsa(pki, root, "tsa", "moica-auth TEST TSA", eku_critical=True),
        untrusted_root=other,
        untrusted_tsa=_tsa(pki, other, "untrusted-tsa", "moica-auth TEST TSA", eku_critical=True),
        intermediate=intermediate,
        deep_tsa=tsa_under(pki, intermediate, "deep-tsa", "moica-auth TEST Deep TSA"),
    )


def sign_timestamp(
    *,
    imprint: bytes,
    signer: CertifiedKey,
    gen_time: datetime,
    serial: int,
    nonce: int | None = None,
    policy: str = TEST_TSA_POLICY,
    extra_certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """A DER TimeStampToken (ContentInfo) over the SHA-256 ``imprint``, signed by ``signer``
    and carrying its certificate followed by ``extra_certificates`` (e.g. its CA)."""
    tst_fields: dict[str, Any] = {
        "version": "v1",
        "policy": policy,
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": imprint},
        "serial_number": serial,
        "gen_time": gen_time.astimezone(UTC).replace(microsecond=0),
    }
    if nonce is not None:
        tst_fields["nonce"] = nonce
    tst_der = tsp.TSTInfo(tst_fields).dump()
    cert_der = signer.certificate.public_bytes(serialization.Encoding.DER)
    asn1_cert = asn1_x509.Certificate.load(cert_der)
    ess = tsp.SigningCertificateV2({"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]})
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}
            ),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
        ]
    )
    signature = signer.private_key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": asn1_cert.issuer,
                        "serial_number": asn1_cert.serial_number,
                    }
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_der),
            },
            "certificates": [
                asn1_cert,
                *(
                    asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                    for c in extra_certificates
                ),
            ],
            "signer_infos": [signer_info],
        }
    )
    token: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return token


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.owner.handle(self)


class _HttpServer(ServerWithDaemonThreads):
    def __init__(self, address: tuple[str, int], owner: TsaServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner


class TsaServer(StartStopContext):
    """An RFC 3161 TSA on ``http://127.0.0.1:<port>/`` (port 0 picks a free port).

    ``clock`` gives genTime (default: now, UTC). ``deep=True`` signs with the TSA under
    the intermediate CA, carrying that CA in the token unless ``carry_intermediate`` is
    False; ``signer`` (with ``extra_certificates``) overrides the signer altogether.
    """

    def __init__(
        self,
        identities: TsaIdentities,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Any = None,
        deep: bool = False,
        carry_intermediate: bool = True,
        signer: CertifiedKey | None = None,
        extra_certificates: Sequence[x509.Certificate] = (),
    ) -> None:
        self.identities = identities
        self.deep = deep
        self.carry_intermediate = carry_intermediate
        self.signer = signer
        self.extra_certificates = tuple(extra_certificates)
        self.host = host
        self.port = port
        self.clock = clock or (lambda: datetime.now(UTC))
        self.fault: str | None = None
        self.hits = 0
        self._serial = 0
        self._lock = threading.Lock()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TsaServer:
        self._httpd = _HttpServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = serve_in_thread(self._httpd, name="moica-test-tsa", poll_interval=0.05)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            shut_down(self._httpd, self._thread, timeout=5)
            self._httpd = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def respond(self, request_der: bytes) -> bytes:
        """The DER TimeStampResp for one TimeStampReq, honouring :attr:`fault`."""
        request = tsp.TimeStampReq.load(request_der, strict=True)
        if self.fault == "rejection":
            refusal: bytes = TimeStampResp({"status": {"status": "rejection"}}).dump()
            return refusal
        imprint = request["message_imprint"]["hashed_message"].native
        if self.fault == "wrong_imprint":
            imprint = hashlib.sha256(b"another imprint" + imprint).digest()
        extra: tuple[x509.Certificate, ...] = ()
        if self.fault == "untrusted":
            signer = self.identities.untrusted_tsa
        elif self.signer is not None:
            signer, extra = self.signer, self.extra_certificates
        elif self.deep:
            signer = self.identities.deep_tsa
            if self.carry_intermediate:
                extra = (self.identities.intermediate.certificate,)
        else:
            signer = self.identities.tsa
        with self._lock:
            self._serial += 1
            serial = self._serial
        token = sign_timestamp(
            imprint=imprint,
            signer=signer,
            gen_time=self.clock(),
            serial=serial,
            nonce=request["nonce"].native,
            extra_certificates=extra,
        )
        answer: bytes = TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        ).dump()
        return answer

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        self.hits += 1
        if self.fault == "down":
            self._send(handler, 503, b"down", "text/plain")
            return
        length = int(handler.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_REQUEST:
            self._send(handler, 400, b"bad length", "text/plain")
            return
        body = handler.rfile.read(length)
        try:
            answer = self.respond(body)
        except ValueError:
            self._send(handler, 400, b"bad request", "text/plain")
            return
        self._send(handler, 200, answer, "application/timestamp-reply")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
