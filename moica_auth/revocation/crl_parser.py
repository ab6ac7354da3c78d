"""CRL verification and indexing: :func:`parse_crl` (RFC 5280 §5, §6.3.3).

See :mod:`moica_auth.revocation.crl` for the deliberate refusals (delta, indirect,
onlySomeReasons CRLs, unknown critical extensions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from moica_auth._x509 import declared_key_ids, key_id, verify_with_key
from moica_auth.exceptions import (
    CrlInvalid,
)
from moica_auth.revocation.crl_der import _index_entries, _layout
from moica_auth.revocation.crl_index import (
    ParsedCrl,
    _dp_names,
    scope_key,
)

DEFAULT_SKEW = timedelta(minutes=5)

_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.FRESHEST_CRL,
    }
)


# --- parsing --------------------------------------------------------------------------


def _to_der(data: bytes) -> bytes:
    if data.lstrip()[:10] == b"-----BEGIN":
        if data.count(b"-----BEGIN") != 1:
            raise CrlInvalid("a PEM CRL file must hold exactly one CRL")
        try:
            return x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CrlInvalid("unreadable PEM CRL") from exc
    return data


#: Hashes a CRL signature may use by default. SHA-1 and MD5 are refused, as they are for
#: the login signature (docs/security.md); EdDSA signs without a separate hash.
DEFAULT_CRL_HASHES = frozenset({"sha256", "sha384", "sha512"})


def _signature_algorithm(
    crl: x509.CertificateRevocationList,
) -> tuple[object, hashes.HashAlgorithm | None]:
    """(padding / ECDSA parameters, hash) of the CRL's signatureAlgorithm.

    An OID or parameters ``cryptography`` does not know raise ``UnsupportedAlgorithm``
    or ``ValueError``, which are not :class:`CrlInvalid`; translate them here so that a
    refresher records ``crl_invalid`` instead of crashing.
    """
    try:
        params = crl.signature_algorithm_parameters
        algorithm = crl.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise CrlInvalid("the CRL signature algorithm is not supported") from exc
    return params, algorithm


def _check_hash(crl: x509.CertificateRevocationList, allowed_hashes: frozenset[str]) -> None:
    _, algorithm = _signature_algorithm(crl)
    if algorithm is not None and algorithm.name not in allowed_hashes:
        raise CrlInvalid(f"the CRL is signed with {algorithm.name}, which is not accepted")


def _verify(public_key: object, crl: x509.CertificateRevocationList, tbs: memoryview) -> bool:
    """Verify the CRL signature over the raw tbsCertList bytes as received.

    ``crl.is_signature_valid`` re-encodes tbsCertList before verifying (measured: it
    costs as much as the whole index walk on a 20 MB CRL); we already hold the exact
    bytes that were signed, so verify those.
    """
    params, algorithm = _signature_algorithm(crl)
    return verify_with_key(
        public_key,
        crl.signature,
        tbs,
        params=params,
        hash_algorithm=algorithm if isinstance(algorithm, hashes.HashAlgorithm) else None,
    )


def _may_sign_crls(certificate: x509.Certificate) -> bool:
    # RFC 5280 §6.3.3 (f): the CRL issuer's keyUsage, when present, must assert cRLSign.
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.crl_sign


def _select_issuer(
    crl: x509.CertificateRevocationList,
    tbs: memoryview,
    issuers: Sequence[x509.Certificate],
    signers: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, x509.Certificate]:
    """Pick (covered CA, signing certificate) for a CRL (RFC 5280 §6.3.3 (f)).

    The signer is chosen by name, then AuthorityKeyIdentifier, then signature — never
    by name alone, since MOICA G2 and G3 share a DN. A separate CRL-signing
    certificate (``signers``, validated by the caller to the same trust anchor) covers
    the CA with the same DN issued by the same parent key.
    """
    try:
        found = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        aki = found.value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    named = [c for c in (*issuers, *signers) if c.subject == crl.issuer]
    if not named:
        raise CrlInvalid("no known CA has the CRL issuer name")
    if aki is not None:
        named = [c for c in named if aki in declared_key_ids(c)]
        if not named:
            raise CrlInvalid("CRL authorityKeyIdentifier matches no known CA key")
    signer = next((c for c in named if _verify(c.public_key(), crl, tbs)), None)
    if signer is None:
        raise CrlInvalid("CRL signature could not be verified")
    if not _may_sign_crls(signer):
        raise CrlInvalid("the CRL issuer is not allowed to sign CRLs (keyUsage lacks cRLSign)")
    if any(signer is c for c in issuers):
        return signer, signer
    covered = [
        c
        for c in issuers
        if c.subject == signer.subject
        and c.issuer == signer.issuer
        and _authority_key(c) == _authority_key(signer)
    ]
    if len(covered) != 1:
        raise CrlInvalid("cannot tell which CA a separately signed CRL speaks for")
    return covered[0], signer


def _authority_key(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def parse_crl(
    data: bytes,
    *,
    issuers: Sequence[x509.Certificate],
    at: datetime | None = None,
    signers: Sequence[x509.Certificate] = (),
    skew: timedelta = DEFAULT_SKEW,
    url: str | None = None,
    allowed_hashes: frozenset[str] = DEFAULT_CRL_HASHES,
) -> ParsedCrl:
    """Verify a CRL and index its entries (RFC 5280 §5, §6.3.3).

    Checks, each raising :class:`CrlInvalid`: complete DER (truncation and trailing
    bytes refused), the same signature algorithm inside and outside tbsCertList
    (§5.1.1.2), issuer chosen by DN + AKI and proven by signature, cRLSign, thisUpdate
    not in the future beyond ``skew``, nextUpdate present (§5.1.2.5), a CRL number
    (§5.2.3), no delta/indirect/onlySomeReasons, no unknown critical extension on the
    CRL or any entry (§5.2, §5.3), a signature hash in ``allowed_hashes`` (SHA-1 and MD5
    are refused unless a caller opts in explicitly). Staleness (``at`` past nextUpdate)
    is not an error here: the source reports it, and a stale CRL still beats none for
    "revoked".
    """
    at = at or datetime.now(UTC)
    der = _to_der(data)
    layout = _layout(der)
    if layout.tbs_algorithm != layout.outer_algorithm:
        raise CrlInvalid("signatureAlgorithm differs from tbsCertList signature")
    try:
        crl = x509.load_der_x509_crl(der)
        # cryptography decodes these lazily: read each once here, where a ValueError
        # (e.g. a malformed issuer name) becomes crl_invalid, never a crash.
        extensions = crl.extensions
        issuer_name = crl.issuer.rfc4514_string()
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise CrlInvalid("the CRL could not be parsed") from exc

    number: int | None = None
    idp: x509.IssuingDistributionPoint | None = None
    for ext in extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise CrlInvalid("delta CRLs are not supported")
        if ext.oid == ExtensionOID.CRL_NUMBER and isinstance(ext.value, x509.CRLNumber):
            number = ext.value.crl_number
        elif ext.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT and isinstance(
            ext.value, x509.IssuingDistributionPoint
        ):
            idp = ext.value
        elif ext.oid not in _KNOWN_CRL_EXTENSIONS and ext.critical:
            raise CrlInvalid(f"unknown critical CRL extension {ext.oid.dotted_string}")

    _check_hash(crl, allowed_hashes)
    ca, signer = _select_issuer(crl, layout.tbs, issuers, signers)

    if number is None or number < 0:
        raise CrlInvalid("the CRL has no CRL number")
    if next_update is None:
        raise CrlInvalid("the CRL has no nextUpdate")
    if next_update < this_update:
        raise CrlInvalid("the CRL nextUpdate precedes thisUpdate")
    if this_update > at + skew:
        raise CrlInvalid("the CRL thisUpdate is in the future")

    names: tuple[str, ...] = ()
    only_user = only_ca = False
    if idp is not None:
        if idp.indirect_crl:
            raise CrlInvalid("indirect CRLs are not supported")
        if idp.only_some_reasons:
            raise CrlInvalid("onlySomeReasons partitions are not supported")
        if idp.only_contains_attribute_certs:
            raise CrlInvalid("attribute-certificate CRLs are not supported")
        names = _dp_names(idp.full_name, idp.relative_name, crl.issuer)
        only_user = idp.only_contains_user_certs
        only_ca = idp.only_contains_ca_certs

    entries = _index_entries(der, layout.revoked_start, layout.revoked_end)
    return ParsedCrl(
        issuer_key_id=key_id(ca),
        signer_key_id=key_id(signer),
        issuer_name=issuer_name,
        number=number,
        this_update=this_update,
        next_update=next_update,
        scope=scope_key(names, only_user, only_ca),
        scope_names=names,
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        entries=entries,
        size=len(der),
        sha256=hashlib.sha256(der).hexdigest(),
        url=url,
    )
