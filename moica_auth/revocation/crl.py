"""CRL download, verification and indexing (RFC 5280 §5, §6.3).

The flow is: a :class:`CrlFetcher` downloads the DER; :func:`parse_crl` verifies it once
and turns ``revokedCertificates`` into a dict ``serial -> packed entry``; an index store
(:mod:`moica_auth.revocation.store`) keeps the last good generation per
(issuer key, scope); :class:`CrlSource` answers logins from that index only.

MOICA's complete CRL is about 20 MB with about 412k entries, so nothing here parses a
CRL on the login path. :func:`parse_crl` walks ``revokedCertificates`` with a small
DER reader written for that one structure (``_index_entries``) instead of building a
``cryptography`` ``RevokedCertificate`` object and its extensions per entry. Measured on
412k entries: reading serial, date and extensions through ``cryptography`` took about
0.8 s before any indexing, while the whole reader takes about 0.4 s. It allocates two
objects per entry (the serial and the packed value) where ``cryptography`` allocates
several.

Deliberate refusals (fail closed, each raises :class:`~moica_auth.exceptions.CrlInvalid`):

* delta CRLs (``deltaCRLIndicator``, RFC 5280 §5.2.4): MOICA publishes none, and a
  delta is only meaningful merged with its base; we only ever install complete CRLs
  (a partition is a complete CRL for its scope);
* indirect CRLs (``indirectCRL`` in IssuingDistributionPoint, or a
  ``certificateIssuer`` entry extension, §5.2.5, §5.3.3);
* ``onlySomeReasons`` and ``onlyContainsAttributeCerts`` partitions (§5.2.5): such a
  CRL cannot say "good" for all reasons;
* any unknown critical CRL extension or CRL-entry extension (§5.2, §5.3).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import requests
import requests.adapters
import urllib3
import urllib3.connection
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    padding,
    rsa,
)
from cryptography.x509.oid import ExtensionOID

from moica_auth.exceptions import (
    CrlInvalid,
    MoicaAuthError,
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.types import CertStatus, SourceName

if TYPE_CHECKING:
    from moica_auth.revocation.store import CrlInfo, RevocationIndexStore

__all__ = [
    "COMPLETE_SCOPE",
    "DEFAULT_CRL_HASHES",
    "CrlFetcher",
    "CrlSource",
    "FetchResult",
    "HttpCrlFetcher",
    "ParsedCrl",
    "RevokedEntry",
    "certificate_crl_urls",
    "certificate_scope_names",
    "decode_entry",
    "key_id",
    "parse_crl",
    "scope_covers",
    "scope_key",
]

logger = logging.getLogger(__name__)

#: The scope key of a CRL without an IssuingDistributionPoint: it covers every
#: certificate of its issuer (RFC 5280 §5.2.5, §6.3.3 (b)).
COMPLETE_SCOPE = ""

DEFAULT_SKEW = timedelta(minutes=5)

# RFC 5280 §5.3.1 CRLReason codes; 7 is unassigned.
_REASONS: dict[int, str] = {
    0: "unspecified",
    1: "key_compromise",
    2: "ca_compromise",
    3: "affiliation_changed",
    4: "superseded",
    5: "cessation_of_operation",
    6: "certificate_hold",
    8: "remove_from_crl",
    9: "privilege_withdrawn",
    10: "aa_compromise",
}
_NO_REASON = 0xFF
_VALID_REASON = bytes(1 if code in _REASONS else 0 for code in range(256))
_HOLD = 6
_REMOVE_FROM_CRL = 8

_OID_REASON = bytes.fromhex("551d15")  # 2.5.29.21 reasonCode
_OID_INVALIDITY = bytes.fromhex("551d18")  # 2.5.29.24 invalidityDate
_OID_CERT_ISSUER = bytes.fromhex("551d1d")  # 2.5.29.29 certificateIssuer
# The usual single-extension entry: Extensions { Extension { reasonCode, OCTET STRING
# { ENUMERATED x } } }; matched as bytes so the common case costs one comparison.
_REASON_ONLY_PREFIX = bytes.fromhex("300c300a0603551d1504030a01")

_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.FRESHEST_CRL,
    }
)


# --- entries --------------------------------------------------------------------------


@dataclass(frozen=True)
class RevokedEntry:
    """One ``revokedCertificates`` entry (RFC 5280 §5.1.2.6, §5.3.1)."""

    revoked_at: datetime
    reason: str | None  # CRLReason name as in x509.ReasonFlags, e.g. "key_compromise"

    @property
    def is_hold(self) -> bool:
        """certificateHold: suspended (停用), may be lifted by a later CRL."""
        return self.reason == "certificate_hold"


def decode_entry(packed: bytes) -> RevokedEntry:
    """Decode a packed index value: revocationDate content (13 bytes UTCTime or 15
    GeneralizedTime) followed by the entry's raw crlEntryExtensions, if any.

    Packing keeps the index small (one ``bytes`` per entry, sliced straight from the
    DER); the date and reason are decoded only for a certificate that is on the CRL.
    """
    size = 13 if packed[12:13] == b"Z" else 15
    raw, extensions = packed[:size], packed[size:]
    try:
        text = raw.decode("ascii")
        if size == 13:
            # RFC 5280 §4.1.2.5.1: UTCTime YY >= 50 means 19YY.
            year = int(text[:2])
            year += 1900 if year >= 50 else 2000
            stamp = datetime.strptime(f"{year:04d}{text[2:12]}Z", "%Y%m%d%H%M%S%z")
        else:
            stamp = datetime.strptime(f"{text[:14]}Z", "%Y%m%d%H%M%S%z")
    except ValueError as exc:
        raise CrlInvalid("unreadable revocationDate in CRL entry") from exc
    code = _entry_extensions(extensions, 0, len(extensions)) if extensions else _NO_REASON
    reason = None if code == _NO_REASON else _REASONS.get(code)
    return RevokedEntry(revoked_at=stamp.astimezone(UTC), reason=reason)


# --- the DER reader -------------------------------------------------------------------


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one DER TLV header at ``pos``: (tag, content start, content end).

    Only definite lengths (X.690 §10.1, DER); anything running past ``end`` is a
    truncated or corrupt CRL.
    """
    if pos + 2 > end:
        raise CrlInvalid("truncated CRL")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise CrlInvalid("unexpected high tag number in CRL")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise CrlInvalid("bad length in CRL")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise CrlInvalid("truncated CRL")
    return tag, pos, pos + length


