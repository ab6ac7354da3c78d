"""Archive time-stamps: evidence that keeps verifying after its TSA certificate expires.

An RFC 3161 token is only as good as its TSA certificate: once that certificate expires
(or is revoked, or its algorithm weakens) nobody can tell a genuine old token from one
made later with a leaked key. RFC 4998 (Evidence Record Syntax) and ETSI EN 319 102-1
archive time-stamps solve this by *renewal*: while the newest token is still valid, a
new token is taken over everything before it, including the validation data (the TSA's
CA certificates, and CRLs when given) of the token it renews. Each token then only has
to be valid at the time the *next* one proves; the newest one at the verification time.

This module keeps that idea simple and exact, inside the existing evidence JSON (an
optional ``archive`` list, so a record without it is the unchanged
``moica-auth-evidence/1`` record):

``archive[i] = {"previous": P_i, "validation": V_i, "token": T_i}`` where

* ``P_0`` = SHA-256 (hex) of the canonical JSON of the record **without** ``archive``
  (every field, the digests and the original time-stamp token);
* ``P_{i+1}`` = SHA-256 (hex) of the canonical JSON of ``archive[i]`` (which holds
  ``P_i``, so it is a hash chain over the whole previous evidence);
* ``V_i`` = ``{"certificates": [base64 DER…], "crls": [base64 DER…]}``: the path of the
  token ``T_i`` renews (``timestamp`` for ``i = 0``, else ``T_{i-1}``) beyond the TSA
  certificate its token carries, and the CRLs the renewer had for it (may be empty);
* ``T_i`` = an RFC 3161 token whose messageImprint is SHA-256 of the canonical JSON of
  ``{"format": "moica-auth-archive/1", "previous": P_i, "validation": V_i}``.

Verification (:func:`check_archive`), after the original record verified as before:

1. forwards, for each entry: ``previous`` equals the recomputed ``P_i`` (else an entry
   before it was removed, altered or the list reordered: ``archive[i].previous``); the
   token verifies (RFC 3161, TSA path at its genTime: ``archive[i].token``); its imprint
   covers ``P_i`` and ``V_i`` (``archive[i].validation``); its genTime is not before
   the genTime of the token it renews; the recorded CRLs (if any) were issued by a CA of
   that token's path, after its genTime and before this genTime, and list none of the
   path's certificates;
2. the time-stamp each entry renews has a TSA path valid at that entry's genTime; the
   newest token has a TSA path valid at the verification time. A token whose TSA
   certificate has expired is therefore accepted only when a later valid token covers
   it, and the newest one must be valid now (or at the auditor's ``--at``).

Removing the *newest* entries leaves a shorter chain that is still consistent: it then
has to be valid at the verification time on its own, which it is not once its TSA
certificate has expired. That is the rule, not a gap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from moica_auth.exceptions import EvidenceInvalid, TimestampError
from moica_auth.signing.timestamp import (
    MAX_TOKEN_CERTIFICATES,
    TimestampToken,
    TsaClient,
    verify_token,
)

if TYPE_CHECKING:
    from moica_auth.signing.validation_crls import ValidationCrlFetcher

__all__ = [
    "ARCHIVE_FORMAT",
    "MAX_ARCHIVE_TOKENS",
    "MAX_VALIDATION_CRLS",
    "ArchiveStamp",
    "archive_imprint",
    "check_archive",
    "evidence_chain_hash",
    "newest_tsa_expiry",
    "recorded_certificates",
    "renew",
]

ARCHIVE_FORMAT: Final = "moica-auth-archive/1"
#: Renewals a record may carry. A TSA certificate lives years: 32 renewals are decades,
#: and the bound caps the offline work (one token and two path validations each).
MAX_ARCHIVE_TOKENS: Final = 32
#: CRLs one renewal may record (the TSA's issuing CA and a CA or two above it).
MAX_VALIDATION_CRLS: Final = 4


@dataclass(frozen=True)
class ArchiveStamp:
    """One verified time-stamp of the chain (the original one is index ``-1``); ``crls``
    counts the CRLs its entry recorded for the time-stamp it renews."""

    index: int
    gen_time: datetime
    tsa: str
    tsa_not_after: datetime
    checked_until: datetime
    crls: int


def _canonical(value: Any) -> bytes:
    from moica_auth.signing.evidence import canonical_json

    return canonical_json(value)


def _bad(field: str, reason: str, cause: Exception | None = None) -> EvidenceInvalid:
    from moica_auth.signing.evidence import _bad as evidence_bad

    return evidence_bad(field, reason, cause)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode(value: object, field: str) -> bytes:
    from moica_auth.signing.evidence import _decode_b64

    return _decode_b64(value, field)


def evidence_chain_hash(record: Mapping[str, Any], upto: int) -> str:
    """``P_upto``: the hash of the evidence before ``archive[upto]`` (see the module doc)."""
    base = {k: v for k, v in record.items() if k != "archive"}
    current = hashlib.sha256(_canonical(base)).hexdigest()
    entries = record.get("archive") or []
    for entry in entries[:upto]:
        current = hashlib.sha256(_canonical(entry)).hexdigest()
    return current


def archive_imprint(previous: str, validation: Mapping[str, Any]) -> bytes:
    """The SHA-256 messageImprint of an archive token over ``P_i`` and ``V_i``."""
    return hashlib.sha256(
        _canonical({"format": ARCHIVE_FORMAT, "previous": previous, "validation": validation})
    ).digest()


def _tsa_name(token: TimestampToken) -> str:
    names = token.tsa_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else token.tsa_certificate.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _entries(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    value = record.get("archive")
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise _bad("archive", "must be a non-empty list of archive time-stamps")
    if len(value) > MAX_ARCHIVE_TOKENS:
        raise _bad("archive", f"holds more than {MAX_ARCHIVE_TOKENS} archive time-stamps")
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"previous", "validation", "token"}:
            raise _bad(f"archive[{index}]", 'must be {"previous", "validation", "token"}')
    return value


def _validation_data(
    value: object, field: str
) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    if (
        not isinstance(value, dict)
        or set(value) != {"certificates", "crls"}
        or not isinstance(value["certificates"], list)
        or not isinstance(value["crls"], list)
    ):
        raise _bad(field, 'must be {"certificates": [base64…], "crls": [base64…]}')
    if len(value["certificates"]) > MAX_TOKEN_CERTIFICATES:
        raise _bad(field, f"holds more than {MAX_TOKEN_CERTIFICATES} certificates")
    if len(value["crls"]) > MAX_VALIDATION_CRLS:
        raise _bad(field, f"holds more than {MAX_VALIDATION_CRLS} CRLs")
    try:
        certs = [x509.load_der_x509_certificate(_decode(c, field)) for c in value["certificates"]]
        crls = [x509.load_der_x509_crl(_decode(c, field)) for c in value["crls"]]
    except ValueError as exc:
        raise _bad(field, "holds an unreadable certificate or CRL") from exc
    return certs, crls


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if ca.subject != crl.issuer:
        return False
    key = ca.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False  # the only CA keys TSAs use; anything else cannot sign a CRL here
    try:
        return crl.is_signature_valid(key)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def recorded_certificates(record: Mapping[str, Any], index: int) -> list[x509.Certificate]:
    """The certificates ``archive[index]`` recorded, or ``[]`` when there are none or they
    are malformed (:func:`check_archive` names that): path candidates only, never trusted."""
    try:
        entries = _entries(record)
        if index >= len(entries):
            return []
        return _validation_data(entries[index]["validation"], "archive")[0]
    except EvidenceInvalid:
        return []


def check_crls(
    crls: Sequence[x509.CertificateRevocationList],
    path: Sequence[x509.Certificate],
    *,
    after: datetime,
    before: datetime,
) -> str | None:
    """Why ``crls`` do not show ``path`` unrevoked between ``after`` and ``before``
    (``None``: they do). Each CRL must be signed by a CA of ``path``, issued at or after
    ``after`` (the genTime of the token it speaks for) and at or before ``before``, and
    list no certificate of ``path`` that CA issued."""
    for crl in crls:
        issuer = next((ca for ca in path if _signed_by(crl, ca)), None)
        if issuer is None:
            return "a CRL is not issued by a CA of the time-stamp's path"
        this_update = crl.last_update_utc
        if not after <= this_update <= before:
            return "a CRL was issued before the time-stamp it speaks for, or after its renewal"
        for cert in path:
            if (
                cert.issuer == crl.issuer
                and cert != issuer
                and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
            ):
                return "a CRL lists a certificate of the time-stamp's path as revoked"
    return None


def _verify_entry_token(
    entry: Mapping[str, Any],
    index: int,
    previous: str,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> TimestampToken:
    field = f"archive[{index}]"
    token_der = _decode(entry["token"], f"{field}.token")
    try:
        token = verify_token(token_der, imprint=None, anchors=anchors, intermediates=pool)
    except TimestampError as exc:
        raise _bad(f"{field}.token", exc.detail or "does not verify", exc) from exc
    if not hmac.compare_digest(token.imprint, archive_imprint(previous, entry["validation"])):
        raise _bad(f"{field}.validation", "is not what its archive time-stamp covers")
    return token


def _recheck(
    token_der: bytes,
    field: str,
    anchors: Sequence[x509.Certificate],
    pool: Sequence[x509.Certificate],
    at: datetime,
    why: str,
) -> TimestampToken:
    try:
        return verify_token(
            token_der, imprint=None, anchors=anchors, intermediates=pool, valid_at=at
        )
    except TimestampError as exc:
        raise _bad(field, f"its TSA certificate path is not valid at {why}", exc) from exc


def check_archive(
    record: Mapping[str, Any],
    *,
    base: TimestampToken | None,
    tsa_anchors: Sequence[x509.Certificate],
    tsa_intermediates: Sequence[x509.Certificate] = (),
    at: datetime,
) -> tuple[ArchiveStamp, ...]:
    """Verify the chain of time-stamps of ``record`` (see the module docstring).

    ``base`` is the record's original time-stamp, already verified at its genTime with
    its imprint matched (``None``: the record has none, and then must have no archive).
    Returns the original stamp (index -1) and each archive stamp, oldest first, with the
    time each was checked to be valid at. Raises :class:`EvidenceInvalid` naming
    ``timestamp``, ``archive`` or ``archive[i].{previous,validation,token}``.
    """
    entries = _entries(record)
    if base is None:
        if entries:
            raise _bad("archive", "renews a time-stamp the record does not have")
        return ()
    when = at.astimezone(UTC)
    recorded = [
        _validation_data(entry["validation"], f"archive[{index}].validation")
        for index, entry in enumerate(entries)
    ]

    def pool(position: int) -> list[x509.Certificate]:
        # Token ``position`` (0: the original) may use the certificates the entry that
        # renews it recorded: untrusted path candidates, like a token's own.
        extra = recorded[position][0] if position < len(recorded) else []
        return [*tsa_intermediates, *(c for c in extra if c not in tsa_intermediates)]

    tokens: list[TimestampToken] = [base]
    fields = ["timestamp"]
    crl_counts = [0]
    previous = evidence_chain_hash(record, 0)
    for index, entry in enumerate(entries):
        field = f"archive[{index}]"
        if not isinstance(entry["previous"], str) or not hmac.compare_digest(
            entry["previous"], previous
        ):
            raise _bad(
                f"{field}.previous",
                "is not the hash of the evidence before it (an earlier archive time-stamp "
                "was removed, altered or moved)",
            )
        token = _verify_entry_token(entry, index, previous, pool(index + 1), tsa_anchors)
        renewed = tokens[-1]
        if token.gen_time < renewed.gen_time:
            raise _bad(f"{field}.token", "is dated before the time-stamp it renews")
        crls = recorded[index][1]
        if crls:
            path = _recheck(
                renewed.der,
                fields[-1],
                tsa_anchors,
                pool(index),
                token.gen_time,
                f"{token.gen_time.isoformat()} (when {field} renewed it)",
            ).tsa_chain
            problem = check_crls(crls, path, after=renewed.gen_time, before=token.gen_time)
            if problem:
                raise _bad(f"{field}.validation", problem)
        tokens.append(token)
        fields.append(f"{field}.token")
        crl_counts.append(len(crls))
        previous = hashlib.sha256(_canonical(entry)).hexdigest()

    stamps: list[ArchiveStamp] = []
    for position, token in enumerate(tokens):
        newest = position == len(tokens) - 1
        until = when if newest else tokens[position + 1].gen_time
        why = (
            f"the verification time {until.isoformat()}"
            if newest
            else f"{until.isoformat()} (the time {fields[position + 1]} proves)"
        )
        if newest and until < token.gen_time:
            raise _bad(fields[position], "is dated after the verification time")
        checked = _recheck(token.der, fields[position], tsa_anchors, pool(position), until, why)
        stamps.append(
            ArchiveStamp(
                index=position - 1,
                gen_time=token.gen_time,
                tsa=_tsa_name(token),
                tsa_not_after=checked.tsa_certificate.not_valid_after_utc,
                checked_until=until,
                crls=crl_counts[position],
            )
        )
    return tuple(stamps)


def newest_token(
    record: Mapping[str, Any],
    *,
    tsa_anchors: Sequence[x509.Certificate],
    tsa_intermediates: Sequence[x509.Certificate] = (),
) -> TimestampToken | None:
    """The newest time-stamp of ``record`` (the last archive token, else the original),
    verified at its genTime; ``None`` when the record has none."""
    entries = _entries(record)
    if entries:
        field = f"archive[{len(entries) - 1}].token"
        der = _decode(entries[-1]["token"], field)
    else:
        stamp = record.get("timestamp")
        if stamp is None:
            return None
        der = _decode(stamp.get("token") if isinstance(stamp, dict) else None, "timestamp")
        field = "timestamp"
    try:
        return verify_token(der, imprint=None, anchors=tsa_anchors, intermediates=tsa_intermediates)
    except TimestampError as exc:
        raise _bad(field, exc.detail or "does not verify", exc) from exc


def newest_tsa_expiry(
    record: Mapping[str, Any],
    *,
    tsa_anchors: Sequence[x509.Certificate],
    tsa_intermediates: Sequence[x509.Certificate] = (),
) -> datetime | None:
    """When the newest time-stamp's TSA certificate expires (``None``: no time-stamp)."""
    token = newest_token(record, tsa_anchors=tsa_anchors, tsa_intermediates=tsa_intermediates)
    return None if token is None else token.tsa_certificate.not_valid_after_utc


