"""CRL download, verification and indexing (RFC 5280 §5, §6.3): the public import path.

The parts live in their own modules, whose imports run one way (parser → index record
← store ← source):

* :mod:`~moica_auth.revocation.crl_index`: the index record (:class:`ParsedCrl`,
  :class:`RevokedEntry`, :func:`decode_entry`), issuer key ids and scopes;
* :mod:`~moica_auth.revocation.crl_parser`: :func:`parse_crl`;
* :mod:`~moica_auth.revocation.http_fetch`: :class:`HttpCrlFetcher` (also used for OCSP);
* :mod:`~moica_auth.revocation.crl_source`: :class:`CrlSource`.

The flow is: a :class:`CrlFetcher` downloads the DER; :func:`parse_crl` verifies it once
and turns ``revokedCertificates`` into a dict ``serial -> packed entry``; an index store
(:mod:`moica_auth.revocation.store`) keeps the last good generation per
(issuer key, scope); :class:`CrlSource` answers logins from that index only.

MOICA's complete CRL is about 20 MB with about 412k entries, so nothing here parses a
CRL on the login path. :func:`parse_crl` walks ``revokedCertificates`` with a small
DER reader written for that one structure (``_index_entries``) instead of building a
``cryptography`` ``RevokedCertificate`` object and its extensions per entry. Measured on
412k entries: reading serial, date and extensions through ``cryptography`` took about
0.8 s before any indexing, while the whole reader takes about 0.4 s. It allocates two
objects per entry (the serial and the packed value) where ``cryptography`` allocates
several.

Deliberate refusals (fail closed, each raises :class:`~moica_auth.exceptions.CrlInvalid`):

* delta CRLs (``deltaCRLIndicator``, RFC 5280 §5.2.4): MOICA publishes none, and a
  delta is only meaningful merged with its base; we only ever install complete CRLs
  (a partition is a complete CRL for its scope);
* indirect CRLs (``indirectCRL`` in IssuingDistributionPoint, or a
  ``certificateIssuer`` entry extension, §5.2.5, §5.3.3);
* ``onlySomeReasons`` and ``onlyContainsAttributeCerts`` partitions (§5.2.5): such a
  CRL cannot say "good" for all reasons;
* any unknown critical CRL extension or CRL-entry extension (§5.2, §5.3).
"""

from __future__ import annotations

from moica_auth._x509 import declared_key_ids, key_id
from moica_auth.revocation.crl_index import (
    COMPLETE_SCOPE,
    ParsedCrl,
    RevokedEntry,
    certificate_crl_urls,
    certificate_scope_names,
    decode_entry,
    scope_covers,
    scope_key,
)
from moica_auth.revocation.crl_parser import DEFAULT_CRL_HASHES, DEFAULT_SKEW, parse_crl
from moica_auth.revocation.crl_source import CrlSource
from moica_auth.revocation.http_fetch import CrlFetcher, FetchResult, HttpCrlFetcher

__all__ = [
    "COMPLETE_SCOPE",
    "DEFAULT_CRL_HASHES",
    "DEFAULT_SKEW",
    "CrlFetcher",
    "CrlSource",
    "FetchResult",
    "HttpCrlFetcher",
    "ParsedCrl",
    "RevokedEntry",
    "certificate_crl_urls",
    "certificate_scope_names",
    "declared_key_ids",
    "decode_entry",
    "key_id",
    "parse_crl",
    "scope_covers",
    "scope_key",
]
