"""Keep the CRL index fresh, off the login path (RFC 5280 §5.1.2.5, §6.3.3).

:class:`CrlRefresher` downloads, verifies and installs CRLs; a corrupt, truncated,
wrongly signed or older download never replaces the last good one — the error is
recorded next to it instead. :meth:`CrlRefresher.start_background` refreshes ahead of
nextUpdate in a daemon thread; a fleet-wide lock in the index store keeps one node
downloading a given URL at a time.

:func:`refresher_from_settings` builds the whole thing from
``settings.MOICA_AUTH_REVOCATION`` (keys documented in ``docs/revocation.md``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

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
    CrlSource,
    HttpCrlFetcher,
    certificate_crl_urls,
    key_id,
    parse_crl,
)
from moica_auth.revocation.store import (
    CrlInfo,
    MemoryIndexStore,
    RedisIndexStore,
    RevocationIndexStore,
)

__all__ = [
    "BackgroundRefresher",
    "CrlRefresher",
    "RefreshOutcome",
    "crl_source_from_settings",
    "index_store_from_settings",
    "refresher_from_settings",
]

logger = logging.getLogger(__name__)

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
    ) -> None:
        self.fetcher = fetcher
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
    ) -> RefreshOutcome:
        """Refresh one URL under the fleet-wide lock ``refresh:{url}``.

        Never raises for a bad download: the error is recorded in the store and
        returned; the last good CRL stays installed. Store outages do raise
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
                fetched = self.fetcher.fetch(
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
                    signers=self.crl_signers,
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
        """Fetch the CRLs one certificate names (``fetch_on_miss``), partition first.

        Waits on the per-URL lock, so a burst of logins after a restart downloads
        each CRL once; a waiter then finds it fresh and fetches nothing.
        """
        for url in certificate_crl_urls(certificate):
            outcome = self.refresh(url, force=False, wait=self.lock_ttl, extra_issuers=(issuer,))
            if outcome.ok and outcome.outcome != "busy":
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


# --- construction from Django settings ------------------------------------------------

#: The ``MOICA_AUTH_REVOCATION`` keys this module reads (documented in docs/revocation.md);
#: other keys (``order``, ``soft_fail``, …) belong to the policy and are ignored here.
CRL_SETTING_KEYS = (
    "crl_urls",
    "crl_urls_from_issuers",
    "issuer_certificates",
    "crl_signer_certificates",
    "redis_url",
    "redis_prefix",
    "grace_seconds",
    "fetch_on_miss",
    "background_refresh_seconds",
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "max_bytes",
    "refresh_margin_seconds",
    "max_age_seconds",
    "min_interval_seconds",
    "retry_interval_seconds",
    "lock_ttl_seconds",
    "skew_seconds",
)


def _settings() -> dict[str, Any]:
    """``settings.MOICA_AUTH_REVOCATION`` with the project-wide defaults filled in.

    ``issuer_certificates`` defaults to the trust store's certificates (anchors and
    intermediates, see :mod:`moica_auth.services`), ``redis_url`` to
    ``MOICA_AUTH_REDIS_URL``, ``grace_seconds`` to the policy's ``crl_grace``.
    """
    from django.conf import settings  # lazily: the core imports no Django settings

    raw = getattr(settings, "MOICA_AUTH_REVOCATION", None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("settings.MOICA_AUTH_REVOCATION must be a dict")
    config = dict(raw)
    if "issuer_certificates" not in config:
        from moica_auth.services import trust_store  # Django side, only when configured so

        config["issuer_certificates"] = list(trust_store().certificates)
    redis_url = getattr(settings, "MOICA_AUTH_REDIS_URL", None)
    if isinstance(redis_url, Mapping):  # the structured form (Sentinel, Cluster)
        from moica_auth.stores import redis_url_from_mapping

        redis_url = redis_url_from_mapping(redis_url)
    if "redis_url" not in config and redis_url:
        config["redis_url"] = redis_url
    if "grace_seconds" not in config and "crl_grace" in config:
        config["grace_seconds"] = config["crl_grace"]
    return config


def _load_certificates(items: Sequence[Any]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for item in items:
        if isinstance(item, x509.Certificate):
            out.append(item)
            continue
        if isinstance(item, bytes):
            data = item
        elif isinstance(item, str) and "-----BEGIN" in item:
            data = item.encode()
        else:
            try:
                data = Path(item).read_bytes()
            except OSError as exc:
                raise ConfigurationError(f"cannot read CA certificate {item!r}") from exc
        try:
            if b"-----BEGIN" in data:
                out.extend(x509.load_pem_x509_certificates(data))
            else:
                out.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise ConfigurationError(f"unreadable CA certificate {item!r}") from exc
    return out


def index_store_from_settings(config: Mapping[str, Any] | None = None) -> RevocationIndexStore:
    """``redis_url`` set → :class:`RedisIndexStore`, else a process-local store."""
    config = _settings() if config is None else config
    url = config.get("redis_url")
    if url:
        prefix = str(config.get("redis_prefix", "moica:crl"))
        return RedisIndexStore.from_url(str(url), prefix=prefix)
    return MemoryIndexStore()


def _marker(config: Mapping[str, Any]) -> str:
    """What identifies a configuration: only the keys read here, certificates by hash."""

    def norm(value: Any) -> Any:
        if isinstance(value, x509.Certificate):
            return value.fingerprint(hashes.SHA256()).hex()
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        return repr(value)

    return repr([(k, norm(config[k])) for k in CRL_SETTING_KEYS if k in config])


_SHARED: dict[str, CrlRefresher] = {}
_WORKERS: dict[str, BackgroundRefresher] = {}
_SHARED_LOCK = threading.Lock()


def refresher_from_settings(
    config: Mapping[str, Any] | None = None, *, fetcher: CrlFetcher | None = None
) -> CrlRefresher:
    """Build a :class:`CrlRefresher` from ``settings.MOICA_AUTH_REVOCATION`` (or ``config``).

    Refreshers are shared per process and per configuration, so the refresher, the
    login-path source and the background thread of one process use one index (which
    matters for the process-local :class:`MemoryIndexStore`). An explicit ``fetcher``
    builds a private refresher (tests).
    """
    config = _settings() if config is None else config
    if fetcher is not None:
        return _build(config, fetcher)
    marker = _marker(config)
    with _SHARED_LOCK:
        if marker not in _SHARED:
            _SHARED[marker] = _build(config, None)
        refresher = _SHARED[marker]
        interval = float(config.get("background_refresh_seconds") or 0)
        if interval > 0 and marker not in _WORKERS:
            _WORKERS[marker] = refresher.start_background(interval)
        return refresher


def _build(config: Mapping[str, Any], fetcher: CrlFetcher | None) -> CrlRefresher:
    issuers = _load_certificates(config.get("issuer_certificates", ()))
    if not issuers:
        raise ConfigurationError(
            "MOICA_AUTH_REVOCATION['issuer_certificates'] must list the CA certificates "
            "(MOICA G2/G3, GRCA G2/G3) whose CRLs are accepted"
        )
    urls = list(config.get("crl_urls", ()))
    return CrlRefresher(
        fetcher=fetcher
        or HttpCrlFetcher(
            connect_timeout=float(config.get("connect_timeout", 5.0)),
            read_timeout=float(config.get("read_timeout", 30.0)),
            total_timeout=float(config.get("total_timeout", 120.0)),
            max_bytes=int(config.get("max_bytes", 64 * 1024 * 1024)),
        ),
        store=index_store_from_settings(config),
        issuers=issuers,
        urls=urls,
        certificates=issuers if config.get("crl_urls_from_issuers", True) else (),
        crl_signers=_load_certificates(config.get("crl_signer_certificates", ())),
        refresh_margin=timedelta(seconds=float(config.get("refresh_margin_seconds", 7200))),
        max_age=timedelta(seconds=float(config.get("max_age_seconds", 21600))),
        min_interval=timedelta(seconds=float(config.get("min_interval_seconds", 900))),
        retry_interval=timedelta(seconds=float(config.get("retry_interval_seconds", 30))),
        lock_ttl=float(config.get("lock_ttl_seconds", 300)),
        skew=timedelta(seconds=float(config.get("skew_seconds", 300))),
    )


def crl_source_from_settings(config: Mapping[str, Any] | None = None) -> CrlSource:
    """The login-path :class:`CrlSource`, sharing the refresher's index store."""
    config = _settings() if config is None else config
    refresher = refresher_from_settings(config)
    return CrlSource(
        store=refresher.store,
        grace=timedelta(seconds=float(config.get("grace_seconds", 0))),
        refresher=refresher,
        fetch_on_miss=bool(config.get("fetch_on_miss", False)),
    )