@dataclass(frozen=True)
class _Layout:
    tbs: memoryview  # a view, not a copy: tbsCertList is most of a 20 MB CRL
    tbs_algorithm: bytes
    outer_algorithm: bytes
    revoked_start: int  # offsets of revokedCertificates' content in the whole DER
    revoked_end: int


def _layout(der: bytes) -> _Layout:
    """Locate tbsCertList and revokedCertificates (RFC 5280 §5.1)."""
    tag, start, end = _header(der, 0, len(der))
    if tag != 0x30 or end != len(der):
        raise CrlInvalid("CRL is truncated or has trailing data")
    tag, tbs_start, tbs_end = _header(der, start, end)
    if tag != 0x30:
        raise CrlInvalid("CRL tbsCertList is not a SEQUENCE")
    tbs_tlv_start = start
    _, _, alg_end = _header(der, tbs_end, end)
    outer_algorithm = der[tbs_end:alg_end]

    pos = tbs_start
    tag, _, nxt = _header(der, pos, tbs_end)
    if tag == 0x02:  # version
        pos = nxt
        tag, _, nxt = _header(der, pos, tbs_end)
    tbs_algorithm = der[pos:nxt]
    pos = nxt
    for _expected in ("issuer", "thisUpdate"):
        _, _, pos = _header(der, pos, tbs_end)
    revoked_start = revoked_end = pos
    if pos < tbs_end:
        tag, _, nxt = _header(der, pos, tbs_end)
        if tag in (0x17, 0x18):  # nextUpdate
            pos = nxt
    if pos < tbs_end:
        tag, content_start, nxt = _header(der, pos, tbs_end)
        if tag == 0x30:
            revoked_start, revoked_end = content_start, nxt
    return _Layout(
        tbs=memoryview(der)[tbs_tlv_start:tbs_end],
        tbs_algorithm=tbs_algorithm,
        outer_algorithm=outer_algorithm,
        revoked_start=revoked_start,
        revoked_end=revoked_end,
    )


