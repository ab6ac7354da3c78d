"""Revocation for the admin command line (``python -m moica_auth verify|check``).

A server keeps its CRL index warm with :class:`~moica_auth.revocation.refresh.CrlRefresher`;
a one-shot command has no index. :func:`build_checker` assembles, per run, the same parts
the server uses — :class:`~moica_auth.revocation.policy.RevocationChecker` with a
:class:`~moica_auth.revocation.crl.CrlSource` over an in-memory index and/or an
:class:`~moica_auth.revocation.ocsp.OcspSource` — and fills the index lazily:

* ``--crl FILE`` (DER or PEM): each file is verified with :func:`parse_crl` against the
  issuer of the certificate being checked (RFC 5280 §6.3.3 (f)); a CRL from another CA is
  simply not used for that certificate;
* when the files give no current answer for a certificate, its cRLDistributionPoints
  (RFC 5280 §4.2.1.13; the partition first, as the certificate lists it) are downloaded
  with short timeouts, verified and installed, and the index is asked again;
* ``--ocsp``: the responder named in the certificate's AIA (RFC 6960, RFC 5280 §4.2.2.1)
  is asked first; a certificate that names no responder, or whose responder gives no
  answer, is checked against its distribution points (the library's default source
  order, ``("ocsp", "crl")``).

Everything fails closed: a certificate whose status cannot be established raises a
:class:`~moica_auth.exceptions.RevocationError`. When no source answers, the error is the
most specific reason known — ``crl_invalid`` / ``ocsp_invalid`` when a source received an
answer that must not be trusted, ``revocation_stale`` when the only data is out of date,
``revocation_unavailable`` otherwise — with each source's code in ``data["sources"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509

from moica_auth.exceptions import (
    CrlInvalid,
    MoicaAuthError,
    OcspInvalid,
    RevocationError,
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.crl import (
    CrlFetcher,
    CrlSource,
    HttpCrlFetcher,
    certificate_crl_urls,
    declared_key_ids,
    key_id,
    parse_crl,
)
from moica_auth.revocation.ocsp import OcspSource
from moica_auth.revocation.policy import RevocationChecker, RevocationPolicy
from moica_auth.revocation.signers import CrlSignerCandidates
from moica_auth.revocation.store import MemoryIndexStore
from moica_auth.revocation.types import (
    CertStatus,
    RevocationResult,
    RevocationSource,
    SourceName,
)
from moica_auth.validation.chain import ValidatedChain, ValidationPolicy
from moica_auth.validation.trust import TrustStore

__all__ = [
    "CRL_CONNECT_TIMEOUT",
    "CRL_READ_TIMEOUT",
    "CRL_TOTAL_TIMEOUT",
    "OCSP_TIMEOUT",
    "CliCrlSource",
    "CliRevocationChecker",
    "build_checker",
    "read_crl",
]

logger = logging.getLogger(__name__)

# An admin waits at the terminal: give up quickly on a dead host, but leave time for
# MOICA's complete CRL (about 20 MB) to arrive.
CRL_CONNECT_TIMEOUT = 3.0
CRL_READ_TIMEOUT = 10.0
CRL_TOTAL_TIMEOUT = 60.0
OCSP_TIMEOUT = 5.0


def read_crl(data: bytes) -> x509.CertificateRevocationList:
    """Decode one CRL (RFC 5280 §5.1) from DER or PEM, without verifying it.

    Raises :class:`CrlInvalid` when ``data`` is not a CRL at all; the CLI reports that as a
    usage error before anything is checked.
    """
    try:
        if data.lstrip()[:10] == b"-----BEGIN":
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise CrlInvalid("not a CRL (DER or PEM)") from exc


def _issued_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Does this CRL claim to come from ``issuer`` (name, then AKI; RFC 5280 §5.2.1)?

    Only a claim: :func:`parse_crl` proves it by signature. MOICA G2 and G3 share a DN, so
    the key identifier is what tells their CRLs apart.
    """
    try:
        if crl.issuer != issuer.subject:
            return False
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return True  # malformed: let parse_crl refuse it with crl_invalid
    return aki.key_identifier is None or aki.key_identifier in declared_key_ids(issuer)