def renew(
    data: bytes | str | Mapping[str, Any],
    *,
    tsa: TsaClient,
    crls: Sequence[x509.CertificateRevocationList] = (),
    at: datetime | None = None,
    fetch_crls: ValidationCrlFetcher | None = None,
) -> dict[str, Any]:
    """Add an archive time-stamp from ``tsa`` to an evidence record; returns the new record.

    The record's time-stamps are first verified (against ``tsa.anchors`` and
    ``tsa.intermediates``) up to now, so a chain that no longer verifies is never
    extended (renew *before* the newest TSA certificate expires). The new token's TSA
    certificate must expire after the newest one's, else :class:`TimestampError`: a
    renewal that would not last longer is refused. ``crls`` are recorded
    as validation data of the newest token when they show its path unrevoked;
    ``fetch_crls`` also downloads and checks the CRLs of that path from their
    distribution points (:mod:`moica_auth.signing.validation_crls`) before the TSA is
    asked. Raises :class:`EvidenceInvalid` or :class:`TimestampError`, and with
    ``fetch_crls`` :class:`~moica_auth.exceptions.RevocationUnavailable` or
    :class:`~moica_auth.exceptions.CrlInvalid`.
    """
    from moica_auth.signing.evidence import MAX_EVIDENCE_BYTES, verified_timestamp

    now = (at or datetime.now(UTC)).astimezone(UTC)
    record, base = verified_timestamp(
        data, tsa_anchors=tsa.anchors, tsa_intermediates=tsa.intermediates
    )
    if base is None:
        raise _bad("timestamp", "is absent: there is no time-stamp to renew")
    entries = _entries(record)
    if len(entries) >= MAX_ARCHIVE_TOKENS:
        raise _bad("archive", f"already holds {MAX_ARCHIVE_TOKENS} archive time-stamps")
    check_archive(
        record,
        base=base,
        tsa_anchors=tsa.anchors,
        tsa_intermediates=tsa.intermediates,
        at=now,
    )
    newest = (
        newest_token(record, tsa_anchors=tsa.anchors, tsa_intermediates=tsa.intermediates) or base
    )
    path = verify_token(
        newest.der,
        imprint=None,
        anchors=tsa.anchors,
        intermediates=tsa.intermediates,
        valid_at=now,
    ).tsa_chain
    if len(crls) > MAX_VALIDATION_CRLS:
        raise ValueError(f"at most {MAX_VALIDATION_CRLS} CRLs")
    if fetch_crls is not None:
        given = {c.public_bytes(serialization.Encoding.DER) for c in crls}
        crls = [
            *crls,
            *(
                c
                for c in fetch_crls.crls_for(path, at=now)
                if c.public_bytes(serialization.Encoding.DER) not in given
            ),
        ]
        if len(crls) > MAX_VALIDATION_CRLS:
            raise _bad("crls", f"more than {MAX_VALIDATION_CRLS} CRLs (given and fetched)")
    problem = check_crls(crls, path, after=newest.gen_time, before=now)
    if problem:
        raise _bad("crls", problem)
    validation = {
        "certificates": [_b64(c.public_bytes(serialization.Encoding.DER)) for c in path[1:]],
        "crls": [_b64(c.public_bytes(serialization.Encoding.DER)) for c in crls],
    }
    previous = evidence_chain_hash(record, len(entries))
    token = tsa.timestamp(archive_imprint(previous, validation))
    if token.gen_time < newest.gen_time:
        raise TimestampError("the TSA dated the archive time-stamp before the one it renews")
    if crls and check_crls(crls, path, after=newest.gen_time, before=token.gen_time):
        # The TSA's clock is behind ours: the CRLs would postdate the token that covers
        # them and the record would not verify. Refuse; nothing is written.
        raise TimestampError("the TSA dated the archive time-stamp before the CRLs it covers")
    if token.tsa_certificate.not_valid_after_utc <= newest.tsa_certificate.not_valid_after_utc:
        # Renewing with a TSA certificate that expires no later proves nothing longer, and
        # a scheduled run would add such a token on every run: refuse, nothing is written.
        raise TimestampError(
            "the TSA's certificate does not outlive the one of the time-stamp it would renew"
        )
    renewed = dict(record)
    renewed["archive"] = [
        *entries,
        {"previous": previous, "validation": validation, "token": _b64(token.der)},
    ]
    # A record over the verifier's size cap would never verify again: refuse, so the
    # stored record stays the last one that does.
    stored = json.dumps(renewed, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")
    if len(stored) > MAX_EVIDENCE_BYTES:
        raise _bad("archive", f"would make the record larger than {MAX_EVIDENCE_BYTES} bytes")
    return renewed
