"""Fetch the CRLs that show a TSA path unrevoked, to record them when evidence is renewed.

An archive time-stamp (:mod:`moica_auth.signing.archive`) records the validation data of
the time-stamp it renews. The CA certificates are at hand; the revocation status is not,
and without it an auditor decades later cannot show that the old TSA certificate was
unrevoked when the renewal covered it. :class:`ValidationCrlFetcher` downloads, for each
certificate of the newest token's TSA path whose issuer is also in the path (the TSA
certificate and each intermediate CA; the anchor has no CRL of its own), the CRL named by
its cRLDistributionPoints, and accepts it only when

* it was fetched over plain ``http://`` (RFC 5280 §4.2.1.13: CRLs are signed objects;
  https and ldap points are not fetched and count as "no distribution point");
* the download stayed within the size and time bounds of the project's bounded CRL
  fetch (:class:`~moica_auth.revocation.http_fetch.HttpCrlFetcher`);
* it verifies as a CRL of the certificate's issuer *in the path* (signature by that CA's
  key, cRLSign, CRL number, nextUpdate, no delta/indirect CRL:
  :func:`~moica_auth.revocation.crl_parser.parse_crl`), its scope covers the certificate,
  and it is fresh (``thisUpdate`` not in the future, ``nextUpdate`` not passed);
* it does not list the certificate (revoked or on hold): then the renewal is refused
  with the same :class:`~moica_auth.exceptions.EvidenceInvalid` (``field="crls"``) as a
  hand-given CRL that lists the TSA.

Failures are typed: an unreachable distribution point raises
:class:`~moica_auth.exceptions.RevocationUnavailable` (unless ``allow_unreachable``, which
records the renewal without that CRL and notes the URL), a bad CRL
:class:`~moica_auth.exceptions.CrlInvalid`. One fetcher serves one run: each distinct URL
is downloaded once (its bytes, or the failure, are kept), since many rows share one TSA.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from moica_auth.exceptions import CrlInvalid, MoicaAuthError, RevocationUnavailable
from moica_auth.revocation.crl_index import certificate_crl_urls, scope_covers
from moica_auth.revocation.crl_parser import parse_crl
from moica_auth.revocation.http_fetch import CrlFetcher, HttpCrlFetcher
from moica_auth.signing.archive import MAX_VALIDATION_CRLS, _bad

__all__ = [
    "DEFAULT_MAX_CRL_BYTES",
    "DEFAULT_TOTAL_TIMEOUT",
    "ValidationCrlFetcher",
]

#: A fetched CRL is copied into every renewed record: a TSA CA's CRL is small, and a
#: bigger one is refused rather than stored a thousand times.
DEFAULT_MAX_CRL_BYTES: Final = 1024 * 1024
#: Overall seconds for one download (connect, headers and body).
DEFAULT_TOTAL_TIMEOUT: Final = 30.0


def _label(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else certificate.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _is_self_issued(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


class ValidationCrlFetcher:
    """Fetches and checks the CRLs of TSA paths for one renewal run (see the module doc).

    After a run, :attr:`fetched` counts downloads, :attr:`without_cdp` names the path
    certificates that have no http CRL distribution point (nothing to fetch), and
    :attr:`unreachable` the URLs skipped under ``allow_unreachable``.
    """

    def __init__(
        self,
        *,
        allow_unreachable: bool = False,
        fetcher: CrlFetcher | None = None,
        max_bytes: int = DEFAULT_MAX_CRL_BYTES,
        timeout: float = 10.0,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
    ) -> None:
        self.allow_unreachable = allow_unreachable
        self._fetcher: CrlFetcher = fetcher or HttpCrlFetcher(
            connect_timeout=timeout,
            read_timeout=timeout,
            total_timeout=total_timeout,
            max_bytes=max_bytes,
            user_agent="moica-auth evidence renewal",
        )
        self._downloads: dict[str, bytes | MoicaAuthError] = {}
        self.fetched = 0
        self.without_cdp: set[str] = set()
        self.unreachable: set[str] = set()

    def _download(self, url: str) -> bytes:
        if url not in self._downloads:
            self.fetched += 1
            try:
                self._downloads[url] = self._fetcher.fetch(url).content
            except MoicaAuthError as exc:
                # Kept as well: a dead distribution point costs one timeout per run,
                # not one per row.
                self._downloads[url] = exc
        outcome = self._downloads[url]
        if isinstance(outcome, MoicaAuthError):
            raise outcome
        return outcome

    def _crl_for(
        self, certificate: x509.Certificate, issuer: x509.Certificate, url: str, at: datetime
    ) -> x509.CertificateRevocationList:
        data = self._download(url)
        parsed = parse_crl(data, issuers=[issuer], at=at, url=url)
        if parsed.next_update < at:
            raise CrlInvalid("the CRL of the TSA path is past its nextUpdate", url=url)
        if not scope_covers(
            scope_names=parsed.scope_names,
            only_user_certs=parsed.only_user_certs,
            only_ca_certs=parsed.only_ca_certs,
            certificate=certificate,
        ):
            raise CrlInvalid("the CRL's scope does not cover the TSA path certificate", url=url)
        if certificate.serial_number in parsed.entries:
            raise _bad("crls", "a CRL lists a certificate of the time-stamp's path as revoked")
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)

    def crls_for(
        self, path: Sequence[x509.Certificate], *, at: datetime
    ) -> list[x509.CertificateRevocationList]:
        """The checked CRLs for ``path`` (leaf first, as ``TimestampToken.tsa_chain``) at
        ``at``. Raises :class:`RevocationUnavailable`, :class:`CrlInvalid` or
        :class:`~moica_auth.exceptions.EvidenceInvalid` (a path certificate is listed)."""
        crls: list[x509.CertificateRevocationList] = []
        seen: set[bytes] = set()
        for certificate, issuer in itertools.pairwise(path):
            if _is_self_issued(certificate):
                break  # the anchor: trusted as configured, no CRL speaks for it
            urls = [u for u in certificate_crl_urls(certificate) if u.lower().startswith("http://")]
            if not urls:
                self.without_cdp.add(_label(certificate))
                continue
            crl = None
            for url in urls:
                try:
                    crl = self._crl_for(certificate, issuer, url, at)
                    break
                except RevocationUnavailable:
                    continue  # another point of the same certificate may answer
            if crl is None:
                if not self.allow_unreachable:
                    raise RevocationUnavailable(
                        "the CRL distribution point of the TSA certificate "
                        f"{_label(certificate)!r} is unreachable",
                        url=urls[0],
                    )
                self.unreachable.update(urls)
                continue
            der = crl.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                crls.append(crl)
        if len(crls) > MAX_VALIDATION_CRLS:
            raise _bad("crls", f"the TSA path needs more than {MAX_VALIDATION_CRLS} CRLs")
        return crls