class CliCrlSource:
    """A ``"crl"`` :class:`RevocationSource` over an in-memory index, filled on demand.

    Answers come from :class:`CrlSource` (RFC 5280 §6.3.3: scope, staleness, holds), never
    from the files directly, so the CLI decides exactly as a server would.
    """

    name: SourceName = "crl"

    def __init__(
        self,
        *,
        crls: Sequence[bytes],
        fetcher: CrlFetcher | None = None,
        grace: timedelta = timedelta(0),
        signers: CrlSignerCandidates | None = None,
    ) -> None:
        self.crls = tuple(crls)
        self.signers = signers
        self.fetcher: CrlFetcher = fetcher or HttpCrlFetcher(
            connect_timeout=CRL_CONNECT_TIMEOUT,
            read_timeout=CRL_READ_TIMEOUT,
            total_timeout=CRL_TOTAL_TIMEOUT,
            user_agent="moica-auth CLI",
        )
        self.store = MemoryIndexStore()
        self.index = CrlSource(store=self.store, grace=grace)
        self._files_done: set[str] = set()  # issuer key ids the files were tried for
        self._file_errors: dict[str, list[MoicaAuthError]] = {}
        self._fetched: dict[str, MoicaAuthError | None] = {}  # url -> error (None: installed)

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        """Whether a ``--crl`` file of ``issuer`` covers ``certificate``, or claims to be
        ``issuer``'s and was refused (then checking fails closed with that reason)."""
        kid = key_id(issuer)
        self._install_files(issuer, kid, at)
        return bool(self._file_errors.get(kid)) or self.index.knows_issuer(
            certificate=certificate, issuer=issuer, at=at
        )

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        """The certificate's status from the files, then from its distribution points."""
        kid = key_id(issuer)
        self._install_files(issuer, kid, at)
        try:
            return self.index.status(certificate=certificate, issuer=issuer, at=at)
        except (RevocationUnavailable, RevocationStale) as exc:
            first_miss: RevocationError = exc
        errors: list[MoicaAuthError] = list(self._file_errors.get(kid, ()))
        for url in certificate_crl_urls(certificate):
            error = self._download(url, issuer, at)
            if error is not None:
                errors.append(error)
                continue
            try:
                return self.index.status(certificate=certificate, issuer=issuer, at=at)
            except (RevocationUnavailable, RevocationStale) as exc:
                first_miss = exc
        raise self._no_answer(first_miss, errors)

    def _install_files(self, issuer: x509.Certificate, kid: str, at: datetime) -> None:
        if kid in self._files_done:
            return
        self._files_done.add(kid)
        for number, data in enumerate(self.crls, start=1):
            try:
                crl = read_crl(data)
                signers: list[x509.Certificate] = []
                if not _issued_by(crl, issuer):
                    # Another key's CRL: a separate CRL signer's for this CA (RFC 5280
                    # §6.3.3 (f)), or another CA's, which says nothing here.
                    if crl.issuer != issuer.subject or not self.signers:
                        continue
                    if not self.signers.named(crl):
                        continue
                    signers = self.signers.validated_for(crl, at=at)
                    if not signers:
                        raise CrlInvalid(
                            "signed by a separate CRL signer that is not valid, "
                            "or is revoked, at the check time"
                        )
                parsed = parse_crl(data, issuers=[issuer], signers=signers, at=at)
            except MoicaAuthError as exc:
                logger.info("CRL file #%d not usable: %s", number, exc)
                self._file_errors.setdefault(kid, []).append(
                    type(exc)(f"CRL file #{number}: {exc.detail or exc.code}")
                )
                continue
            self.store.replace(parsed, fetched_at=at)

    def _download(self, url: str, issuer: x509.Certificate, at: datetime) -> MoicaAuthError | None:
        if url in self._fetched:
            return self._fetched[url]
        error: MoicaAuthError | None = None
        try:
            fetched = self.fetcher.fetch(url)
            parsed = parse_crl(fetched.content, issuers=[issuer], at=at, url=url)
            self.store.replace(parsed, fetched_at=at)
        except MoicaAuthError as exc:
            logger.info("CRL download %s not usable: %s", url, exc)
            error = type(exc)(f"{url}: {exc.detail or exc.code}")
        self._fetched[url] = error
        return error

    @staticmethod
    def _no_answer(miss: RevocationError, errors: Sequence[MoicaAuthError]) -> RevocationError:
        """The most telling reason why no CRL answered (fail closed in every branch)."""
        if isinstance(miss, RevocationStale):
            return miss
        invalid = [e for e in errors if isinstance(e, CrlInvalid)]
        if invalid:
            return CrlInvalid("; ".join(e.detail for e in invalid))
        if errors:
            details = "; ".join(e.detail or e.code for e in errors)
            return RevocationUnavailable(f"{miss.detail}; {details}")
        return miss


