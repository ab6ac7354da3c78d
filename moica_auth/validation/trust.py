"""Trust anchors for MOICA certificates: the pinned official CAs and the trust store.

The official CA certificates are not shipped in this package. Administrators load them
from the official repositories (:data:`OFFICIAL_CA_URLS`) or from a local copy, and
:func:`official_name` / :func:`require_official` compare the SHA-256 of their DER with the
pinned :data:`OFFICIAL_CA_FINGERPRINTS`.

Issuer selection (RFC 5280 §4.2.1.1, §6.1.3 (a)(4)) never relies on names alone: the MOICA
G1/G2/G3 CAs share one byte-identical DN, as do GRCA G1 and G2. :meth:`TrustStore.find_issuers`
matches the name, then the AuthorityKeyIdentifier against the SubjectKeyIdentifier, and
then verifies the signature with the candidate's key. A store remembers, for itself only,
the results that depend on its own (immutable) certificates alone: which of its CAs signed
which, and which of them bear a given issuer Name; each is a pure function of DER octets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from moica_auth._x509 import verify_with_key
from moica_auth.certificate import EXTENSION_ERRORS, load_certificates
from moica_auth.exceptions import ConfigurationError, MalformedCertificate

__all__ = [
    "LEGACY_CA_NAMES",
    "OFFICIAL_CA_FINGERPRINTS",
    "OFFICIAL_CA_URLS",
    "IssuerSearch",
    "TrustStore",
    "fingerprint",
    "official_name",
    "require_official",
    "signature_verifies",
]

# SHA-256 of the DER of each official CA certificate (lower-case hex). Source:
# ../shared/data/anchors/README.md, matching independent public copies.
OFFICIAL_CA_FINGERPRINTS: Final[dict[str, str]] = {
    "GRCA-G1": "7600295eefe85b9e1fd624db76062aaaae59818a54d2774cd4c0b2c01131e1b3",
    "GRCA-G2": "70b922bfda0e3f4a342e4ee22d579ae598d071cc5ec9c30f123680340388aea5",
    "GRCA-G3": "57df6f20e04c588e85f35be8832f5d4e78958336ae3b18fb7c9bae0dfead4044",
    "MOICA-G2": "c4c462de463f856804dc898338d2cecb55fba74155851599d8fb7d70218fd1be",
    "MOICA-G3": "ed793fd0d50a2a398049d598982cf01e75f873b532066caec238f800a06ca9da",
}

OFFICIAL_CA_URLS: Final[dict[str, str]] = {
    "GRCA-G1": "https://grca.nat.gov.tw/repository/Certs/GRCA.cer",
    "GRCA-G2": "https://grca.nat.gov.tw/repository/Certs/GRCA2.cer",
    "GRCA-G3": "https://grca.nat.gov.tw/repository/Certs/GRCAG3.crt",
    "MOICA-G2": "https://moica.nat.gov.tw/repository/Certs/MOICA2.cer",
    "MOICA-G3": "https://moica.nat.gov.tw/repository/Certs/MOICA-G3.cer",
}

# GRCA G1 is SHA-1 signed, has a non-critical basicConstraints and issued only the expired
# MOICA G1: pinned so it can be recognised, not recommended as an anchor.
LEGACY_CA_NAMES: Final = frozenset({"GRCA-G1"})

# How many issuer Names TrustStore._find_issuers remembers the matching CAs of, and the
# longest Name (DER octets) it remembers: real CA Names are ~100 octets, while an
# attacker's certificate may name an issuer of tens of kB.
_ISSUER_MEMO_SIZE: Final = 256
_ISSUER_MEMO_MAX_NAME: Final = 1024

_NAME_BY_FINGERPRINT: Final = {fp: name for name, fp in OFFICIAL_CA_FINGERPRINTS.items()}


def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER."""
    return cert.fingerprint(hashes.SHA256()).hex()


def official_name(cert: x509.Certificate) -> str | None:
    """The pinned name ("GRCA-G2", "MOICA-G3", …) of an official CA certificate, else None."""
    return _NAME_BY_FINGERPRINT.get(fingerprint(cert))


