"""Certification path validation (RFC 5280 §6) with the MOICA citizen-certificate profile.

Path building and the RFC 5280 core checks are delegated to
``cryptography.x509.verification`` (signatures, validity of every certificate, CA
basicConstraints, pathLenConstraint, unknown critical extensions, maximum depth). This
module adds what that verifier cannot express, and turns every failure into one specific
:class:`~moica_auth.exceptions.MoicaAuthError`:

====================  ==============================================================
order                 check → error
====================  ==============================================================
1                     leaf validity at ``at`` (§4.1.2.5) → ``CertificateExpired`` /
                      ``CertificateNotYetValid``
2                     the leaf is not MD5/SHA-1 signed → ``WeakHash``
3                     a signature path to an anchor exists, issuers picked by
                      AKI→SKI and signature, never by name (§6.1.3 (a)) →
                      ``UntrustedIssuer``
4                     at most ``max_chain_depth`` intermediates → ``ChainInvalid``
5 (moica)             signing certificate: keyUsage present, critical, exactly
                      digitalSignature (nonRepudiation tolerated), not a CA
                      (§4.2.1.3, §4.2.1.9) → ``WrongKeyUsage``
6 (moica)             certificatePolicies ∩ allowed ≠ ∅ (§4.2.1.4) →
                      ``PolicyNotAllowed``
6b (moica)            SubjectDirectoryAttributes subject type (2.16.886.1.100.2.1) is
                      natural person, 2.16.886.1.100.3.1.1 (§4.2.1.8) →
                      ``NotCitizenCertificate``
7                     RSA ≥ ``min_rsa_bits``; only RSA in the moica profile →
                      ``WeakKey``
8                     no MD5 / SHA-1 signature on the path's CAs → ``WeakHash``
9                     full RFC 5280 validation by ``cryptography`` → ``ChainInvalid``
                      (``WeakKey`` for a CA key it calls too weak)
====================  ==============================================================

Before step 3, the work is bounded (:mod:`moica_auth.validation.bounds`): more than
``max_carried_certificates`` intermediates → ``ChainTooComplex``; a carried certificate
whose key the profile never uses → ``UnsupportedKey``; the issuer search of step 3 may
verify at most ``max_signature_checks`` signatures → ``ChainTooComplex``. Step 7 also
holds the leaf's RSA key to the same exponent and modulus rule (``UnsupportedKey``).

Cheap local checks run before the expensive path validation; a certificate that fails
several checks reports the first in this order. Step 3 is a light search of our own so
that "nobody we trust signed this" (``untrusted_issuer``) is told apart from "a trusted
CA signed it but the path breaks a rule" (``chain_invalid``).

Cost: step 9 is computed right after steps 1-2 (its verdict is still reported at step 9),
so that step 3 need not verify again the signatures of the path ``cryptography`` just
verified; links between the trust store's own CAs are verified once per store. A login
then costs the two RSA verifications of the path, done once, by ``cryptography``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from moica_auth.certificate import (
    OID_NATURAL_PERSON,
    CitizenCertificate,
    load_certificate,
    require_parsable,
)
from moica_auth.exceptions import (
    CertificateExpired,
    CertificateNotYetValid,
    ChainInvalid,
    MoicaAuthError,
    NotCitizenCertificate,
    PolicyNotAllowed,
    UntrustedIssuer,
    WeakHash,
    WeakKey,
    WrongKeyUsage,
)
from moica_auth.validation.bounds import (
    MAX_CARRIED_CERTIFICATES,
    MAX_SIGNATURE_CHECKS,
    SignatureBudget,
    require_carried_count,
    require_usable_key,
)
from moica_auth.validation.trust import TrustStore, signature_verifies

__all__ = [
    "ANY_POLICY",
    "MOICA_POLICY_OID",
    "PROFILES",
    "WEAK_SIGNATURE_HASHES",
    "ValidatedChain",
    "ValidationPolicy",
    "validate_chain",
]

MOICA_POLICY_OID: Final = "2.16.886.101.0.3.3"
ANY_POLICY: Final = "2.5.29.32.0"
PROFILES: Final = frozenset({"moica", "generic"})
WEAK_SIGNATURE_HASHES: Final = frozenset({"md5", "sha1", "md4", "md2"})

# X.660 dotted form, as cryptography's ``dotted_string`` renders an OID.
_DOTTED_OID_RE: Final = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")

# Our own issuer search is only a diagnostic; the depth limit is enforced by
# cryptography (so a too-long chain is chain_invalid, not untrusted_issuer).
_SEARCH_DEPTH: Final = 16


@dataclass(frozen=True)
class ValidationPolicy:
    """What a path must satisfy beyond RFC 5280 §6.

    * ``profile="moica"``: the citizen-certificate profile (signing key usage, policy set,
      RSA only) on top of RFC 5280.
    * ``profile="generic"``: RFC 5280 path validation only (chain, validity, CA
      basicConstraints, CA keyUsage keyCertSign, pathLenConstraint); used for NIST PKITS.
    * ``allowed_policy_oids``: the user-initial-policy-set (RFC 5280 §6.1.1 (c)); the
      leaf must assert one of them (moica profile). Exact dotted OIDs (no white space);
      a bare string or anything else raises ``ValueError``.
    * ``min_rsa_bits``: smallest accepted RSA modulus for the leaf (both profiles).
    * ``max_chain_depth``: most intermediates between leaf and anchor.
    * ``max_carried_certificates``: most untrusted candidate certificates (those a token
      carries) one validation accepts; more → ``ChainTooComplex`` before any work.
    * ``max_signature_checks``: most signature verifications the issuer search may do
      for one validation; more → ``ChainTooComplex``.
    """

    profile: str = "moica"
    allowed_policy_oids: frozenset[str] = frozenset({MOICA_POLICY_OID})
    min_rsa_bits: int = 2048
    max_chain_depth: int = 4
    max_carried_certificates: int = MAX_CARRIED_CERTIFICATES
    max_signature_checks: int = MAX_SIGNATURE_CHECKS

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {self.profile!r}")
        if isinstance(self.allowed_policy_oids, str | bytes):
            # frozenset("2.16.886…") would be a set of characters that no certificate
            # ever matches: a silent lock-out instead of a configuration error.
            raise ValueError("allowed_policy_oids must be a collection of OIDs, not one string")
        object.__setattr__(self, "allowed_policy_oids", frozenset(self.allowed_policy_oids))
        for oid in self.allowed_policy_oids:
            # Compared as exact dotted strings, so " 2.16.886.101.0.3.3" would never match.
            if not isinstance(oid, str) or not _DOTTED_OID_RE.fullmatch(oid):
                raise ValueError(f"allowed_policy_oids holds {oid!r}, not a dotted OID")
        if self.profile == "moica" and not self.allowed_policy_oids:
            raise ValueError("the moica profile needs at least one allowed policy OID")
        if not 1 <= self.min_rsa_bits <= 16384:
            raise ValueError("min_rsa_bits must be between 1 and 16384")
        if not 0 <= self.max_chain_depth <= 255:
            raise ValueError("max_chain_depth must be between 0 and 255")
        if not 0 <= self.max_carried_certificates <= 256:
            raise ValueError("max_carried_certificates must be between 0 and 256")
        if not 1 <= self.max_signature_checks <= 4096:
            raise ValueError("max_signature_checks must be between 1 and 4096")


@dataclass(frozen=True)
class ValidatedChain:
    """A path that passed :func:`validate_chain`: leaf first, trust anchor last."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    citizen: CitizenCertificate
    validated_at: datetime

    @property
    def issuer(self) -> x509.Certificate:
        """The certificate that signed the leaf (the anchor for a one-link path)."""
        return self.chain[1] if len(self.chain) > 1 else self.chain[0]

    @property
    def anchor(self) -> x509.Certificate:
        return self.chain[-1]