def _entry_extensions(buf: bytes, pos: int, end: int) -> int:
    """Walk one entry's crlEntryExtensions; return the reason code (RFC 5280 §5.3)."""
    reason = _NO_REASON
    tag, pos, ext_end = _header(buf, pos, end)
    if tag != 0x30 or ext_end != end:
        raise CrlInvalid("malformed crlEntryExtensions")
    seen: set[bytes] = set()
    while pos < ext_end:
        tag, ext_start, ext_stop = _header(buf, pos, ext_end)
        if tag != 0x30:
            raise CrlInvalid("malformed CRL entry extension")
        tag, oid_start, oid_end = _header(buf, ext_start, ext_stop)
        if tag != 0x06:
            raise CrlInvalid("malformed CRL entry extension")
        oid = buf[oid_start:oid_end]
        if oid in seen:
            raise CrlInvalid("duplicate CRL entry extension")
        seen.add(oid)
        critical = False
        tag, vstart, vend = _header(buf, oid_end, ext_stop)
        if tag == 0x01:
            if vend != vstart + 1:
                raise CrlInvalid("malformed critical flag in CRL entry extension")
            critical = buf[vstart] != 0
            tag, vstart, vend = _header(buf, vend, ext_stop)
        if tag != 0x04 or vend != ext_stop:
            raise CrlInvalid("malformed CRL entry extension")
        if oid == _OID_REASON:
            tag, rstart, rend = _header(buf, vstart, vend)
            if tag != 0x0A or rend != vend or rend - rstart != 1 or buf[rstart] not in _REASONS:
                raise CrlInvalid("malformed CRLReason in CRL entry")
            reason = buf[rstart]
        elif oid == _OID_CERT_ISSUER:
            raise CrlInvalid("indirect CRL (certificateIssuer entry extension) is not supported")
        elif oid == _OID_INVALIDITY:
            # Informational only (RFC 5280 §5.3.2), but it must still be what it claims
            # to be: a Zulu GeneralizedTime. cryptography would refuse it when read.
            tag, dstart, dend = _header(buf, vstart, vend)
            if tag != 0x18 or dend != vend or dend - dstart != 15 or buf[dend - 1] != 0x5A:
                raise CrlInvalid("malformed invalidityDate in CRL entry")
        elif critical:
            raise CrlInvalid("unknown critical CRL entry extension")
        pos = ext_stop
    return reason


def _index_entries(der: bytes, start: int, end: int) -> dict[int, bytes]:
    """Index revokedCertificates: serial -> packed entry (see :func:`decode_entry`).

    Hot loop for ~400k entries; see the module docstring for why it is hand-written.
    The packed value is one slice of the DER (revocationDate content + the raw
    crlEntryExtensions), so an entry costs two allocations: the serial and the slice.
    Every entry is still fully checked here (structure, Zulu time, reason code, no
    unknown critical extension): a CRL with one bad entry is refused as a whole
    (RFC 5280 §5.3). removeFromCRL entries (§5.3.1, meaningful only in delta CRLs)
    mean "no longer revoked", so they are not indexed.
    """
    entries: dict[int, bytes] = {}
    from_bytes = int.from_bytes
    startswith = der.startswith
    prefix = _REASON_ONLY_PREFIX
    fast_len = len(prefix) + 1
    valid = _VALID_REASON
    count = 0
    pos = start
    while pos < end:
        length = der[pos + 1]
        if der[pos] != 0x30 or length >= 0x80:
            if der[pos] != 0x30:
                raise CrlInvalid("malformed revokedCertificates entry")
            _, s, e = _header(der, pos, end)
        else:
            s = pos + 2
            e = s + length
        slen = der[s + 1]
        p = s + 2 + slen
        if der[s] != 0x02 or not 0 < slen < 0x80 or p + 2 > e or e > end:
            raise CrlInvalid("malformed CRL entry")
        tag = der[p]
        tlen = der[p + 1]
        q = p + 2 + tlen
        if (
            q > e
            or der[q - 1] != 0x5A  # RFC 5280 §5.1.2.6: Zulu time
            or not ((tag == 0x17 and tlen == 13) or (tag == 0x18 and tlen == 15))
        ):
            raise CrlInvalid("malformed revocationDate in CRL entry")
        if q == e:
            reason = _NO_REASON
        elif e - q == fast_len and startswith(prefix, q):
            reason = der[e - 1]
            if not valid[reason]:
                raise CrlInvalid("malformed CRLReason in CRL entry")
        else:
            reason = _entry_extensions(der, q, e)
        if reason != _REMOVE_FROM_CRL:
            count += 1
            entries[from_bytes(der[s + 2 : p], "big", signed=True)] = der[p + 2 : e]
        pos = e
    if pos != end:
        raise CrlInvalid("truncated CRL")
    if count != len(entries):
        # Two entries for one serial: which one is meant is unknowable, so refuse.
        raise CrlInvalid("duplicate serial numbers in CRL")
    return entries


# --- keys and names -------------------------------------------------------------------


def key_id(certificate: x509.Certificate) -> str:
    """The issuer key id used to key the index: SHA-1 of subjectPublicKey, upper hex.

    RFC 5280 §4.2.1.2 method (1). Computed from the key itself, never read from the
    SKI extension, so two CAs with the same DN (MOICA G2 and G3) never share an index.
    """
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex().upper()


