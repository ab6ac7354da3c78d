"""The DER reader for ``revokedCertificates`` (RFC 5280 §5.1.2.6, §5.3): a small reader
written for that one structure, so that a 412k-entry CRL is indexed without building a
``cryptography`` object per entry (see :mod:`moica_auth.revocation.crl`). Private to the
CRL modules."""

from __future__ import annotations

from dataclasses import dataclass

from moica_auth.exceptions import (
    CrlInvalid,
)

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