class CliRevocationChecker:
    """:class:`RevocationChecker` plus the CLI's choice of the most specific error."""

    def __init__(self, checker: RevocationChecker, *, default_at: datetime | None = None) -> None:
        self.checker = checker
        self.default_at = default_at

    @property
    def soft_fail(self) -> bool:
        return self.checker.soft_fail

    def check(self, chain: ValidatedChain, *, at: datetime | None = None) -> RevocationResult:
        """Check every certificate of ``chain`` that needs a status (see
        :class:`RevocationChecker`); raise the most specific
        :class:`~moica_auth.exceptions.RevocationError` when one cannot be established."""
        when = at or self.default_at or datetime.now(UTC)
        try:
            return self.checker.check(chain, at=when)
        except RevocationUnavailable as exc:
            # The policy reports "nobody answered"; an answer we refused to trust is the
            # better explanation for an admin, and it is no less closed.
            codes: dict[str, str] = dict(exc.data.get("sources") or {})
            for name in self.checker.policy.order:
                code = codes.get(name)
                if code in (CrlInvalid.code, OcspInvalid.code):
                    cls = CrlInvalid if code == CrlInvalid.code else OcspInvalid
                    raise cls(exc.detail, **exc.data) from exc
            raise


def build_checker(
    *,
    crl_ders: Sequence[bytes],
    use_ocsp: bool,
    trust: TrustStore,
    at: datetime | None,
    fetcher: CrlFetcher | None = None,
    ocsp_timeout: float = OCSP_TIMEOUT,
    crl_signers: Sequence[x509.Certificate] = (),
    validation: ValidationPolicy | None = None,
) -> CliRevocationChecker:
    """The revocation checker for one CLI run (see the module docstring).

    :param crl_ders: the ``--crl`` files' contents (DER or PEM); each must be a CRL
        (:func:`read_crl` raises :class:`CrlInvalid` otherwise).
    :param use_ocsp: ``--ocsp``: ask the AIA responder first.
    :param trust: the run's trust store; CRLs are verified against the validated chain's
        own CA certificates, which come from it.
    :param at: the default check time (``--at``); ``check(chain, at=…)`` overrides it.
    :param fetcher: how distribution points are downloaded (default: HTTP, short timeouts).
    :param crl_signers: candidate separate CRL signers (non-CA ``--intermediate`` with
        cRLSign, :mod:`moica_auth.revocation.signers`), validated against ``trust`` with
        ``validation`` and checked by this same checker before their CRLs are used.
    """
    if not crl_ders and not use_ocsp:
        raise ValueError("build_checker needs CRL files or use_ocsp")
    for data in crl_ders:
        read_crl(data)
    signers = CrlSignerCandidates(
        candidates=crl_signers, trust=trust, policy=validation or ValidationPolicy()
    )
    sources: dict[str, RevocationSource] = {}
    order: tuple[str, ...] = ("crl",)
    if use_ocsp:
        sources["ocsp"] = OcspSource(store=None, timeout=ocsp_timeout)
        order = ("ocsp", "crl")
    sources["crl"] = CliCrlSource(crls=crl_ders, fetcher=fetcher, signers=signers)
    policy = RevocationPolicy(order=order, timeout=ocsp_timeout)
    checker = RevocationChecker(policy=policy, sources=sources)
    signers.checker = checker
    return CliRevocationChecker(checker, default_at=at)