def declared_key_ids(certificate: x509.Certificate) -> set[bytes]:
    """Every key id ``certificate`` answers to: the SHA-1 of its key (RFC 5280 §4.2.1.2
    method (1)) and the value of its SKI extension, when it has one."""
    ids = {x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest}
    with contextlib.suppress(x509.ExtensionNotFound):
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        ids.add(ski.value.digest)
    return ids


def _general_name_key(name: x509.GeneralName) -> str:
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"uri:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"dn:{name.value.rfc4514_string()}"
    return f"other:{name!r}"


def _dp_names(
    full_name: Sequence[x509.GeneralName] | None,
    relative_name: x509.RelativeDistinguishedName | None,
    crl_issuer: x509.Name,
) -> tuple[str, ...]:
    if full_name:
        return tuple(sorted({_general_name_key(n) for n in full_name}))
    if relative_name is not None:
        # RFC 5280 §4.2.1.13: nameRelativeToCRLIssuer is appended to the CRL issuer DN.
        full = x509.Name([*crl_issuer.rdns, relative_name])
        return (f"dn:{full.rfc4514_string()}",)
    return ()


def certificate_scope_names(certificate: x509.Certificate) -> frozenset[str]:
    """The distribution point names a certificate's cRLDistributionPoints list.

    Distribution points with a ``cRLIssuer`` (indirect CRLs) are skipped: we refuse
    indirect CRLs, so such a point can never be covered.
    """
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return frozenset()
    names: set[str] = set()
    for point in points:
        if point.crl_issuer:
            continue
        names.update(_dp_names(point.full_name, point.relative_name, certificate.issuer))
    return frozenset(names)


