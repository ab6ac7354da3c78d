"""X.509 helpers shared by validation, revocation and the test PKI (private).

Each answers one question about one certificate and never raises for a missing
extension; a malformed extension raises ``ValueError`` as cryptography does.
"""

from __future__ import annotations

from cryptography import x509

__all__ = ["asserts_crl_sign", "is_ca"]


def is_ca(certificate: x509.Certificate) -> bool:
    """basicConstraints cA=TRUE (RFC 5280 §4.2.1.9); absent means not a CA."""
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def asserts_crl_sign(certificate: x509.Certificate) -> bool:
    """keyUsage is present and asserts cRLSign (RFC 5280 §4.2.1.3).

    Stricter than "may sign CRLs" (where an absent keyUsage allows everything): a
    certificate offered as a separate CRL signer must say so explicitly.
    """
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return False