# --- helpers --------------------------------------------------------------------------


def _normalise_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("validation time must be timezone-aware (UTC)")
    return at.astimezone(UTC)


def _sanitise(exc: Exception) -> str:
    """The verifier's message without the certificate it names.

    cryptography appends ``(encountered processing <Certificate(subject=…)>)``, and a
    citizen's subject holds their name and card serial: keep that out of logs.
    """
    message = str(exc)
    cut = message.find(" (encountered processing")
    return message[:cut] if cut >= 0 else message


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _signature_hash_name(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "unsupported"
    return algorithm.name if algorithm is not None else None


def _find_path(
    leaf: x509.Certificate,
    trust: TrustStore,
    pool: Sequence[x509.Certificate],
    verified: Sequence[x509.Certificate] = (),
    budget: SignatureBudget | None = None,
) -> list[x509.Certificate] | None:
    """The shortest leaf → … → anchor sequence whose every link is a verified signature
    (breadth-first, so the depth check below sees the shortest possible path).

    ``verified`` is a path that ``cryptography``'s verifier has just validated (leaf
    first): its links are verified signatures already, so they are not verified again
    here; every other candidate link still is (CA → CA links of the store once per
    store), through ``budget`` when given (:class:`ChainTooComplex` once it is spent).
    Each certificate is expanded at most once, and each (child, issuer key) pair is
    verified at most once (:class:`~moica_auth.validation.trust.IssuerSearch`)."""
    if trust.is_anchor(leaf):
        return [leaf]
    search = trust.issuer_search(
        pool,
        verified_links=tuple(pairwise(verified)),
        verify=budget.verify if budget is not None else signature_verifies,
    )
    frontier: list[list[x509.Certificate]] = [[leaf]]
    seen: set[bytes] = {leaf.tbs_certificate_bytes}
    for _ in range(_SEARCH_DEPTH):
        next_frontier: list[list[x509.Certificate]] = []
        for path in frontier:
            for issuer in search.issuers(path[-1]):
                if trust.is_anchor(issuer):
                    return [*path, issuer]
                tbs = issuer.tbs_certificate_bytes
                if tbs not in seen:
                    seen.add(tbs)
                    next_frontier.append([*path, issuer])
        if not next_frontier:
            return None
        frontier = next_frontier
    return None


# --- the individual checks (each raises one specific error) ---------------------------


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    """RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both inclusive."""
    if at < cert.not_valid_before_utc:
        raise CertificateNotYetValid(
            "certificate is not yet valid", not_before=cert.not_valid_before_utc
        )
    if at > cert.not_valid_after_utc:
        raise CertificateExpired("certificate has expired", not_after=cert.not_valid_after_utc)


def _check_signing_usage(cert: x509.Certificate, citizen: CitizenCertificate) -> None:
    """RFC 5280 §4.2.1.3 / §4.2.1.9: the card's signing certificate, not its encryption
    certificate nor a CA. MOICA marks keyUsage critical with digitalSignature only."""
    try:
        ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    except x509.ExtensionNotFound as exc:
        raise WrongKeyUsage("certificate has no keyUsage extension") from exc
    if not ku.critical:
        raise WrongKeyUsage("keyUsage must be critical")
    if citizen.is_ca:
        raise WrongKeyUsage("a CA certificate cannot be used to log in")
    if citizen.usage != "signing":
        raise WrongKeyUsage(
            f"keyUsage {','.join(citizen.key_usage) or 'empty'} is not a signing certificate"
        )


def _check_policies(
    path: Sequence[x509.Certificate], citizen: CitizenCertificate, policy: ValidationPolicy
) -> None:
    """RFC 5280 §4.2.1.4 / §6.1.1 (c): the leaf asserts an allowed policy, and no CA on
    the path restricts its certificatePolicies to a set that excludes every allowed one
    (a simplified form of the §6.1.3 (d) valid_policy_tree, enough for a one-policy PKI)."""
    allowed = policy.allowed_policy_oids
    if not set(citizen.policy_oids) & allowed:
        raise PolicyNotAllowed(
            "certificate asserts none of the allowed policies",
            policies=list(citizen.policy_oids),
        )
    for ca in path[1:-1]:
        try:
            cps = ca.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except x509.ExtensionNotFound:
            continue
        asserted = {p.policy_identifier.dotted_string for p in cps}
        if ANY_POLICY not in asserted and not asserted & allowed:
            raise PolicyNotAllowed("an intermediate CA does not allow the accepted policies")


def _check_natural_person(citizen: CitizenCertificate) -> None:
    """RFC 5280 §4.2.1.8 / the MOICA profile: the subject type attribute says "natural
    person". GRCA also certifies CAs for organisations and agencies, whose signing
    certificates may assert the same GPKI policy OID (2.16.886.101.0.3.3, the level-3
    assurance arc); this is what keeps them out of a *citizen* login."""
    if citizen.subject_type != OID_NATURAL_PERSON:
        raise NotCitizenCertificate(
            "certificate is not a natural person's (subject type "
            f"{citizen.subject_type or 'absent'})",
            subject_type=citizen.subject_type,
        )


def _check_key(
    citizen: CitizenCertificate, cert: x509.Certificate, policy: ValidationPolicy
) -> None:
    """Key strength of the leaf: RSA ≥ ``min_rsa_bits`` (MOICA cards are RSA-2048), and
    an RSA exponent and modulus the profile uses (``UnsupportedKey``)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < policy.min_rsa_bits:
            raise WeakKey(
                f"RSA key of {key.key_size} bits is below {policy.min_rsa_bits}",
                key_size=key.key_size,
            )
    elif policy.profile == "moica":
        raise WeakKey(f"{citizen.key_type} keys are not used by MOICA citizen certificates")
    require_usable_key(cert, profile=policy.profile, role="leaf")


def _check_hashes(path: Sequence[x509.Certificate], trust: TrustStore) -> None:
    """No MD5/SHA-1 signatures on the path. The anchor's own self-signature is not part
    of path validation (RFC 5280 §6.1.1 (d)), so GRCA G1's SHA-1 self-signature is fine."""
    for cert in path:
        if trust.is_anchor(cert):
            continue
        name = _signature_hash_name(cert)
        if name is None or name in WEAK_SIGNATURE_HASHES or name == "unsupported":
            if name is None and cert.signature_algorithm_oid.dotted_string.startswith("1.3.101."):
                continue  # Ed25519/Ed448 sign without a separate hash
            raise WeakHash(f"certificate signed with {name or 'an unknown hash'}")


# --- cryptography extension policies --------------------------------------------------


def _ca_basic_constraints(_: Policy, cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
    # RFC 5280 §6.1.4 (k). Criticality is AGNOSTIC because GRCA G1 (and PKITS) carry a
    # non-critical basicConstraints; §6.1.4 only requires presence and cA=TRUE.
    if not bc.ca:
        raise ValueError("basicConstraints cA is not TRUE")


def _ca_key_usage(_: Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # RFC 5280 §6.1.4 (n): if keyUsage is present, keyCertSign must be set. MOICA-G2 and
    # GRCA-G2 assert only keyCertSign + cRLSign (no digitalSignature): that is enough.
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("CA keyUsage lacks keyCertSign")


def _ca_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    )


def _moica_ee_policy(allowed: frozenset[str]) -> ExtensionPolicy:
    """The MOICA leaf as the verifier sees it: no SAN, no EKU, no basicConstraints are
    required (real citizen certificates have none); keyUsage critical with
    digitalSignature, and an allowed certificate policy. These duplicate the explicit
    checks above on purpose (defence in depth): they cannot fire for a certificate the
    explicit checks accepted."""

    def key_usage(_: Policy, cert: x509.Certificate, ku: x509.KeyUsage) -> None:
        if not ku.digital_signature or ku.key_encipherment or ku.data_encipherment:
            raise ValueError("leaf is not a signing certificate")
        if ku.key_cert_sign or ku.crl_sign:
            raise ValueError("leaf keyUsage is a CA's")

    def policies(_: Policy, cert: x509.Certificate, cp: x509.CertificatePolicies) -> None:
        if not {p.policy_identifier.dotted_string for p in cp} & allowed:
            raise ValueError("leaf asserts no allowed policy")

    def basic_constraints(
        _: Policy, cert: x509.Certificate, bc: x509.BasicConstraints | None
    ) -> None:
        if bc is not None and bc.ca:
            raise ValueError("leaf is a CA")

    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.KeyUsage, Criticality.CRITICAL, key_usage)
        .require_present(x509.CertificatePolicies, Criticality.AGNOSTIC, policies)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, basic_constraints)
    )