def certificate_crl_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    """http(s) URLs from cRLDistributionPoints, in the certificate's order."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return tuple(urls)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def scope_covers(
    *,
    scope_names: Sequence[str],
    only_user_certs: bool,
    only_ca_certs: bool,
    certificate: x509.Certificate,
) -> bool:
    """Whether a CRL's scope covers ``certificate`` (RFC 5280 §6.3.3 (b)(2)).

    A partition CRL (IDP with a distributionPoint) speaks only for certificates whose
    cRLDistributionPoints name one of its names; a serial missing from partition X
    says nothing about a certificate of partition Y.
    """
    if only_user_certs and _is_ca(certificate):
        return False
    if only_ca_certs and not _is_ca(certificate):
        return False
    if scope_names:
        return bool(certificate_scope_names(certificate).intersection(scope_names))
    return True


def _escape_scope_name(name: str) -> str:
    # "|" separates names and "#" starts the flag: escape both (and "%" itself) so that
    # two different scopes never share a key. Ordinary URLs contain none of them and
    # keep their plain key.
    return name.replace("%", "%25").replace("|", "%7C").replace("#", "%23")


def scope_key(names: Sequence[str], only_user_certs: bool, only_ca_certs: bool) -> str:
    """The index key of a scope: its distribution point names plus the cert-kind flag."""
    flag = "#user" if only_user_certs else "#ca" if only_ca_certs else ""
    return "|".join(_escape_scope_name(n) for n in names) + flag


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCrl:
    """A verified CRL, indexed and ready to install (RFC 5280 §5, §6.3.3).

    ``entries`` maps serial -> packed value (see :func:`decode_entry`). It is shared,
    never copied: treat it as read-only.
    """

    issuer_key_id: str  # key id of the CA whose certificates the CRL covers
    signer_key_id: str  # key id that signed the CRL (the CA, or a separate CRL signer)
    issuer_name: str  # RFC 4514
    number: int
    this_update: datetime
    next_update: datetime
    scope: str  # index key, COMPLETE_SCOPE for a CRL without IDP
    scope_names: tuple[str, ...]
    only_user_certs: bool
    only_ca_certs: bool
    entries: Mapping[int, bytes] = field(repr=False)
    size: int = 0  # DER bytes
    sha256: str = ""
    url: str | None = None


def _to_der(data: bytes) -> bytes:
    if data.lstrip()[:10] == b"-----BEGIN":
        if data.count(b"-----BEGIN") != 1:
            raise CrlInvalid("a PEM CRL file must hold exactly one CRL")
        try:
            return x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CrlInvalid("unreadable PEM CRL") from exc
    return data


#: Hashes a CRL signature may use by default. SHA-1 and MD5 are refused, as they are for
#: the login signature (docs/security.md); EdDSA signs without a separate hash.
DEFAULT_CRL_HASHES = frozenset({"sha256", "sha384", "sha512"})


def _signature_algorithm(
    crl: x509.CertificateRevocationList,
) -> tuple[object, hashes.HashAlgorithm | None]:
    """(padding / ECDSA parameters, hash) of the CRL's signatureAlgorithm.

    An OID or parameters ``cryptography`` does not know raise ``UnsupportedAlgorithm``
    or ``ValueError``, which are not :class:`CrlInvalid`; translate them here so that a
    refresher records ``crl_invalid`` instead of crashing.
    """
    try:
        params = crl.signature_algorithm_parameters
        algorithm = crl.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise CrlInvalid("the CRL signature algorithm is not supported") from exc
    return params, algorithm


def _check_hash(crl: x509.CertificateRevocationList, allowed_hashes: frozenset[str]) -> None:
    _, algorithm = _signature_algorithm(crl)
    if algorithm is not None and algorithm.name not in allowed_hashes:
        raise CrlInvalid(f"the CRL is signed with {algorithm.name}, which is not accepted")


def _verify(public_key: object, crl: x509.CertificateRevocationList, tbs: memoryview) -> bool:
    """Verify the CRL signature over the raw tbsCertList bytes as received.

    ``crl.is_signature_valid`` re-encodes tbsCertList before verifying (measured: it
    costs as much as the whole index walk on a 20 MB CRL); we already hold the exact
    bytes that were signed, so verify those.
    """
    # cryptography accepts any bytes-like object (documented "bytes-like"); the RSA stub
    # says bytes. A view avoids copying ~20 MB.
    data = cast(bytes, tbs)
    signature = crl.signature
    params, algorithm = _signature_algorithm(crl)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PSS | padding.PKCS1v15) or algorithm is None:
                return False
            public_key.verify(signature, data, params, algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            public_key.verify(signature, data, params)
        elif isinstance(public_key, dsa.DSAPublicKey):
            if not isinstance(algorithm, hashes.HashAlgorithm):
                return False
            public_key.verify(signature, data, algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _may_sign_crls(certificate: x509.Certificate) -> bool:
    # RFC 5280 §6.3.3 (f): the CRL issuer's keyUsage, when present, must assert cRLSign.
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.crl_sign


def _select_issuer(
    crl: x509.CertificateRevocationList,
    tbs: memoryview,
    issuers: Sequence[x509.Certificate],
    signers: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, x509.Certificate]:
    """Pick (covered CA, signing certificate) for a CRL (RFC 5280 §6.3.3 (f)).

    The signer is chosen by name, then AuthorityKeyIdentifier, then signature — never
    by name alone, since MOICA G2 and G3 share a DN. A separate CRL-signing
    certificate (``signers``, validated by the caller to the same trust anchor) covers
    the CA with the same DN issued by the same parent key.
    """
    try:
        found = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        aki = found.value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    named = [c for c in (*issuers, *signers) if c.subject == crl.issuer]
    if not named:
        raise CrlInvalid("no known CA has the CRL issuer name")
    if aki is not None:
        named = [c for c in named if aki in declared_key_ids(c)]
        if not named:
            raise CrlInvalid("CRL authorityKeyIdentifier matches no known CA key")
    signer = next((c for c in named if _verify(c.public_key(), crl, tbs)), None)
    if signer is None:
        raise CrlInvalid("CRL signature could not be verified")
    if not _may_sign_crls(signer):
        raise CrlInvalid("the CRL issuer is not allowed to sign CRLs (keyUsage lacks cRLSign)")
    if any(signer is c for c in issuers):
        return signer, signer
    covered = [
        c
        for c in issuers
        if c.subject == signer.subject
        and c.issuer == signer.issuer
        and _authority_key(c) == _authority_key(signer)
    ]
    if len(covered) != 1:
        raise CrlInvalid("cannot tell which CA a separately signed CRL speaks for")
    return covered[0], signer


def _authority_key(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def parse_crl(
    data: bytes,
    *,
    issuers: Sequence[x509.Certificate],
    at: datetime | None = None,
    signers: Sequence[x509.Certificate] = (),
    skew: timedelta = DEFAULT_SKEW,
    url: str | None = None,
    allowed_hashes: frozenset[str] = DEFAULT_CRL_HASHES,
) -> ParsedCrl:
    """Verify a CRL and index its entries (RFC 5280 §5, §6.3.3).

    Checks, each raising :class:`CrlInvalid`: complete DER (truncation and trailing
    bytes refused), the same signature algorithm inside and outside tbsCertList
    (§5.1.1.2), issuer chosen by DN + AKI and proven by signature, cRLSign, thisUpdate
    not in the future beyond ``skew``, nextUpdate present (§5.1.2.5), a CRL number
    (§5.2.3), no delta/indirect/onlySomeReasons, no unknown critical extension on the
    CRL or any entry (§5.2, §5.3), a signature hash in ``allowed_hashes`` (SHA-1 and MD5
    are refused unless a caller opts in explicitly). Staleness (``at`` past nextUpdate)
    is not an error here: the source reports it, and a stale CRL still beats none for
    "revoked".
    """
    at = at or datetime.now(UTC)
    der = _to_der(data)
    layout = _layout(der)
    if layout.tbs_algorithm != layout.outer_algorithm:
        raise CrlInvalid("signatureAlgorithm differs from tbsCertList signature")
    try:
        crl = x509.load_der_x509_crl(der)
        # cryptography decodes these lazily: read each once here, where a ValueError
        # (e.g. a malformed issuer name) becomes crl_invalid, never a crash.
        extensions = crl.extensions
        issuer_name = crl.issuer.rfc4514_string()
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise CrlInvalid("the CRL could not be parsed") from exc

    number: int | None = None
    idp: x509.IssuingDistributionPoint | None = None
    for ext in extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise CrlInvalid("delta CRLs are not supported")
        if ext.oid == ExtensionOID.CRL_NUMBER and isinstance(ext.value, x509.CRLNumber):
            number = ext.value.crl_number
        elif ext.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT and isinstance(
            ext.value, x509.IssuingDistributionPoint
        ):
            idp = ext.value
        elif ext.oid not in _KNOWN_CRL_EXTENSIONS and ext.critical:
            raise CrlInvalid(f"unknown critical CRL extension {ext.oid.dotted_string}")

    _check_hash(crl, allowed_hashes)
    ca, signer = _select_issuer(crl, layout.tbs, issuers, signers)

    if number is None or number < 0:
        raise CrlInvalid("the CRL has no CRL number")
    if next_update is None:
        raise CrlInvalid("the CRL has no nextUpdate")
    if next_update < this_update:
        raise CrlInvalid("the CRL nextUpdate precedes thisUpdate")
    if this_update > at + skew:
        raise CrlInvalid("the CRL thisUpdate is in the future")

    names: tuple[str, ...] = ()
    only_user = only_ca = False
    if idp is not None:
        if idp.indirect_crl:
            raise CrlInvalid("indirect CRLs are not supported")
        if idp.only_some_reasons:
            raise CrlInvalid("onlySomeReasons partitions are not supported")
        if idp.only_contains_attribute_certs:
            raise CrlInvalid("attribute-certificate CRLs are not supported")
        names = _dp_names(idp.full_name, idp.relative_name, crl.issuer)
        only_user = idp.only_contains_user_certs
        only_ca = idp.only_contains_ca_certs

    entries = _index_entries(der, layout.revoked_start, layout.revoked_end)
    return ParsedCrl(
        issuer_key_id=key_id(ca),
        signer_key_id=key_id(signer),
        issuer_name=issuer_name,
        number=number,
        this_update=this_update,
        next_update=next_update,
        scope=scope_key(names, only_user, only_ca),
        scope_names=names,
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        entries=entries,
        size=len(der),
        sha256=hashlib.sha256(der).hexdigest(),
        url=url,
    )


# --- fetching -------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """One CRL download; ``not_modified`` answers a conditional GET (RFC 9110 §15.4.5)."""

    url: str
    status: Literal["ok", "not_modified"]
    content: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


class CrlFetcher(Protocol):
    """Downloads a CRL. Raises RevocationUnavailable (network) or CrlInvalid (body)."""

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult: ...


class _Watchdog:
    """Shuts down every socket of one download when its overall deadline passes.

    ``requests`` has no overall timeout: its read timeout applies to each socket read,
    so a server that drips the status line or headers a byte at a time is never cut off
    by it (``http.client`` reads those itself). Shutting the socket down from a timer
    thread makes the blocked read return at once.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._mutex:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def expire(self) -> None:
        with self._mutex:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # The plain socket's shutdown, also for an SSLSocket: it acts on the descriptor
        # and leaves the TLS object to fail on its own in the reading thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched_session(watchdog: _Watchdog) -> requests.Session:
    """A ``requests.Session`` whose new connections are registered with ``watchdog``."""

    class Http(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class Https(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class HttpPool(urllib3.HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = Https

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}

    session = requests.Session()
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


class HttpCrlFetcher:
    """Fetch CRLs over HTTP(S) with ``requests``.

    Timeouts on connect and on each read plus an overall deadline, enforced by a
    watchdog that shuts the sockets down (a server dripping headers or body is cut
    off); the size limit is enforced while streaming and counts decompressed bytes (a
    20 MB CRL is normal, an endless body or a gzip bomb is not); a body shorter than
    Content-Length is refused; conditional GET with If-None-Match / If-Modified-Since so
    an unchanged CRL costs one round trip, and a 304 without validators is refused; at
    most 3 redirects, http(s) only.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 120.0,
        max_bytes: int = 64 * 1024 * 1024,
        session: requests.Session | None = None,
        user_agent: str = "moica-auth CRL fetcher",
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        # requests.Session is not documented thread-safe: without an injected session
        # each fetch uses its own (the background thread and fetch-on-miss may overlap).
        self.session = session
        self.user_agent = user_agent

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        # Compressed transfer would make the size limit and the length check apply to
        # different byte counts; CRLs are already dense DER.
        headers = {"Accept-Encoding": "identity", "User-Agent": self.user_agent}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self.total_timeout
        # An injected session (tests, a proxy setup) gets the deadline checks between
        # body reads only; our own session also gets the watchdog for the headers.
        watchdog = _Watchdog()
        session = self.session or _watched_session(watchdog)
        session.max_redirects = 3
        timer = threading.Timer(self.total_timeout, watchdog.expire)
        timer.daemon = True
        timer.start()
        try:
            result = self._get(session, url, headers, etag, last_modified, deadline)
        except MoicaAuthError as exc:
            if watchdog.expired:
                raise RevocationUnavailable("CRL download took too long", url=url) from exc
            raise
        finally:
            timer.cancel()
            if self.session is None:
                session.close()
        if watchdog.expired:
            # A shut-down socket reads as end of file: what "arrived" may be cut short
            # anywhere (even mid-header, which http.client then takes as complete).
            raise RevocationUnavailable("CRL download took too long", url=url)
        return result

    def _get(
        self,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        etag: str | None,
        last_modified: str | None,
        deadline: float,
    ) -> FetchResult:
        try:
            with session.get(
                url,
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
                stream=True,
            ) as response:
                if response.status_code == 304:
                    if not (etag or last_modified):
                        # 304 answers a conditional GET only; without validators it
                        # carries no CRL and must not pass for "unchanged".
                        raise RevocationUnavailable(
                            "CRL download answered 304 to an unconditional request", url=url
                        )
                    return FetchResult(
                        url=url, status="not_modified", etag=etag, last_modified=last_modified
                    )
                if response.status_code != 200:
                    raise RevocationUnavailable(
                        f"CRL download answered HTTP {response.status_code}", url=url
                    )
                declared = response.headers.get("Content-Length")
                expected = int(declared) if declared and declared.isdigit() else None
                encoded = response.headers.get("Content-Encoding", "identity") != "identity"
                if expected is not None and expected > self.max_bytes:
                    raise CrlInvalid("CRL larger than the configured limit", url=url)
                chunks: list[bytes] = []
                received = 0
                while True:
                    # read1: return after one socket read, so the deadline is checked
                    # at least every read_timeout even against a server that drips a
                    # byte at a time (read(n) would block until n bytes arrived). With
                    # a content coding (sent although we asked for identity) urllib3
                    # decompresses at most 64 KiB per call, and the limit counts
                    # decompressed bytes: a gzip bomb is cut off like an endless body.
                    chunk = response.raw.read1(64 * 1024, decode_content=True)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise CrlInvalid("CRL larger than the configured limit", url=url)
                    if time.monotonic() > deadline:
                        raise RevocationUnavailable("CRL download took too long", url=url)
                    chunks.append(chunk)
                # With a content coding the length counts encoded bytes; urllib3 then
                # still refuses a short body (IncompleteRead below).
                if expected is not None and not encoded and received != expected:
                    raise CrlInvalid("CRL download truncated", url=url)
                return FetchResult(
                    url=url,
                    status="ok",
                    content=b"".join(chunks),
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
        except (
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.IncompleteRead,
        ) as exc:
            # A body cut short of its Content-Length (or of its last chunk).
            raise CrlInvalid("CRL download truncated", url=url) from exc
        except urllib3.exceptions.ProtocolError as exc:
            # urllib3 wraps a short body as ProtocolError("Connection broken", IncompleteRead).
            if any(isinstance(arg, urllib3.exceptions.IncompleteRead) for arg in exc.args):
                raise CrlInvalid("CRL download truncated", url=url) from exc
            raise RevocationUnavailable(
                f"CRL download failed: {type(exc).__name__}", url=url
            ) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise CrlInvalid("CRL download could not be decoded", url=url) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise RevocationUnavailable(
                f"CRL download failed: {type(exc).__name__}", url=url
            ) from exc


# --- the revocation source ------------------------------------------------------------


class _Refreshing(Protocol):
    def refresh_for(self, *, certificate: x509.Certificate, issuer: x509.Certificate) -> None: ...


class CrlSource:
    """Answer revocation status from the CRL index (RFC 5280 §6.3).

    Reads only the index store: no download on the login path, unless
    ``fetch_on_miss`` is set (small deployments) — then the refresher is called under
    the store's fleet-wide lock so a burst of logins triggers one download.

    Decision for one (certificate, issuer key):

    1. every installed CRL of that issuer key whose scope covers the certificate
       (§6.3.3 (b)) is consulted, in one atomic read;
    2. a permanent revocation in any of them is final (revocation cannot be undone);
    3. otherwise the newest CRL that is not past nextUpdate + ``grace`` answers
       (so a hold lifted by a later CRL reads "good" again) — but only a CRL issued
       after a hold lifts it: if a covering CRL at least as new lists a hold, the
       answer is "hold", or :class:`RevocationStale` when that CRL is past nextUpdate
       + ``grace``; never "good" on the word of an older CRL;
    4. covering CRLs exist but all are stale → :class:`RevocationStale`;
       none → :class:`RevocationUnavailable`.
    """

    name: SourceName = "crl"

    def __init__(
        self,
        *,
        store: RevocationIndexStore,
        grace: timedelta = timedelta(0),
        refresher: _Refreshing | None = None,
        fetch_on_miss: bool = False,
    ) -> None:
        self.store = store
        self.grace = grace
        self.refresher = refresher
        self.fetch_on_miss = fetch_on_miss and refresher is not None

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        """Whether the index holds a CRL of ``issuer``'s key whose scope covers
        ``certificate`` (fresh or stale; RFC 5280 §6.3.3 (b))."""
        return bool(self._covering(certificate, key_id(issuer)))

    def _covering(
        self, certificate: x509.Certificate, issuer_kid: str
    ) -> list[tuple[CrlInfo, bytes | None]]:
        return [
            (info, packed)
            for info, packed in self.store.read(issuer_kid, certificate.serial_number)
            if scope_covers(
                scope_names=info.scope_names,
                only_user_certs=info.only_user_certs,
                only_ca_certs=info.only_ca_certs,
                certificate=certificate,
            )
        ]

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        try:
            return self._status(certificate=certificate, issuer=issuer, at=at)
        except (RevocationUnavailable, RevocationStale):
            if not self.fetch_on_miss or self.refresher is None:
                raise
        self.refresher.refresh_for(certificate=certificate, issuer=issuer)
        return self._status(certificate=certificate, issuer=issuer, at=at)

    def _status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        issuer_kid = key_id(issuer)
        answers = self._covering(certificate, issuer_kid)
        if not answers:
            raise RevocationUnavailable(
                "no CRL covering this certificate is installed", issuer_key_id=issuer_kid
            )
        for info, packed in answers:
            if packed is not None:
                entry = decode_entry(packed)
                if not entry.is_hold:
                    return self._answer("revoked", info, entry)
        fresh = [(i, p) for i, p in answers if at <= i.next_update + self.grace]
        if not fresh:
            newest = max(i.next_update for i, _ in answers)
            raise RevocationStale(
                "the CRL is past its nextUpdate", next_update=newest, issuer_key_id=issuer_kid
            )
        info, packed = max(fresh, key=lambda pair: (pair[0].this_update, pair[0].number))
        # Only what remains are holds. A hold is lifted only by a CRL issued after it:
        # a CRL at least as new as the newest current one that lists a hold beats that
        # one's silence (a tie counts as a hold). If that CRL is itself past nextUpdate,
        # nothing current answers: stale, never "good".
        holds = [(i, p) for i, p in answers if p is not None and i.this_update >= info.this_update]
        if packed is None and holds:
            current = [(i, p) for i, p in holds if (i, p) in fresh]
            if not current:
                raise RevocationStale(
                    "a CRL newer than every current one lists the certificate on hold and "
                    "is past its nextUpdate",
                    next_update=max(i.next_update for i, _ in holds),
                    issuer_key_id=issuer_kid,
                )
            info, packed = current[0]
        if packed is not None:
            return self._answer("hold", info, decode_entry(packed))
        return CertStatus(
            status="good",
            source="crl",
            this_update=info.this_update,
            next_update=info.next_update,
            detail=f"CRL {info.number}",
        )

    @staticmethod
    def _answer(
        status: Literal["revoked", "hold"], info: CrlInfo, entry: RevokedEntry
    ) -> CertStatus:
        return CertStatus(
            status=status,
            source="crl",
            this_update=info.this_update,
            next_update=info.next_update,
            revoked_at=entry.revoked_at,
            reason=entry.reason,
            detail=f"CRL {info.number}",
        )
