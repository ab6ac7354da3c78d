"""The CRL index record (RFC 5280 §5, §6.3.3): what an index store keeps and how it is
keyed — :class:`ParsedCrl`, the packed :class:`RevokedEntry` and :func:`decode_entry`,
issuer key ids and distribution-point scopes.

Imports run one way: the parser builds these records, the stores keep them, the source
reads them; this module imports none of those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509

from moica_auth._x509 import is_ca
from moica_auth.exceptions import (
    CrlInvalid,
)
from moica_auth.revocation.crl_der import _NO_REASON, _REASONS, _entry_extensions

__all__ = [
    "COMPLETE_SCOPE",
    "ParsedCrl",
    "RevokedEntry",
    "certificate_crl_urls",
    "certificate_scope_names",
    "decode_entry",
    "scope_covers",
    "scope_key",
]

COMPLETE_SCOPE = ""

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


# --- keys and names -------------------------------------------------------------------


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
    if only_user_certs and is_ca(certificate):
        return False
    if only_ca_certs and not is_ca(certificate):
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
