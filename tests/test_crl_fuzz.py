"""Property tests for the hand-written revokedCertificates reader (``crl_der._index_entries``).

The reader exists for speed (docs/revocation.md), so it must say exactly what
``cryptography``'s own parser says: for CRLs built with ``CertificateRevocationListBuilder``
(random serials, reasons, dates and entry extensions) the index agrees with
``get_revoked_certificate_by_serial_number`` for every listed and every absent serial; and
for CRLs whose entries were mutated and then **re-signed** (so that the signature check
does not stop them first) the reader either refuses the CRL with ``crl_invalid`` or agrees.

Kept apart from tests/test_crl.py so that the rest of the CRL tests run even where
hypothesis is not installed.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ObjectIdentifier

from moica_auth.exceptions import CrlInvalid
from moica_auth.revocation.crl import decode_entry, parse_crl
from moica_auth.testing.pki import TestPKI, default_pki
from tests.crl_fixtures import der, sign_tbs, tbs_fields, tlv

pytest.importorskip("hypothesis")

from hypothesis import event, given, settings
from hypothesis import strategies as st

# Random serial octets are often negative (RFC 5280 §4.1.2.2 forbids them; both parsers
# still read them, and cryptography warns).
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

R = x509.ReasonFlags
_UNKNOWN = ObjectIdentifier("1.3.6.1.4.1.55555.9")


def _settings(max_examples: int) -> settings:
    # As in test_signature_fuzz: reproducible, nothing written, not timed.
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True)


@functools.cache
def _pki() -> TestPKI:
    return default_pki()


def _expected(
    crl: x509.CertificateRevocationList, serial: int
) -> tuple[datetime, str | None] | None:
    """cryptography's answer for ``serial``. removeFromCRL entries (RFC 5280 §5.3.1) are
    "no longer revoked" by design (docs/revocation.md), so they read as absent."""
    revoked = crl.get_revoked_certificate_by_serial_number(serial)
    if revoked is None:
        return None
    try:
        reason: str | None = revoked.extensions.get_extension_for_class(
            x509.CRLReason
        ).value.reason.name
    except x509.ExtensionNotFound:
        reason = None
    if reason == "remove_from_crl":
        return None
    return revoked.revocation_date_utc, reason


def _ours(parsed_entries: dict[int, bytes], serial: int) -> tuple[datetime, str | None] | None:
    packed = parsed_entries.get(serial)
    if packed is None:
        return None
    entry = decode_entry(packed)
    return entry.revoked_at, entry.reason


_entry = st.fixed_dictionaries(
    {
        "reason": st.none() | st.sampled_from(list(R)),
        "date": st.datetimes(
            min_value=datetime(1950, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
        ),
        "invalidity": st.none()
        | st.datetimes(
            min_value=datetime(1950, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
        ),
        "unknown": st.booleans(),
        "certificate_issuer": st.integers(0, 15).map(lambda n: n == 0),  # rare: refuses all
    }
)


@_settings(60)
@given(
    entries=st.dictionaries(st.integers(min_value=1, max_value=2**159 - 1), _entry, max_size=25),
    absent=st.lists(st.integers(min_value=0, max_value=2**160), max_size=10),
)
def test_index_agrees_with_cryptography(entries, absent) -> None:
    pki = _pki()
    ca = pki.moica_g3
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(pki.now)
        .next_update(pki.now.replace(year=pki.now.year + 1))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    indirect = False
    for serial, spec in entries.items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(spec["date"])
        if spec["reason"] is not None:
            entry = entry.add_extension(x509.CRLReason(spec["reason"]), critical=False)
        if spec["invalidity"] is not None:
            entry = entry.add_extension(x509.InvalidityDate(spec["invalidity"]), critical=False)
        if spec["unknown"]:
            entry = entry.add_extension(
                x509.UnrecognizedExtension(_UNKNOWN, b"\x05\x00"), critical=False
            )
        if spec["certificate_issuer"]:
            indirect = True
            entry = entry.add_extension(
                x509.CertificateIssuer([x509.DirectoryName(ca.certificate.subject)]),
                critical=True,
            )
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.private_key, hashes.SHA256())
    if indirect:
        with pytest.raises(CrlInvalid) as exc:
            parse_crl(der(crl), issuers=pki.intermediates, at=pki.now)
        assert exc.value.code == "crl_invalid"
        return
    parsed = parse_crl(der(crl), issuers=pki.intermediates, at=pki.now)
    index = dict(parsed.entries)
    for serial in [*entries, *absent]:
        assert _ours(index, serial) == _expected(crl, serial), serial
    listed = {s for s in entries if _expected(crl, s) is not None}
    assert set(index) == listed


@functools.cache
def _base() -> tuple[list[bytes], int]:
    """tbsCertList fields of a CRL with a few varied entries, and the index of the
    revokedCertificates field."""
    pki = _pki()
    t = pki.now
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[
            (1, t, R.key_compromise),
            (2**100 + 7, t, None),
            (3, t.replace(year=2051), R.certificate_hold),
            (128, t, R.remove_from_crl),
        ],
    )
    fields = tbs_fields(der(crl))
    index = next(i for i, f in enumerate(fields) if i >= 4 and f[0] == 0x30)
    return fields, index


@_settings(300)
@given(
    mutations=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255), st.sampled_from("rid")),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_and_resigned_entries_are_refused_or_agree(mutations) -> None:
    pki = _pki()
    fields, index = _base()
    field = fields[index]
    header = 2 if field[1] < 0x80 else 2 + (field[1] & 0x7F)
    content = bytearray(field[header:])
    for where, value, op in mutations:
        pos = where % (len(content) + 1)
        if op == "r" and pos < len(content):
            content[pos] = value
        elif op == "i":
            content.insert(pos, value)
        elif op == "d" and pos < len(content):
            del content[pos]
    mutated = list(fields)
    mutated[index] = tlv(0x30, bytes(content))
    data = sign_tbs(pki.moica_g3.private_key, mutated)
    try:
        parsed = parse_crl(data, issuers=pki.intermediates, at=pki.now)
    except CrlInvalid as exc:
        assert exc.code == "crl_invalid"
        event(f"refused: {exc.detail}")
        return
    event("accepted")
    crl = x509.load_der_x509_crl(data)
    _assert_agrees(crl, dict(parsed.entries))


def _assert_agrees(crl: x509.CertificateRevocationList, index: dict[int, bytes]) -> None:
    """Every entry cryptography sees is in ``index`` with the same date and reason
    (removeFromCRL entries excepted, by design), and nothing else is."""
    serials = [r.serial_number for r in crl]
    for revoked in crl:
        serial = revoked.serial_number
        # cryptography reads every extension we accepted (a ValueError here would mean
        # we accepted what it calls malformed).
        try:
            ext = revoked.extensions.get_extension_for_class(x509.CRLReason)
            reason: str | None = ext.value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        want = None if reason == "remove_from_crl" else (revoked.revocation_date_utc, reason)
        assert _ours(index, serial) == want, serial
        if serial >= 0:  # cryptography's lookup refuses negative serials
            assert _expected(crl, serial) == want
    assert set(index) <= set(serials)


def _extension(oid: bytes, critical: bool, value: bytes) -> bytes:
    return tlv(0x30, tlv(0x06, oid) + (b"\x01\x01\xff" if critical else b"") + tlv(0x04, value))


_ext = st.one_of(
    # reasonCode: usually well formed, sometimes any code or any content
    st.builds(
        lambda crit, code: _extension(bytes.fromhex("551d15"), crit, tlv(0x0A, bytes([code]))),
        st.booleans(),
        st.integers(0, 12),
    ),
    st.builds(
        lambda content: _extension(bytes.fromhex("551d15"), False, content),
        st.binary(max_size=5),
    ),
    # invalidityDate: well formed or any content
    st.just(_extension(bytes.fromhex("551d18"), False, tlv(0x18, b"20251231235959Z"))),
    st.builds(
        lambda content: _extension(bytes.fromhex("551d18"), False, content),
        st.binary(max_size=17),
    ),
    # certificateIssuer, and an unknown extension, critical or not
    st.builds(
        lambda crit: _extension(bytes.fromhex("551d1d"), crit, tlv(0x30, tlv(0x86, b"x"))),
        st.booleans(),
    ),
    st.builds(
        lambda crit, content: _extension(bytes.fromhex("2b0601040183b2630a"), crit, content),
        st.booleans(),
        st.binary(max_size=4),
    ),
)

_raw_entry = st.tuples(
    st.binary(min_size=1, max_size=22),
    st.sampled_from(
        [tlv(0x17, b"260101000000Z"), tlv(0x18, b"20510101000000Z"), tlv(0x17, b"491231235959Z")]
    ),
    st.none() | st.lists(_ext, max_size=3),
)


@_settings(300)
@given(raw=st.lists(_raw_entry, max_size=6))
def test_structured_entries_are_refused_or_agree(raw) -> None:
    # Entries that cryptography accepts structurally, with random serial octets and
    # random entry extensions: the reader's own checks are what is exercised here.
    pki = _pki()
    fields, index = _base()
    body = b""
    for serial, date, extensions in raw:
        ext = b"" if extensions is None else tlv(0x30, b"".join(extensions))
        body += tlv(0x30, tlv(0x02, serial) + date + ext)
    mutated = list(fields)
    mutated[index] = tlv(0x30, body)
    data = sign_tbs(pki.moica_g3.private_key, mutated)
    try:
        parsed = parse_crl(data, issuers=pki.intermediates, at=pki.now)
    except CrlInvalid as exc:
        assert exc.code == "crl_invalid"
        event(f"refused: {exc.detail}")
        return
    event("accepted")
    crl = x509.load_der_x509_crl(data)
    serials = [r.serial_number for r in crl]
    assert len(set(serials)) == len(serials)  # duplicates are refused
    _assert_agrees(crl, dict(parsed.entries))


@_settings(200)
@given(data=st.binary(max_size=400))
def test_random_bytes_only_raise_crl_invalid(data: bytes) -> None:
    pki = _pki()
    with pytest.raises(CrlInvalid):
        parse_crl(data, issuers=pki.intermediates, at=pki.now)


@_settings(300)
@given(
    mutations=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4
    )
)
def test_mutated_crls_only_raise_crl_invalid(mutations) -> None:
    # Not re-signed: anything anywhere (outer lengths, algorithms, the signature) may be
    # broken; the only acceptable outcomes are a refusal with crl_invalid or, when a
    # mutation left the bytes unchanged, the original CRL.
    pki = _pki()
    fields, _ = _base()
    original = sign_tbs(pki.moica_g3.private_key, fields)
    data = bytearray(original)
    for where, value in mutations:
        data[where % len(data)] = value
    if bytes(data) == original:
        return
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(bytes(data), issuers=pki.intermediates, at=pki.now)
    assert exc.value.code == "crl_invalid"
