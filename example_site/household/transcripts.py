"""Signed household-registration e-transcripts (電子戶籍謄本) and their verification.

A transcript file is a JSON envelope::

    {"format": "moica-auth-demo/household-transcript/1",
     "document": "<the transcript, itself JSON text>",
     "signature": "<base64 DER CMS SignedData, detached, over the UTF-8 document>"}

The signature is a CMS SignedData (RFC 5652 §5) with signed attributes (contentType,
messageDigest, signingTime; §5.4, §11), made with the household office's document-signing
certificate, which the CMS carries (§5.1 ``certificates``). Anyone can verify a file:
:func:`verify_transcript` checks the CMS signature over the exact document bytes with
:func:`moica_auth.signature.verify_signature`, then that the signer certificate was
issued by a trusted root, was valid when it signed (RFC 5280 §4.1.2.5, §6.1.3 (a)(2)) and
may sign documents (keyUsage digitalSignature + nonRepudiation, §4.2.1.3).

Any edit to the document changes its digest, so a tampered file is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from moica_auth.exceptions import MoicaAuthError
from moica_auth.signature import verify_signature
from moica_auth.testing.softcard import build_signed_data

__all__ = [
    "FORMAT",
    "MAX_FILE_BYTES",
    "TranscriptCheck",
    "TranscriptRejected",
    "sign_transcript",
    "verify_transcript",
]

FORMAT = "moica-auth-demo/household-transcript/1"
MAX_FILE_BYTES = 256 * 1024


class TranscriptRejected(Exception):
    """The file is not a valid transcript; ``reason`` is a stable code for the page."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class TranscriptCheck:
    """A transcript whose signature and issuer were verified."""

    document: dict[str, Any]
    issuer_name: str  # the signer certificate's subject CN
    issuer_subject: str  # RFC 4514
    signed_at: datetime | None
    certificate: x509.Certificate


def sign_transcript(
    document: dict[str, Any],
    *,
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey,
    at: datetime,
) -> bytes:
    """The transcript file (UTF-8 JSON bytes) for ``document``, signed as above."""
    text = json.dumps(
        {**document, "transcript_number": secrets.token_hex(8).upper()},
        ensure_ascii=False,
        sort_keys=True,
        indent=2,
    )
    signed = build_signed_data(
        content=text.encode("utf-8"),
        private_key=private_key,
        certificate=certificate,
        detached=True,
        signing_time=at.astimezone(UTC),
    )
    envelope = {
        "format": FORMAT,
        "document": text,
        "signature": base64.b64encode(signed).decode("ascii"),
    }
    return json.dumps(envelope, ensure_ascii=False, indent=2).encode("utf-8")


def _issued_by_anchor(cert: x509.Certificate, anchors: Sequence[x509.Certificate]) -> bool:
    for anchor in anchors:
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def verify_transcript(
    data: bytes, *, anchors: Sequence[x509.Certificate], at: datetime
) -> TranscriptCheck:
    """Verify a transcript file; raise :class:`TranscriptRejected` with a reason code.

    Reasons: ``too_large``, ``not_a_transcript`` (not the envelope format),
    ``signature_invalid`` (the document was changed, or the signature is broken),
    ``untrusted_issuer``, ``issuer_not_valid`` (signer certificate outside its validity
    at signing time or now), ``not_a_document_signer`` (keyUsage).
    """
    if len(data) > MAX_FILE_BYTES:
        raise TranscriptRejected("too_large")
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        # ValueError: bad UTF-8, bad JSON, or an integer over Python's 4,300-digit limit.
        raise TranscriptRejected("not_a_transcript") from None
    if (
        not isinstance(envelope, dict)
        or envelope.get("format") != FORMAT
        or not isinstance(envelope.get("document"), str)
        or not isinstance(envelope.get("signature"), str)
    ):
        raise TranscriptRejected("not_a_transcript")
    text: str = envelope["document"]
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise TranscriptRejected("signature_invalid") from None
    try:
        verified = verify_signature(
            content=text.encode("utf-8"), signature=signature, signature_type="PKCS7"
        )
    except MoicaAuthError:
        # MalformedSignature, SignatureInvalid (digest of an edited document), WeakHash…
        raise TranscriptRejected("signature_invalid") from None
    cert = verified.certificate
    if not _issued_by_anchor(cert, anchors):
        raise TranscriptRejected("untrusted_issuer")
    for moment in (verified.signing_time, at):
        if moment is not None and not (
            cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc
        ):
            raise TranscriptRejected("issuer_not_valid")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise TranscriptRejected("not_a_document_signer") from None
    if not (usage.digital_signature and usage.content_commitment):
        raise TranscriptRejected("not_a_document_signer")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise TranscriptRejected("not_a_transcript") from None
    if not isinstance(document, dict):
        raise TranscriptRejected("not_a_transcript")
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return TranscriptCheck(
        document=document,
        issuer_name=str(names[0].value) if names else cert.subject.rfc4514_string(),
        issuer_subject=cert.subject.rfc4514_string(),
        signed_at=verified.signing_time,
        certificate=cert,
    )
