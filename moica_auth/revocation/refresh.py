"""Keep the CRL index fresh, off the login path (RFC 5280 §5.1.2.5, §6.3.3).

:class:`CrlRefresher` downloads, verifies and installs CRLs; a corrupt, truncated,
wrongly signed or older download never replaces the last good one — the error is
recorded next to it instead. :meth:`CrlRefresher.start_background` refreshes ahead of
nextUpdate in a daemon thread; a fleet-wide lock in the index store keeps one node
downloading a given URL at a time.

:mod:`moica_auth.services` builds the one refresher of a process from
``MOICA_AUTH_REVOCATION`` (:attr:`Services.crl_refresher`); this module reads no settings.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509

from moica_auth.exceptions import (
    ConfigurationError,
    CrlInvalid,
    MoicaAuthError,
    RevocationUnavailable,
)
from moica_auth.revocation.crl import (
    DEFAULT_CRL_HASHES,
    DEFAULT_SKEW,
    CrlFetcher,
    HttpCrlFetcher,
    certificate_crl_urls,
    key_id,
    parse_crl,
)
from moica_auth.revocation.settings import DEFAULT_LOGIN_FETCH_DEADLINE
from moica_auth.revocation.signers import CrlSignerCandidates
from moica_auth.revocation.store import (
    CrlInfo,
    RevocationIndexStore,
)

__all__ = [
    "DEFAULT_LOGIN_DEADLINE",
    "BackgroundRefresher",
    "CrlRefresher",
    "RefreshOutcome",
    "bounded_fetcher",
]

logger = logging.getLogger(__name__)

#: Seconds a login may spend downloading a missing or stale CRL (one attempt, fleet-wide).
DEFAULT_LOGIN_DEADLINE = DEFAULT_LOGIN_FETCH_DEADLINE

Outcome = Literal["installed", "unchanged", "not_modified", "fresh", "kept", "failed", "busy"]


@dataclass(frozen=True)
class RefreshOutcome:
    """What one refresh of one URL did.

    ``installed``: a newer CRL replaced the last one; ``unchanged``: same CRL number;
    ``not_modified``: HTTP 304; ``fresh``: not due or backing off (nothing fetched); ``kept``:
    the download was older and the last good CRL stays; ``failed``: download or
    verification failed, the last good CRL stays; ``busy``: another node holds the lock.
    """

    url: str
    outcome: Outcome
    info: CrlInfo | None = None
    error_code: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome not in ("failed", "kept")


class CrlRefresher:
    """Download, verify and install CRLs into a :class:`RevocationIndexStore`.

    ``issuers`` are the CA certificates whose CRLs we accept (the MOICA CAs, and the
    GRCA roots for the CRL that covers the MOICA CAs). ``crl_signers`` are separate
    CRL-signing certificates (same DN as a CA, RFC 5280 §6.3.3 (f)); the caller must
    have validated them to the same trust anchor. URLs come from ``urls`` and from the
    cRLDistributionPoints of ``certificates`` (e.g. the MOICA CA certificates, whose
    CRLDP names the GRCA CRL).

    ``fetcher`` serves the background refresher and the admin command (long timeouts: a
    complete MOICA CRL is ~20 MB). A login that finds no current CRL gets at most one
    bounded attempt instead (:meth:`refresh_for`): ``login_fetcher``, whose overall
    deadline is ``login_deadline`` seconds (default: an :class:`HttpCrlFetcher` with that
    deadline), taken only by the worker that wins the fleet-wide lock. The back-off after
    a failed download is read from the shared store, so no other worker retries it
    before ``retry_interval``.
    """

    def __init__(
        self,
        *,
        fetcher: CrlFetcher,
        store: RevocationIndexStore,
        issuers: Sequence[x509.Certificate],
        urls: Sequence[str] = (),
        certificates: Sequence[x509.Certificate] = (),
        crl_signers: Sequence[x509.Certificate] = (),
        refresh_margin: timedelta = timedelta(hours=2),
        max_age: timedelta = timedelta(hours=6),
        min_interval: timedelta = timedelta(minutes=15),
        retry_interval: timedelta = timedelta(seconds=30),
        lock_ttl: float = 300.0,
        skew: timedelta = DEFAULT_SKEW,
        clock: Callable[[], datetime] | None = None,
        allowed_hashes: frozenset[str] = DEFAULT_CRL_HASHES,
        login_deadline: float = DEFAULT_LOGIN_DEADLINE,
        login_fetcher: CrlFetcher | None = None,
        signer_candidates: CrlSignerCandidates | None = None,
    ) -> None:
        self.signer_candidates = signer_candidates
        if not login_deadline > 0:
            raise ConfigurationError("login_deadline must be a positive number of seconds")
        self.fetcher = fetcher
        self.login_deadline = login_deadline
        if login_fetcher is None:
            login_fetcher = bounded_fetcher(fetcher, login_deadline)
        self.login_fetcher = login_fetcher
        self.store = store
        self.issuers = tuple(issuers)
        self.crl_signers = tuple(crl_signers)
        ordered: dict[str, None] = dict.fromkeys(urls)
        for certificate in certificates:
            ordered.update(dict.fromkeys(certificate_crl_urls(certificate)))
        self.urls = tuple(ordered)
        self.refresh_margin = refresh_margin
        self.max_age = max_age
        self.min_interval = min_interval
        self.retry_interval = retry_interval
        self._checked: dict[str, datetime] = {}
        self.lock_ttl = lock_ttl
        self.skew = skew
        self.allowed_hashes = allowed_hashes
        self.clock = clock or (lambda: datetime.now(UTC))

    def is_due(self, info: CrlInfo | None, now: datetime, url: str | None = None) -> bool:
        """Refresh ahead of nextUpdate, and at least every ``max_age``.

        Once a CRL is due, the same URL is checked again only after ``min_interval``
        (this process), so a server that has not published yet is not asked for 20 MB
        on every background tick. A missing CRL, or one past nextUpdate, is due again
        after ``retry_interval``.
        """
        checked = self._checked.get(url) if url else None
        failed = self.store.last_error(url) if url else None
        if failed is not None and timedelta(0) <= now - failed[1] < self.retry_interval:
            # Shared back-off: a download that failed on any worker of the fleet is not
            # tried again by another one before retry_interval.
            return False
        if checked is not None and now - checked < self.retry_interval:
            # Back off after any attempt: during an outage, fetch-on-miss logins must
            # not queue behind one download timeout after another.
            return False
        if info is None or now >= info.next_update:
            return True
        if checked is not None and now - checked < self.min_interval:
            return False
        if now >= info.next_update - self.refresh_margin:
            return True
        return now - info.fetched_at >= self.max_age

    def refresh(
        self,
        url: str,
        *,
        force: bool = True,
        wait: float = 0.0,
        extra_issuers: Sequence[x509.Certificate] = (),
        fetcher: CrlFetcher | None = None,
    ) -> RefreshOutcome:
        """Refresh one URL under the fleet-wide lock ``refresh:{url}``.

        Never raises for a bad download: the error is recorded in the store and
        returned; the last good CRL stays installed. ``fetcher`` overrides
        :attr:`fetcher` for this call (the login path's bounded one). Store outages do raise
        (:class:`~moica_auth.exceptions.StoreUnavailable`).
        """
        with self.store.lock(f"refresh:{url}", self.lock_ttl, wait=wait) as acquired:
            if not acquired:
                return RefreshOutcome(url=url, outcome="busy")
            now = self.clock()
            current = self.store.info_for_url(url)
            if not force and not self.is_due(current, now, url):
                return RefreshOutcome(url=url, outcome="fresh", info=current)
            self._checked[url] = now
            # Conditional GET only against what this URL itself installed.
            cached = current if current is not None and current.url == url else None
            try:
                fetched = (fetcher or self.fetcher).fetch(
                    url,
                    etag=cached.etag if cached else None,
                    last_modified=cached.last_modified if cached else None,
                )
                if fetched.status == "not_modified":
                    if cached is None:
                        # Nothing of this URL is installed, so nothing was asked
                        # conditionally: a 304 (from a custom fetcher) proves nothing.
                        raise RevocationUnavailable(
                            "the CRL server answered 'not modified' but nothing from this "
                            "URL is installed",
                            url=url,
                        )
                    self.store.clear_error(url)
                    return RefreshOutcome(url=url, outcome="not_modified", info=current)
                if (
                    cached is not None
                    and cached.sha256 == hashlib.sha256(fetched.content).hexdigest()
                ):
                    # Byte-identical to the CRL this URL installed (already verified):
                    # skip the parse for servers without ETag / Last-Modified.
                    self.store.clear_error(url)
                    return RefreshOutcome(url=url, outcome="unchanged", info=current)
                parsed = parse_crl(
                    fetched.content,
                    issuers=(*self.issuers, *extra_issuers),
                    signers=(*self.crl_signers, *self._candidate_signers(fetched.content, now)),
                    at=now,
                    skew=self.skew,
                    url=url,
                    allowed_hashes=self.allowed_hashes,
                )
            except MoicaAuthError as exc:
                return self._failed(url, exc, now, current, "failed")
            if self.store.replace(
                parsed, fetched_at=now, etag=fetched.etag, last_modified=fetched.last_modified
            ):
                logger.info(
                    "installed CRL %s number %s (%d entries) from %s",
                    parsed.scope or "complete",
                    parsed.number,
                    len(parsed.entries),
                    url,
                )
                return RefreshOutcome(
                    url=url,
                    outcome="installed",
                    info=self.store.info(parsed.issuer_key_id, parsed.scope),
                )
            installed = self.store.info(parsed.issuer_key_id, parsed.scope)
            if installed is not None and installed.number == parsed.number:
                self.store.clear_error(url)
                return RefreshOutcome(url=url, outcome="unchanged", info=installed)
            older = CrlInvalid(
                f"downloaded CRL number {parsed.number} is older than the installed "
                f"{installed.number if installed else '?'}"
            )
            return self._failed(url, older, now, installed, "kept")

    def _candidate_signers(self, content: bytes, now: datetime) -> list[x509.Certificate]:
        """The candidate CRL signers named by this CRL that are valid and not revoked
        now (RFC 5280 §6.3.3 (f)); none when there are no candidates."""
        if not self.signer_candidates:
            return []
        try:
            crl = x509.load_der_x509_crl(content)
            if not self.signer_candidates.named(crl):
                return []
        except ValueError:
            return []  # parse_crl refuses it with the reason
        return self.signer_candidates.validated_for(crl, at=now)

    def _failed(
        self,
        url: str,
        exc: MoicaAuthError,
        now: datetime,
        current: CrlInfo | None,
        outcome: Outcome,
    ) -> RefreshOutcome:
        message = f"{exc.code}: {exc.detail}" if exc.detail else exc.code
        logger.warning("CRL refresh of %s failed, keeping the last good CRL: %s", url, message)
        self.store.record_error(url, message, at=now)
        return RefreshOutcome(
            url=url, outcome=outcome, info=current, error_code=exc.code, detail=message
        )

    def refresh_all(self, *, force: bool = True) -> list[RefreshOutcome]:
        """Refresh every configured URL (``force=False``: only those due)."""
        return [self.refresh(url, force=force) for url in self.urls]

    def refresh_for(self, *, certificate: x509.Certificate, issuer: x509.Certificate) -> None:
        """One bounded attempt at the CRLs one certificate names (``fetch_on_miss``, on
        the login path), partition first.

        Never waits on the fleet-wide lock: when another worker is downloading a URL,
        this login answers at once from what the index holds (fail closed) rather than
        queueing. The worker that takes the lock downloads with :attr:`login_fetcher`
        within one overall deadline, :attr:`login_deadline`, shared by the certificate's
        URLs (partition first). When any of them failed within ``retry_interval`` on any
        worker (shared back-off), nothing is downloaded.
        """
        urls = certificate_crl_urls(certificate)
        now = self.clock()
        for url in urls:
            failed = self.store.last_error(url)
            if failed is not None and timedelta(0) <= now - failed[1] < self.retry_interval:
                # This CA's CRL server failed a moment ago (on any worker): a login does
                # not try its other URLs either; the background refresher will.
                return
        ends = time.monotonic() + self.login_deadline
        for url in urls:
            remaining = ends - time.monotonic()
            if remaining <= 0.05:
                return
            outcome = self.refresh(
                url,
                force=False,
                wait=0.0,
                extra_issuers=(issuer,),
                fetcher=bounded_fetcher(self.login_fetcher, remaining),
            )
            if outcome.outcome == "busy":
                return  # another worker is at it; this login does not queue behind it
            if outcome.ok and outcome.outcome != "fresh":
                return

    def status(self) -> list[CrlInfo]:
        """Every installed CRL, with the last error recorded for its URL."""
        return self.store.all_info()

    def failures(self) -> dict[str, tuple[str, datetime]]:
        """Configured URLs whose last attempt failed."""
        out: dict[str, tuple[str, datetime]] = {}
        for url in self.urls:
            error = self.store.last_error(url)
            if error is not None:
                out[url] = error
        return out

    def issuer_key_ids(self) -> list[str]:
        return [key_id(c) for c in self.issuers]

    def start_background(self, interval: float = 300.0) -> BackgroundRefresher:
        """Refresh due CRLs every ``interval`` seconds in a daemon thread."""
        worker = BackgroundRefresher(self, interval)
        worker.start()
        return worker


def bounded_fetcher(fetcher: CrlFetcher, deadline: float) -> CrlFetcher:
    """A copy of ``fetcher`` whose connect, read and overall timeouts are at most
    ``deadline`` seconds (the watchdog also cuts off slow headers). A fetcher of another
    type cannot be bounded from outside and is returned as is."""
    if not isinstance(fetcher, HttpCrlFetcher):
        return fetcher
    bounded = copy.copy(fetcher)  # keeps a subclass's behaviour, e.g. a URL rewrite
    bounded.connect_timeout = min(fetcher.connect_timeout, deadline)
    bounded.read_timeout = min(fetcher.read_timeout, deadline)
    bounded.total_timeout = min(fetcher.total_timeout, deadline)
    return bounded


class BackgroundRefresher:
    """A daemon thread running ``refresh_all(force=False)``; never on the login path."""

    def __init__(self, refresher: CrlRefresher, interval: float) -> None:
        self.refresher = refresher
        self.interval = interval
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moica-crl-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresher.refresh_all(force=False)
            except Exception:  # a store outage must not kill the thread; retry later
                logger.exception("background CRL refresh failed")
            self.runs += 1
            self._stop.wait(self.interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