def require_official(cert: x509.Certificate, *, allow_legacy: bool = False) -> str:
    """Return the pinned name of ``cert`` or raise ``ConfigurationError``.

    Use it when loading anchors from a download: a file that does not match a pinned
    fingerprint is not the official certificate, whatever its subject says.
    """
    name = official_name(cert)
    if name is None:
        raise ConfigurationError(
            f"certificate {fingerprint(cert)} is not one of the pinned official MOICA/GRCA CAs"
        )
    if name in LEGACY_CA_NAMES and not allow_legacy:
        raise ConfigurationError(f"{name} is a legacy CA; pass allow_legacy=True to use it")
    return name


def _key_id(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier
    return None


def signature_verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s public key verifies ``cert``'s signature (RFC 5280 §6.1.3 (a)(1)).

    Unlike ``Certificate.verify_directly_issued_by`` this also answers for legacy
    algorithms (SHA-1), so that the chain validator can report a *weak hash* rather than
    an *unknown issuer*. Whether the algorithm is acceptable is decided elsewhere.
    """
    try:
        # A candidate's key type, or the certificate's signature algorithm, may be
        # unknown to cryptography (UnsupportedAlgorithm): "does not verify", not a crash.
        key = issuer.public_key()
        params = cert.signature_algorithm_parameters
        hash_alg = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return verify_with_key(
        key, cert.signature, cert.tbs_certificate_bytes, params=params, hash_algorithm=hash_alg
    )


def _require_ca(cert: x509.Certificate, role: str) -> None:
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound as exc:
        raise ConfigurationError(f"{role} {cert.subject.rfc4514_string()} is not a CA") from exc
    except EXTENSION_ERRORS as exc:
        raise MalformedCertificate(f"{role} has invalid extensions") from exc
    if not (isinstance(bc, x509.BasicConstraints) and bc.ca):
        raise ConfigurationError(f"{role} {cert.subject.rfc4514_string()} is not a CA")


@dataclass(frozen=True)
class TrustStore:
    """The certificates a relying party trusts (anchors) and the CA certificates it may
    use to build paths (intermediates), per RFC 5280 §6.1.1 (d) trust anchor information.

    Every anchor and intermediate must be a CA (basicConstraints cA=TRUE); anything else
    raises ``ConfigurationError`` at construction, so a misconfigured deployment fails at
    start-up rather than at the first login.
    """

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    # Per-store memos (see _find_issuers), never shared with another store:
    # ``dataclasses.replace`` builds a new store with new, empty ones. They hold pure
    # functions of DER octets only, so they can never make a different certificate pass.
    _own: tuple[x509.Certificate, ...] = field(
        default=(), init=False, repr=False, compare=False, hash=False
    )
    _skis: tuple[bytes | None, ...] = field(
        default=(), init=False, repr=False, compare=False, hash=False
    )
    _ders: tuple[bytes, ...] = field(default=(), init=False, repr=False, compare=False, hash=False)
    # DER → position in ``_own`` (the first, for a certificate both anchor and intermediate).
    _position: dict[bytes, int] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    # signature_verifies(own[i], own[j]) by (i, j): at most len(store)² entries.
    _links: dict[tuple[int, int], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    # issuer Name DER → indexes of the own certificates whose subject equals that Name.
    _by_issuer: OrderedDict[bytes, tuple[int, ...]] = field(
        default_factory=OrderedDict, init=False, repr=False, compare=False, hash=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples so the dataclass stays hashable-ish
        # and immutable.
        object.__setattr__(self, "anchors", tuple(self.anchors))
        object.__setattr__(self, "intermediates", tuple(self.intermediates))
        if not self.anchors:
            raise ConfigurationError("a trust store needs at least one anchor")
        for cert in self.anchors:
            if not isinstance(cert, x509.Certificate):
                raise ConfigurationError("trust anchors must be x509.Certificate objects")
            _require_ca(cert, "trust anchor")
        for cert in self.intermediates:
            if not isinstance(cert, x509.Certificate):
                raise ConfigurationError("intermediates must be x509.Certificate objects")
            _require_ca(cert, "intermediate")
        own = self.anchors + self.intermediates
        object.__setattr__(self, "_own", own)
        # Extensions of every own certificate were read by _require_ca: this cannot raise.
        object.__setattr__(
            self, "_skis", tuple(_key_id(c, ExtensionOID.SUBJECT_KEY_IDENTIFIER) for c in own)
        )
        ders = tuple(_der(c) for c in own)
        object.__setattr__(self, "_ders", ders)
        for position, der in enumerate(ders):
            self._position.setdefault(der, position)

    def __copy__(self) -> TrustStore:
        # The memos hold a lock, which cannot be copied: a copy is a new store with the
        # same certificates (certificates are immutable) and memos of its own.
        return TrustStore(anchors=self.anchors, intermediates=self.intermediates)

    def __deepcopy__(self, memo: dict[int, object]) -> TrustStore:
        return self.__copy__()

    @classmethod
    def from_certificates(
        cls,
        anchors: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
    ) -> TrustStore:
        """Build a store from certificate objects (duplicates by DER are dropped)."""
        return cls(anchors=_unique(anchors), intermediates=_unique(intermediates))

    @classmethod
    def from_pem_files(
        cls,
        anchors: Iterable[str | PathLike[str]],
        intermediates: Iterable[str | PathLike[str]] = (),
    ) -> TrustStore:
        """Build a store from PEM (or DER) files; each file may hold a PEM bundle."""

        def read(paths: Iterable[str | PathLike[str]]) -> list[x509.Certificate]:
            out: list[x509.Certificate] = []
            for path in paths:
                try:
                    out.extend(load_certificates(Path(path).read_bytes()))
                except OSError as exc:
                    raise ConfigurationError(f"cannot read certificate file {path}") from exc
            return out

        return cls.from_certificates(read(anchors), read(intermediates))

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Anchors then intermediates."""
        return self.anchors + self.intermediates

    def is_anchor(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` is one of the anchors (by DER, not by name)."""
        return any(cert is anchor or cert == anchor for anchor in self.anchors)

    def find_issuers(
        self, cert: x509.Certificate, extra: Sequence[x509.Certificate] = ()
    ) -> tuple[x509.Certificate, ...]:
        """Candidate issuers of ``cert`` among the anchors, intermediates and ``extra``.

        A candidate must (RFC 5280 §6.1.3 (a)(4)) have ``cert.issuer`` as subject, (§4.2.1.1)
        have a SubjectKeyIdentifier equal to ``cert``'s AuthorityKeyIdentifier when both are
        present, and (§6.1.3 (a)(1)) verify ``cert``'s signature. Name equality alone never
        suffices. Anchors come first in the result.
        """
        return self.issuer_search(extra).issuers(cert)

    def issuer_search(
        self,
        extra: Sequence[x509.Certificate] = (),
        *,
        verified_links: Sequence[tuple[x509.Certificate, x509.Certificate]] = (),
        verify: Callable[[x509.Certificate, x509.Certificate], bool] = signature_verifies,
    ) -> IssuerSearch:
        """An :class:`IssuerSearch` over this store and ``extra`` for one validation."""
        return IssuerSearch(self, extra, verified_links=verified_links, verify=verify)

    def holds(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` (by DER) is one of this store's anchors or intermediates."""
        return self._index(cert) is not None

    def _der_of(self, cert: x509.Certificate) -> bytes:
        """``cert``'s DER, without re-encoding it when it is one of the store's objects."""
        for position, own in enumerate(self._own):
            if cert is own:
                return self._ders[position]
        return _der(cert)

    def _index(self, cert: x509.Certificate) -> int | None:
        """The position of ``cert`` (by DER) among the anchors then intermediates."""
        for position, own in enumerate(self._own):
            # ``is`` first: the pool holds the store's own objects.
            if cert is own:
                return position
        return self._position.get(_der(cert))

    def _subjects_equal_to(self, issuer: x509.Name) -> tuple[int, ...]:
        """Indexes, in order, of the own certificates whose subject ``==`` ``issuer``."""
        key = issuer.public_bytes()
        with self._lock:
            known = self._by_issuer.get(key)
            if known is not None:
                self._by_issuer.move_to_end(key)
                return known
        # Outside the lock: a subject is parsed lazily and may raise, as it did before.
        known = tuple(i for i, own in enumerate(self._own) if own.subject == issuer)
        if len(key) > _ISSUER_MEMO_MAX_NAME:
            return known
        with self._lock:
            self._by_issuer[key] = known
            while len(self._by_issuer) > _ISSUER_MEMO_SIZE:
                self._by_issuer.popitem(last=False)
        return known

    def _own_link(self, child: int, issuer: int) -> bool:
        """``signature_verifies(own[child], own[issuer])``, memoised for the store."""
        with self._lock:
            known = self._links.get((child, issuer))
        if known is None:
            known = signature_verifies(self._own[child], self._own[issuer])
            with self._lock:
                self._links[(child, issuer)] = known
        return known


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _key_der(cert: x509.Certificate) -> bytes | None:
    """The SubjectPublicKeyInfo DER of ``cert``; None if the key cannot be read."""
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return None


class IssuerSearch:
    """Issuer candidates of certificates, for one validation over one store and pool.

    Built once per validation so that each step of a path search costs time linear in
    the candidates that bear the wanted issuer Name, not in the whole pool:

    * the pool is indexed once by subject Name DER (duplicates and the store's own
      certificates dropped: those are weighed as own certificates);
    * a (child, issuer) pair in ``verified_links`` is a signature the caller has
      *already verified* (a link of the path ``cryptography``'s verifier has just
      validated): it is not verified again;
    * a link between two of the store's own certificates is verified once per store;
    * any other check goes through ``verify`` (a :class:`SignatureBudget`'s, in path
      validation) at most once per (child, issuer public key): certificates that share a
      key cost one verification per child, not one per candidate.
    """

    def __init__(
        self,
        store: TrustStore,
        extra: Sequence[x509.Certificate],
        *,
        verified_links: Sequence[tuple[x509.Certificate, x509.Certificate]] = (),
        verify: Callable[[x509.Certificate, x509.Certificate], bool] = signature_verifies,
    ) -> None:
        self._store = store
        self._verify = verify
        self._links = {
            (store._der_of(child), store._der_of(parent)) for child, parent in verified_links
        }
        self._memo: dict[tuple[bytes, bytes], bool] = {}
        self._keys: dict[bytes, bytes | None] = {}
        self._by_subject: dict[bytes, list[tuple[x509.Certificate, bytes, bytes | None]]] = {}
        seen: set[bytes] = set()
        for candidate in extra:
            der = store._der_of(candidate)
            if der in seen or der in store._position:
                continue
            seen.add(der)
            try:
                subject = candidate.subject.public_bytes()
            except ValueError:
                continue  # a Name that does not parse names no issuer
            ski = _key_id(candidate, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
            self._by_subject.setdefault(subject, []).append((candidate, der, ski))

    def issuers(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """The verified issuers of ``cert``: own certificates (anchors first), then pool."""
        store = self._store
        aki = _key_id(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        cert_der = store._der_of(cert)
        child = store._position.get(cert_der)
        issuer = cert.issuer
        found: list[x509.Certificate] = []
        found_der: set[bytes] = set()
        for position in store._subjects_equal_to(issuer):
            candidate_der = store._ders[position]
            if candidate_der in found_der:
                continue
            ski = store._skis[position]
            if aki is not None and ski is not None and ski != aki:
                continue
            candidate = store._own[position]
            if (cert_der, candidate_der) in self._links or (
                store._own_link(child, position)
                if child is not None
                else self._checked(cert, cert_der, candidate, candidate_der)
            ):
                found.append(candidate)
                found_der.add(candidate_der)
        for candidate, candidate_der, ski in self._by_subject.get(issuer.public_bytes(), ()):
            if candidate_der in found_der:
                continue
            if aki is not None and ski is not None and ski != aki:
                continue
            if (cert_der, candidate_der) in self._links or self._checked(
                cert, cert_der, candidate, candidate_der
            ):
                found.append(candidate)
                found_der.add(candidate_der)
        return tuple(found)

    def _checked(
        self,
        cert: x509.Certificate,
        cert_der: bytes,
        candidate: x509.Certificate,
        candidate_der: bytes,
    ) -> bool:
        if candidate_der not in self._keys:
            self._keys[candidate_der] = _key_der(candidate)
        key = self._keys[candidate_der]
        if key is None:
            return False  # an unreadable key verifies nothing
        known = self._memo.get((cert_der, key))
        if known is None:
            known = self._verify(cert, candidate)
            self._memo[(cert_der, key)] = known
        return known


def _unique(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    out: list[x509.Certificate] = []
    for cert in certs:
        if not any(cert == seen for seen in out):
            out.append(cert)
    return tuple(out)
