"""Verify what the card signed: CMS SignedData (HiPKI ``PKCS7``) or a bare PKCS#1 signature.

The HiPKI local component signs the challenge text the server issued and answers with
``signature`` (base64) and ``certb64`` (the signer certificate). :func:`verify_signature`
checks that signature and returns a :class:`VerifiedSignature`; it does **not** decide
whether the certificate is trustworthy (chain, validity, key usage, revocation): that is
:mod:`moica_auth.validation.chain` and :mod:`moica_auth.revocation`.

``cryptography`` has no public API to *verify* CMS (it can only sign), so this package
parses the SignedData structure (RFC 5652 §5) with ``asn1crypto`` and verifies the one
RSA signature with ``cryptography`` primitives. One module per concern, in the order a
token is read:

* :mod:`~moica_auth.signature.wire`: the ``signature`` field from the wire (base64 or
  DER, size-bounded);
* :mod:`~moica_auth.signature.algorithms`: algorithm OIDs and the hash policy;
* :mod:`~moica_auth.signature.cms`: the one CMS SignedData parser;
* :mod:`~moica_auth.signature.signer`: the signer certificate, signed attributes, the
  RSA verification;
* :mod:`~moica_auth.signature.verify`: the entry point :func:`verify_signature`.

Everything is fail-closed: every input that is not exactly what we expect raises a
:class:`~moica_auth.exceptions.MoicaAuthError` subclass, never a library exception and
never ``False``.
"""

from moica_auth.signature.algorithms import (
    DEFAULT_ALLOWED_HASHES,
    OID_CARD_NUMBER,
    OID_RANDOM_NONCE,
    SUPPORTED_HASHES,
    normalize_hash_name,
)
from moica_auth.signature.verify import VerifiedSignature, verify_signature
from moica_auth.signature.wire import MAX_SIGNATURE_BYTES, decode_signature

__all__ = [
    "DEFAULT_ALLOWED_HASHES",
    "MAX_SIGNATURE_BYTES",
    "OID_CARD_NUMBER",
    "OID_RANDOM_NONCE",
    "SUPPORTED_HASHES",
    "VerifiedSignature",
    "decode_signature",
    "normalize_hash_name",
    "verify_signature",
]
