"""Verify a signature against its request, and keep evidence that verifies years later.

:func:`verify_signing` is the HTTP-free decision (guard, then raise):

1. the request is still within its lifetime (single use is the caller's store's job);
2. the answer is of the signature type the request asked for;
3. :class:`~moica_auth.verifier.LoginVerifier` — the login verifier itself, so no check is
   duplicated — verifies the signature over exactly ``request.signed_bytes``, the signing
   certificate profile, the chain and revocation at the decision time, with the revocation
   sources recording what they used (:mod:`moica_auth.signing.revocation_evidence`);
4. the signer is the logged-in citizen: the keyed hash of the signing certificate's
   fingerprint equals the ``key=`` the request text names (the session's certificate);
5. an RFC 3161 time-stamp seals the record (when a TSA is configured).

The evidence record (``moica-auth-evidence/1``) is JSON. Every covered field has its SHA-256
(over its canonical JSON) in ``digests``, and the time-stamp imprint is SHA-256 of the
canonical ``{"digests", "format"}`` manifest: the timestamp therefore covers the signature
(through ``digests.signature``) and every other field, and a changed byte is attributed
to the exact field. :func:`verify_evidence` re-verifies a record offline, at its decision
time, against anchors the auditor supplies.

A record may also carry an optional ``archive`` list of archive time-stamps (renewals,
:mod:`moica_auth.signing.archive`): without it the record is exactly as above; with it,
each time-stamp must be valid at the time the next one proves, and the newest at the
verification time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from moica_auth.certificate import CitizenCertificate
from moica_auth.exceptions import (
    EvidenceInvalid,
    MoicaAuthError,
    SignerMismatch,
    SigningRequestExpired,
    SigningRequestInvalid,
    TimestampError,
)
from moica_auth.revocation.ocsp import OcspSource, PreparedRequest, build_request
from moica_auth.signature import DEFAULT_ALLOWED_HASHES, decode_signature, verify_signature
from moica_auth.signing.channel import SigningChannel
from moica_auth.signing.request import SignatureRequest, parse_header, signer_key
from moica_auth.signing.revocation_evidence import RevocationRecorder, recording_checker
from moica_auth.signing.timestamp import TimestampToken, TsaClient, verify_token
from moica_auth.validation.chain import ValidationPolicy, validate_chain
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifiedLogin

__all__ = [
    "COVERED_FIELDS",
    "EVIDENCE_FORMAT",
    "MAX_EVIDENCE_BYTES",
    "EvidenceReport",
    "SignedResult",
    "canonical_json",
    "verified_timestamp",
    "verify_evidence",
    "verify_signing",
]

logger = logging.getLogger(__name__)

EVIDENCE_FORMAT: Final = "moica-auth-evidence/1"
COVERED_FIELDS: Final = (
    "request",
    "signed_bytes",
    "signature",
    "signature_type",
    "chain",
    "revocation",
    "decision_time",
)
MAX_EVIDENCE_BYTES: Final = 4 * 1024 * 1024
#: Revocation entries a record may carry (leaf and a few CAs): bounds offline work.
MAX_REVOCATION_ENTRIES: Final = 8
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
#: How long after the decision the TSA may date its token (a slow TSA, a retry).
TIMESTAMP_MAX_DELAY: Final = timedelta(minutes=10)
TIMESTAMP_SKEW: Final = timedelta(minutes=5)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no white space, UTF-8: the bytes a digest is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _manifest_imprint(digests: Mapping[str, str]) -> bytes:
    return hashlib.sha256(
        canonical_json({"digests": dict(digests), "format": EVIDENCE_FORMAT})
    ).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class SignedResult:
    """An accepted signature: what the verifier established, and its evidence record."""

    login: VerifiedLogin
    evidence: dict[str, Any]
    fingerprint: str
    timestamp_time: datetime | None

    def evidence_json(self) -> str:
        return json.dumps(self.evidence, ensure_ascii=False, indent=1, sort_keys=True)


def _revocation_json(result: Any, recorder: RevocationRecorder) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": str(getattr(result, "status", "")),
        "source": getattr(result, "source", None),
        "entries": recorder.entries,
    }


def verify_signing(
    *,
    request: SignatureRequest,
    signature: bytes | str,
    signature_type: str,
    certificate: bytes | str | None,
    verifier: LoginVerifier,
    hash_key: bytes,
    at: datetime,
    tsa: TsaClient | None = None,
    require_timestamp: bool = True,
    channel: SigningChannel | None = None,
) -> SignedResult:
    """Decide one signature over ``request`` at ``at``; see the module docstring.

    Raises :class:`SigningRequestExpired`, :class:`SigningRequestInvalid` (wrong type),
    every error of :meth:`LoginVerifier.verify`, :class:`SignerMismatch`, or
    :class:`TimestampError` when a configured TSA gives no valid token and
    ``require_timestamp`` (otherwise the record is kept without a time-stamp, logged).

    ``channel`` (the mobile citizen certificate, :mod:`moica_auth.signing.channel`): the
    signature is over ``channel.content(signed_bytes)`` of ``channel.signature_type``, the
    signer's certificate must have ``channel.form`` (else ``MobileCertificateRequired``),
    and the record carries the channel as one more covered field.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    if request.is_expired(at):
        raise SigningRequestExpired("the signature request is past its lifetime")
    kind = signature_type.strip().upper() if isinstance(signature_type, str) else ""
    asked = channel.signature_type if channel is not None else request.signature_type
    if kind != asked:
        raise SigningRequestInvalid(f"the request asked for a {asked} signature, not {kind or '?'}")
    recorder = RevocationRecorder()
    checked = LoginVerifier(
        replace(
            verifier.config,
            revocation=recording_checker(verifier.config.revocation, recorder),
        )
    )
    # RAW over DigestInfo(SHA-256(text)) is exactly PKCS#1 v1.5 over text (RFC 8017 §8.2).
    login = checked.verify(
        content=channel.content(request.signed_bytes) if channel else request.signed_bytes,
        signature=signature,
        signature_type="PKCS7" if kind == "PKCS7" else "PKCS1",
        certificate=certificate,
        at=at,
    )
    if channel is not None and login.citizen.form != channel.form:
        from moica_auth.mobile.errors import MobileCertificateRequired

        raise MobileCertificateRequired(f"the signer certificate's form is not {channel.form!r}")
    leaf = login.chain.leaf
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex()
    expected = parse_header(request.text)["signer_key"]
    if not hmac.compare_digest(signer_key(hash_key, fingerprint), expected):
        raise SignerMismatch("the signing certificate is not the logged-in citizen's")

    record: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "request": {
            "portal": request.portal,
            "service": request.service,
            "application_id": request.application_id,
            "nonce": request.nonce,
            "created_at": _iso(request.created_at),
            "expires_at": _iso(request.expires_at),
        },
        "signed_bytes": _b64(request.signed_bytes),
        "signature": _b64(decode_signature(signature)),
        "signature_type": kind,
        "chain": [_b64(c.public_bytes(serialization.Encoding.DER)) for c in login.chain.chain],
        "revocation": _revocation_json(login.revocation, recorder),
        "decision_time": _iso(at),
    }
    if channel is not None:
        record["channel"] = channel.as_json()
    digests = {name: _sha256_hex(record[name]) for name in _covered(record)}
    record["digests"] = digests
    stamp_time: datetime | None = None
    record["timestamp"] = None
    if tsa is not None:
        try:
            token = tsa.timestamp(_manifest_imprint(digests))
        except TimestampError as exc:
            if require_timestamp:
                raise
            logger.warning("signing evidence kept WITHOUT a time-stamp: %s", exc.code)
        else:
            record["timestamp"] = {"token": _b64(token.der)}
            stamp_time = token.gen_time
    return SignedResult(
        login=login, evidence=record, fingerprint=fingerprint, timestamp_time=stamp_time
    )