def _translate(exc: VerificationError) -> MoicaAuthError:
    """Map a cryptography verification failure to our most specific error."""
    detail = _sanitise(exc)
    lowered = detail.lower()
    if "max depth" in lowered:
        return ChainInvalid("chain longer than max_chain_depth")
    if "key is too weak" in lowered:
        return WeakKey(detail)
    if "not valid at validation time" in lowered:
        return ChainInvalid("an issuing CA certificate is not valid at the validation time")
    return ChainInvalid(detail)


def _run_verifier(
    leaf: x509.Certificate,
    trust: TrustStore,
    pool: Sequence[x509.Certificate],
    policy: ValidationPolicy,
    at: datetime,
) -> tuple[x509.Certificate, ...]:
    ee_policy = (
        _moica_ee_policy(policy.allowed_policy_oids)
        if policy.profile == "moica"
        else ExtensionPolicy.permit_all()
    )
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(trust.anchors)))
            .time(at)
            .max_chain_depth(policy.max_chain_depth)
            .extension_policies(ca_policy=_ca_policy(), ee_policy=ee_policy)
            .build_client_verifier()
        )
        # The client verifier only adds the web-PKI SAN/EKU checks through its default
        # extension policies, which we replace; ``subjects`` is None for a SAN-less leaf.
        verified = verifier.verify(leaf, list(pool))
    except VerificationError as exc:
        raise _translate(exc) from exc
    except ValueError as exc:
        raise ChainInvalid(_sanitise(exc)) from exc
    return tuple(verified.chain)


