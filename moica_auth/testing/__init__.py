"""Test tooling for moica-auth: a MOICA-like test PKI, a soft card and local responders.

**Every key produced here is a public test key.** See ``docs/testing.md``.
"""

from moica_auth.testing.keys import deterministic_rsa_key
from moica_auth.testing.pki import (
    FIXED_TIME,
    MOICA_POLICY_OID,
    CertifiedKey,
    CitizenCard,
    TestPKI,
    default_pki,
    make_id_number,
)
from moica_auth.testing.softcard import SoftCard, build_signed_data, sign_response

__all__ = [
    "FIXED_TIME",
    "MOICA_POLICY_OID",
    "CertifiedKey",
    "CitizenCard",
    "SoftCard",
    "TestPKI",
    "build_signed_data",
    "default_pki",
    "deterministic_rsa_key",
    "make_id_number",
    "sign_response",
]