# --- offline verification -------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceReport:
    """What a verified evidence record proves (see :meth:`as_json`)."""

    signer: dict[str, Any]
    portal: str
    service: str
    application_id: str
    decision_time: datetime
    timestamp_time: datetime | None
    timestamp_tsa: str | None
    revocation: str
    statements: tuple[str, ...]
    #: Archive time-stamps (renewals), oldest first; empty for a record without them.
    archive: tuple[dict[str, Any], ...] = ()
    verified_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out = {
            "ok": True,
            "format": EVIDENCE_FORMAT,
            "signer": self.signer,
            "portal": self.portal,
            "service": self.service,
            "application_id": self.application_id,
            "decision_time": self.decision_time.isoformat(),
            "timestamp_time": self.timestamp_time.isoformat() if self.timestamp_time else None,
            "timestamp_tsa": self.timestamp_tsa,
            "revocation": self.revocation,
            "proves": list(self.statements),
        }
        if self.archive:
            # Only renewed records gain these keys: an unrenewed record reports as before.
            out["archive_timestamps"] = list(self.archive)
            out["verified_at"] = self.verified_at.isoformat() if self.verified_at else None
        return out


def _bad(field: str, reason: str, cause: Exception | None = None) -> EvidenceInvalid:
    detail = f"{field}: {reason}"
    if isinstance(cause, MoicaAuthError):
        detail = f"{detail} ({cause.code})"
    return EvidenceInvalid(detail, field=field, reason=reason)


