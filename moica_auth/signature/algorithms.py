"""Algorithm identifiers and the hash policy of :mod:`moica_auth.signature`.

Digest OIDs (RFC 3370 §2, RFC 5754 §2), RSA signature OIDs (RFC 3370 §3.2, RFC 4055 §5,
RFC 5754 §3.2) and which hashes a deployment accepts: MD2/MD4/MD5 never, SHA-1 only when
``allowed_hashes`` names it.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes

from moica_auth.exceptions import WeakHash

__all__ = [
    "DEFAULT_ALLOWED_HASHES",
    "OID_CARD_NUMBER",
    "OID_RANDOM_NONCE",
    "SUPPORTED_HASHES",
    "check_hash",
    "normalize_hash_name",
]

DEFAULT_ALLOWED_HASHES: Final = frozenset({"sha256", "sha384", "sha512"})

# Signed attributes HiPKI adds to its PKCS7 output (see ../shared/DOMAIN.md).
OID_RANDOM_NONCE: Final = "1.2.840.113549.1.9.25.3"  # PKCS #9 randomNonce
OID_CARD_NUMBER: Final = "2.16.886.1.100.2.204"

OID_DATA: Final = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"
OID_MGF1: Final = "1.2.840.113549.1.1.8"

# Digest algorithm OIDs (RFC 3370 §2, RFC 5754 §2). MD2/MD5 are named so that they get
# the precise "weak hash" refusal instead of "unknown algorithm".
DIGEST_BY_OID: Final = {
    "1.2.840.113549.2.2": "md2",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

# Signature algorithm OIDs (RFC 3370 §3.2, RFC 4055 §5, RFC 5754 §3.2): the value is the
# hash the OID fixes, or None when the hash comes from elsewhere (digestAlgorithm / PSS
# parameters).
RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
RSASSA_PSS: Final = "1.2.840.113549.1.1.10"
RSA_PKCS1_SIG_HASH: Final = {
    RSA_ENCRYPTION: None,
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.3.14.3.2.29": "sha1",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}

HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# Never acceptable, whatever ``allowed_hashes`` says (collisions are practical).
_ALWAYS_REJECTED: Final = frozenset({"md2", "md4", "md5"})
#: Every name ``allowed_hashes`` may usefully hold (SHA-1 only if explicitly allowed).
SUPPORTED_HASHES: Final = frozenset(HASHES)


def normalize_hash_name(name: str) -> str:
    """``"SHA256"``, ``"SHA-256"``, ``"sha256"`` → ``"sha256"`` (HiPKI ``hashAlgorithm``)."""
    return name.strip().lower().replace("-", "").replace("_", "")


def check_hash(name: str, allowed_hashes: frozenset[str]) -> type[hashes.HashAlgorithm]:
    """Refuse MD2/MD5 always, and anything outside ``allowed_hashes`` (SHA-1 by default)."""
    if name in _ALWAYS_REJECTED or name not in allowed_hashes or name not in HASHES:
        raise WeakHash(f"hash algorithm {name!r} is not accepted", hash_algorithm=name)
    return HASHES[name]