# --- the verb -------------------------------------------------------------------------


def validate_chain(
    *,
    certificate: x509.Certificate,
    trust: TrustStore,
    intermediates: Sequence[x509.Certificate] = (),
    policy: ValidationPolicy = ValidationPolicy(),
    at: datetime | None = None,
    budget: SignatureBudget | None = None,
) -> ValidatedChain:
    """Validate ``certificate`` up to an anchor of ``trust`` at ``at`` (RFC 5280 §6.1).

    ``intermediates`` are untrusted path-building candidates (e.g. the certificates of a
    CMS SignedData, RFC 5652 §5.1) used together with ``trust.intermediates``. Raises a
    specific :class:`~moica_auth.exceptions.MoicaAuthError` subclass on any failure (see
    the module docstring for the order); never returns an unvalidated chain.

    Work is bounded before it starts: more than ``policy.max_carried_certificates``
    ``intermediates`` raise :class:`ChainTooComplex`, a carried certificate with a key no
    MOICA CA has raises :class:`UnsupportedKey`, and the issuer search verifies at most
    ``budget.limit`` signatures (a fresh :class:`SignatureBudget` of
    ``policy.max_signature_checks`` unless one is given; pass your own to read
    :attr:`SignatureBudget.spent` afterwards).
    """
    when = _normalise_time(at)
    leaf = load_certificate(certificate)
    citizen = CitizenCertificate.from_certificate(leaf)

    _check_validity(leaf, when)
    # The leaf's own signature algorithm is a local property: reject MD5/SHA-1 before
    # searching for an issuer, since a legacy signature may not even be verifiable.
    _check_hashes([leaf], trust)

    # Bounded work (see moica_auth.validation.bounds): how many untrusted candidates,
    # and which keys, are settled before any of them is parsed further or searched.
    require_carried_count(len(intermediates), policy.max_carried_certificates)
    if budget is None:
        budget = SignatureBudget(policy.max_signature_checks)
    pool: list[x509.Certificate] = list(trust.intermediates)
    seen: set[bytes] = {trust._der_of(cert) for cert in pool}
    leaf_der = _der(leaf) if intermediates else b""
    for cert in intermediates:
        candidate = load_certificate(cert)
        der = _der(candidate)
        if der == leaf_der or der in seen:
            continue
        seen.add(der)
        # Token intermediates are attacker-chosen: the issuer search reads their
        # extensions and keys, so refuse unreadable ones here with a typed error, and
        # keys no MOICA CA has before anything is verified with them.
        require_parsable(candidate, "an intermediate certificate's")
        require_usable_key(candidate, profile=policy.profile, role="carried certificate")
        pool.append(candidate)
    # cryptography's verifier runs here, before the checks that precede it in the order
    # above, only so that the path it verified spares _find_path re-verifying the same
    # signatures. Its verdict is reported exactly where it was: an error is held back and
    # raised after the local checks (so the error for a certificate with several faults
    # is unchanged), and on success its chain is the one returned. It always runs in
    # full, verifying every signature on the path.
    verifier_error: Exception | None = None
    verified: tuple[x509.Certificate, ...] = ()
    try:
        verified = _run_verifier(leaf, trust, pool, policy, when)
    except Exception as exc:
        verifier_error = exc
    path = _find_path(leaf, trust, pool, verified, budget)
    if path is None:
        raise UntrustedIssuer("no trusted issuer verifies this certificate", issuer=citizen.issuer)

    if len(path) - 2 > policy.max_chain_depth:
        # cryptography reports only its last candidate's error, so check depth here
        # to name the failure reliably (it enforces the same limit again below).
        raise ChainInvalid("chain longer than max_chain_depth")

    if policy.profile == "moica":
        _check_signing_usage(leaf, citizen)
        _check_policies(path, citizen, policy)
        _check_natural_person(citizen)
    _check_key(citizen, leaf, policy)
    _check_hashes(path, trust)

    if verifier_error is not None:
        raise verifier_error
    chain = verified
    if policy.profile == "moica" and chain != tuple(path):
        # cryptography may have preferred another path than our search: hold the CAs
        # of the path actually returned to the same policy rule.
        _check_policies(chain, citizen, policy)
    return ValidatedChain(leaf=leaf, chain=chain, citizen=citizen, validated_at=when)