def _decode_b64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise _bad(field, "is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(field, "is not valid base64") from exc


def _load(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise _bad("file", f"is larger than {MAX_EVIDENCE_BYTES} bytes")
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("file", "is not JSON") from exc
    except RecursionError as exc:
        # "[[[[…" a few thousand deep exhausts the parser's stack: a typed refusal, not a 500.
        raise _bad("file", "is nested too deeply") from exc
    if not isinstance(parsed, dict):
        raise _bad("file", "is not a JSON object")
    return parsed


def _parse_time(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise _bad(field, "is not a time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(field, "is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise _bad(field, "has no time zone")
    return parsed.astimezone(UTC)


def _covered(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The covered fields of ``record``: :data:`COVERED_FIELDS`, and ``channel`` when the
    record has one (a signature through the mobile channel)."""
    return (*COVERED_FIELDS, "channel") if "channel" in record else COVERED_FIELDS


def _check_structure(record: dict[str, Any]) -> dict[str, str]:
    if record.get("format") != EVIDENCE_FORMAT:
        raise _bad("format", f"is not {EVIDENCE_FORMAT}")
    covered = _covered(record)
    expected = {*covered, "format", "digests", "timestamp"}
    for name in sorted(expected - set(record)):
        raise _bad(name, "is missing")
    # ``archive`` (renewals) is optional: records without it are unchanged.
    for name in sorted(set(record) - expected - {"archive"}):
        raise _bad(name, "is not a field of this format")
    digests = record["digests"]
    if (
        not isinstance(digests, dict)
        or set(digests) != set(covered)
        or not all(isinstance(v, str) and _HEX64.fullmatch(v) for v in digests.values())
    ):
        raise _bad("digests", f"must map {', '.join(covered)} to SHA-256 hex")
    return digests


def _verify_timestamp(
    record: dict[str, Any],
    digests: dict[str, str],
    tsa_anchors: Sequence[x509.Certificate],
    tsa_intermediates: Sequence[x509.Certificate] = (),
) -> TimestampToken | None:
    """The original time-stamp, verified at its genTime, its imprint over ``digests``."""
    stamp = record["timestamp"]
    if stamp is None:
        return None
    if not isinstance(stamp, dict) or set(stamp) != {"token"}:
        raise _bad("timestamp", 'must be {"token": base64}')
    token_der = _decode_b64(stamp["token"], "timestamp")
    try:
        token = verify_token(
            token_der, imprint=None, anchors=tsa_anchors, intermediates=tsa_intermediates
        )
    except TimestampError as exc:
        raise _bad("timestamp", exc.detail or "does not verify", exc) from exc
    if not hmac.compare_digest(token.imprint, _manifest_imprint(digests)):
        raise _bad("digests", "do not match the time-stamped imprint")
    return token


def verified_timestamp(
    data: bytes | str | Mapping[str, Any],
    *,
    tsa_anchors: Sequence[x509.Certificate],
    tsa_intermediates: Sequence[x509.Certificate] = (),
) -> tuple[dict[str, Any], TimestampToken | None]:
    """Load a record, check its structure, its original time-stamp (at genTime) and every
    covered field against its digest; returns the record and that token (``None``: the
    record has none). The first steps of :func:`verify_evidence`, for renewal."""
    from moica_auth.signing.archive import recorded_certificates

    record = _load(data)
    digests = _check_structure(record)
    # A renewal records the path of the token it renews: usable as untrusted candidates.
    recorded = [c for c in recorded_certificates(record, 0) if c not in tsa_intermediates]
    token = _verify_timestamp(record, digests, tsa_anchors, [*tsa_intermediates, *recorded])
    for name in _covered(record):
        if not hmac.compare_digest(_sha256_hex(record[name]), digests[name]):
            raise _bad(name, "does not match its digest")
    return record, token


def _verify_revocation(value: object, chain: Sequence[x509.Certificate], at: datetime) -> str:
    if value is None:
        return "not checked: the portal made no revocation check"
    if not isinstance(value, dict) or not isinstance(value.get("entries"), list):
        raise _bad("revocation", "is not a revocation record")
    if len(value["entries"]) > MAX_REVOCATION_ENTRIES:
        raise _bad("revocation", f"has more than {MAX_REVOCATION_ENTRIES} entries")
    if value.get("status") not in ("good", "unknown"):
        raise _bad("revocation", "does not record an accepted status")
    by_hash = {c.fingerprint(hashes.SHA256()).hex(): i for i, c in enumerate(chain)}
    notes: list[str] = []
    leaf_seen = False
    for entry in value["entries"]:
        if not isinstance(entry, dict) or entry.get("status") != "good":
            raise _bad("revocation", "holds an entry that is not a good status")
        index = by_hash.get(str(entry.get("certificate_sha256")))
        if index is None or index + 1 >= len(chain):
            raise _bad("revocation", "names a certificate outside the chain")
        leaf_seen = leaf_seen or index == 0
        if entry.get("source") == "ocsp":
            body = _decode_b64(entry.get("ocsp_response"), "revocation")
            nonce_text = entry.get("ocsp_nonce")
            nonce = _decode_b64(nonce_text, "revocation") if nonce_text is not None else None
            certificate, issuer = chain[index], chain[index + 1]
            request = build_request(certificate=certificate, issuer=issuer, nonce=nonce)
            prepared = PreparedRequest(
                der=b"",
                nonce=nonce,
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
            )
            try:
                answer = OcspSource().verify_response(body, request=prepared, issuer=issuer, at=at)
            except MoicaAuthError as exc:
                raise _bad("revocation", "its OCSP response does not verify", exc) from exc
            if answer.status != "good":
                raise _bad("revocation", "its OCSP response does not say good")
            notes.append("OCSP response re-verified")
        elif entry.get("source") == "crl":
            crl = entry.get("crl")
            if not isinstance(crl, dict) or not isinstance(crl.get("number"), int):
                raise _bad("revocation", "its CRL entry lacks the CRL number")
            notes.append(
                f"CRL {crl['number']} (sha256 {crl.get('sha256') or 'not recorded'}) "
                "as recorded by the portal"
            )
        else:
            raise _bad("revocation", "names an unknown source")
    if value["status"] == "good" and not leaf_seen:
        raise _bad("revocation", "has no status for the signing certificate")
    if value["status"] == "unknown":
        notes.append("status UNKNOWN accepted under the portal's soft-fail policy")
    return "; ".join(notes) or "no entries"


def verify_evidence(
    data: bytes | str | Mapping[str, Any],
    *,
    anchors: Sequence[x509.Certificate],
    tsa_anchors: Sequence[x509.Certificate] = (),
    intermediates: Sequence[x509.Certificate] = (),
    policy: ValidationPolicy | None = None,
    require_timestamp: bool = True,
    tsa_intermediates: Sequence[x509.Certificate] = (),
    at: datetime | None = None,
) -> EvidenceReport:
    """Re-verify an evidence record offline at its decision time.

    Raises :class:`EvidenceInvalid` whose ``data["field"]`` names the field at fault and
    ``data["reason"]`` says why. Checks, in order: structure; the time-stamp token
    (RFC 3161, against ``tsa_anchors``) and its imprint over the digests manifest; each
    field against its digest; the decision time against genTime; the chain at the decision
    time (RFC 5280 §6, MOICA profile); the signature over the signed bytes; the request
    fields against the signed text; the recorded revocation evidence (an OCSP response is
    re-verified, RFC 6960).

    Then the time-stamps as a chain (:func:`moica_auth.signing.archive.check_archive`):
    each valid at the time the next archive time-stamp proves, the newest at ``at`` (the
    verification time; default now). ``tsa_intermediates`` are CA certificates between a
    TSA certificate and ``tsa_anchors`` that a token does not carry.
    """
    from moica_auth.signing.archive import check_archive

    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise ValueError("at must be timezone-aware")
    record = _load(data)
    if require_timestamp and record.get("timestamp") is None:
        _check_structure(record)  # a malformed record is named first, as before
        raise _bad("timestamp", "is absent and a time-stamp is required")
    record, token = verified_timestamp(
        record, tsa_anchors=tsa_anchors, tsa_intermediates=tsa_intermediates
    )
    verified_at = (at or datetime.now(UTC)).astimezone(UTC)
    chain_of_stamps = check_archive(
        record,
        base=token,
        tsa_anchors=tsa_anchors,
        tsa_intermediates=tsa_intermediates,
        at=verified_at,
    )
    stamped = (token.gen_time, token.tsa_certificate.subject.rfc4514_string()) if token else None

    decided = _parse_time(record["decision_time"], "decision_time")
    if stamped is not None:
        gen_time = stamped[0]
        if not decided - TIMESTAMP_SKEW <= gen_time <= decided + TIMESTAMP_MAX_DELAY:
            raise _bad("decision_time", "is not close to the time-stamp's genTime")

    chain_value = record["chain"]
    if not isinstance(chain_value, list) or not chain_value or len(chain_value) > 8:
        raise _bad("chain", "must list 1 to 8 certificates")
    try:
        chain = [x509.load_der_x509_certificate(_decode_b64(c, "chain")) for c in chain_value]
    except ValueError as exc:
        raise _bad("chain", "holds an unreadable certificate") from exc
    try:
        validated = validate_chain(
            certificate=chain[0],
            trust=TrustStore.from_certificates(anchors, intermediates=intermediates),
            intermediates=chain[1:],
            policy=policy or ValidationPolicy(),
            at=decided,
        )
    except MoicaAuthError as exc:
        raise _bad("chain", "does not validate at the decision time", exc) from exc

    channel: SigningChannel | None = None
    if "channel" in record:
        try:
            channel = SigningChannel.from_json(record["channel"])
        except ValueError as exc:
            raise _bad("channel", str(exc)) from exc
    kind = record["signature_type"]
    if kind not in (("PKCS1", "PKCS7") if channel else ("PKCS7", "RAW")) or (
        channel is not None and kind != channel.signature_type
    ):
        raise _bad("signature_type", "is not a signature type of this channel")
    if channel is not None and validated.citizen.form != channel.form:
        raise _bad("channel", f"requires a certificate of form {channel.form!r}")
    signed_bytes = _decode_b64(record["signed_bytes"], "signed_bytes")
    signature = _decode_b64(record["signature"], "signature")
    try:
        verify_signature(
            content=channel.content(signed_bytes) if channel else signed_bytes,
            signature=signature,
            signature_type="PKCS7" if kind == "PKCS7" else "PKCS1",
            certificate=chain[0],
            allowed_hashes=DEFAULT_ALLOWED_HASHES,
        )
    except MoicaAuthError as exc:
        raise _bad("signature", "does not verify over signed_bytes", exc) from exc

    try:
        header = parse_header(signed_bytes.decode("utf-8"))
    except (UnicodeDecodeError, SigningRequestInvalid) as exc:
        raise _bad("signed_bytes", "is not a moica-auth-sign/1 text") from exc
    request = record["request"]
    if not isinstance(request, dict):
        raise _bad("request", "is not an object")
    pairs = {
        "portal": "portal",
        "service": "service",
        "application_id": "application",
        "nonce": "nonce",
    }
    for key, line in pairs.items():
        if request.get(key) != header[line]:
            raise _bad(f"request.{key}", "differs from the signed text")
    created = _parse_time(request.get("created_at"), "request.created_at")
    if header["time"] != created.strftime("%Y-%m-%dT%H:%M:%SZ"):
        raise _bad("request.created_at", "differs from the signed text")
    expires = _parse_time(request.get("expires_at"), "request.expires_at")
    if header["expires"] != expires.strftime("%Y-%m-%dT%H:%M:%SZ"):
        raise _bad("request.expires_at", "differs from the signed text")
    if decided >= expires:
        raise _bad("decision_time", "is after the request expired")
    if decided < created - TIMESTAMP_SKEW:
        raise _bad("decision_time", "is before the request was made")

    revocation = _verify_revocation(record["revocation"], validated.chain, decided)
    citizen: CitizenCertificate = validated.citizen
    statements = [
        f"The holder of the certificate {chain[0].fingerprint(hashes.SHA256()).hex()} "
        "signed exactly signed_bytes (the text shown to them).",
        f"At the decision time {decided.isoformat()} that certificate chained to a given "
        "anchor under the MOICA signing-certificate profile.",
        f"Revocation at the decision time: {revocation}.",
    ]
    if channel is not None:
        what = (
            "signed_bytes itself"
            if channel.tbs == "text"
            else "the line 'moica-auth-sign-sha256/1 ' + SHA-256(signed_bytes) in hex"
        )
        statements.append(
            f"Signed with the mobile citizen certificate (channel {channel.name}, "
            f"{channel.sign_type}, form {channel.form}): the phone signed {what}."
        )
    if stamped is not None:
        statements.append(
            f"The TSA {stamped[1]} attests that this record (every field) existed at "
            f"{stamped[0].isoformat()}, so it does not depend on the certificate staying valid."
        )
    else:
        statements.append(
            "No time-stamp: nothing independent of the portal dates the record; it proves "
            "less once the certificate expires."
        )
    renewals = [s for s in chain_of_stamps if s.index >= 0]
    for stamp in renewals:
        statements.append(
            f"Archive time-stamp {stamp.index} by the TSA {stamp.tsa} attests at "
            f"{stamp.gen_time.isoformat()} that everything before it existed, including the "
            "earlier time-stamps and the data to validate them; the earlier time-stamp's TSA "
            "path was valid then, so it stays proven after that TSA certificate expires."
        )
    if renewals:
        newest = chain_of_stamps[-1]
        statements.append(
            f"The newest time-stamp's TSA certificate is valid at {verified_at.isoformat()} "
            f"and expires {newest.tsa_not_after.isoformat()}: renew the record before then."
        )
    statements.append(
        "That the signer was the logged-in citizen is the portal's check (the signed text "
        "names the login certificate by a keyed hash), not re-verifiable without its key."
    )
    return EvidenceReport(
        signer={
            "name": citizen.name,
            "card_serial": citizen.card_serial or "",
            "certificate_sha256": chain[0].fingerprint(hashes.SHA256()).hex(),
            "issuer": chain[0].issuer.rfc4514_string(),
        },
        portal=header["portal"],
        service=header["service"],
        application_id=header["application"],
        decision_time=decided,
        timestamp_time=stamped[0] if stamped else None,
        timestamp_tsa=stamped[1] if stamped else None,
        revocation=revocation,
        statements=tuple(statements),
        archive=tuple(
            {
                "index": s.index,
                "gen_time": s.gen_time.isoformat(),
                "tsa": s.tsa,
                "tsa_not_after": s.tsa_not_after.isoformat(),
                "valid_at": s.checked_until.isoformat(),
                "crls": s.crls,
            }
            for s in renewals
        ),
        verified_at=verified_at,
    )
