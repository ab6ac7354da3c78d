"""Wiring: the verification core built from ``MOICA_AUTH_*`` settings, built once.

:func:`get_services` returns one :class:`Services` per process: the shared store, the
challenge service, the login verifier (trust store, chain policy, revocation), the rate
limiter and the personal-data verifiers (the MOICA confirmation verifier gets
``MOICA_AUTH_CONFIRMATION``). Building a trust store parses certificates and may query
the database, so the result is cached; :func:`reset_services` drops it and is called
when a ``MOICA_AUTH_*`` setting changes (tests) and when a
:class:`~moica_auth.models.TrustAnchor` is saved or deleted (see :mod:`moica_auth.signals`);
each use also compares the enabled database anchors with those the cache was built from,
so a change made by another process applies too.

The effective trust store is the settings anchors plus the enabled database anchors
(RFC 5280 §6.1.1 (d): the relying party's choice of trust anchors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from django.db import DatabaseError, connections, models, router
from django.utils.module_loading import import_string

from moica_auth._x509 import load_certificate_setting
from moica_auth.challenge import ChallengeService
from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError
from moica_auth.ratelimit import RateLimiter
from moica_auth.revocation.refresh import BackgroundRefresher, CrlRefresher
from moica_auth.revocation.settings import RevocationSettings
from moica_auth.revocation.signers import CrlSignerCandidates, split_crl_signers
from moica_auth.revocation.store import RevocationIndexStore
from moica_auth.revocation.types import RevocationSource
from moica_auth.stores import KeyValueStore, store_from_url
from moica_auth.validation.chain import ValidationPolicy
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig
from moica_auth.verifier import RevocationChecker as VerifierRevocationChecker

if TYPE_CHECKING:
    from moica_auth.revocation.policy import RevocationChecker

__all__ = [
    "Services",
    "database_anchors",
    "get_services",
    "load_certificate_setting",
    "reset_services",
    "trust_store",
]


@dataclass(frozen=True)
class Services:
    """Everything a login needs, built from settings."""

    store: KeyValueStore
    challenges: ChallengeService
    verifier: LoginVerifier
    trust: TrustStore
    revocation: VerifierRevocationChecker | None
    limiter: RateLimiter
    personal_verifiers: tuple[Any, ...]
    clock: Callable[[], datetime]
    #: The one CRL refresher of this process (``None`` without ``"crl"`` in the order):
    #: its index is the one the login path's CRL source reads.
    crl_refresher: CrlRefresher | None = None


_lock = threading.Lock()
_services: Services | None = None
_anchor_state: tuple[tuple[str, bool], ...] | None = None


def database_anchors() -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Enabled :class:`~moica_auth.models.TrustAnchor` rows as (roots, other CAs).

    A database that is not migrated yet (first ``migrate``) contributes nothing.
    """
    from moica_auth.models import TrustAnchor

    roots: list[x509.Certificate] = []
    others: list[x509.Certificate] = []
    try:
        for row in TrustAnchor.objects.filter(enabled=True).order_by("pk"):
            (roots if row.is_root else others).append(row.certificate())
    except DatabaseError:
        return [], []
    return roots, others


def trust_store() -> TrustStore:
    """Settings anchors + enabled DB anchors; ``ConfigurationError`` when there are none."""
    return _trust_and_crl_signers()[0]


def _trust_and_crl_signers() -> tuple[TrustStore, list[x509.Certificate]]:
    """The trust store, and the candidate CRL signers among ``MOICA_AUTH_INTERMEDIATES``
    (not CAs, keyUsage cRLSign: never path links, see
    :mod:`moica_auth.revocation.signers`)."""
    anchors = load_certificate_setting(app_settings.TRUST_ANCHORS)
    intermediates, crl_signers = split_crl_signers(
        load_certificate_setting(app_settings.INTERMEDIATES)
    )
    db_roots, db_others = database_anchors()
    anchors += db_roots
    intermediates += db_others
    if not anchors:
        raise ConfigurationError(
            "no trust anchors: set MOICA_AUTH_TRUST_ANCHORS or run "
            "`manage.py moica_trust add-official`"
        )
    return TrustStore.from_certificates(anchors, intermediates), crl_signers


def _build_revocation(
    store: KeyValueStore, trust: TrustStore, crl_signers: CrlSignerCandidates | None
) -> tuple[VerifierRevocationChecker | None, CrlRefresher | None]:
    """(checker, CRL refresher) from :attr:`app_settings.REVOCATION` (``(None, None)``
    when revocation is off). A ``checker`` factory is called as
    ``factory(store=, trust=, settings=)`` and gets no refresher."""
    settings = app_settings.REVOCATION
    if settings is None:
        return None, None
    if settings.checker is not None:
        factory = settings.checker
        if isinstance(factory, str):
            factory = import_string(factory)
        return factory(store=store, trust=trust, settings=settings), None
    return default_revocation_checker(
        store=store, trust=trust, settings=settings, crl_signers=crl_signers
    )


def default_revocation_checker(
    *,
    store: KeyValueStore,
    trust: TrustStore,
    settings: RevocationSettings,
    crl_signers: CrlSignerCandidates | None = None,
) -> tuple[RevocationChecker, CrlRefresher | None]:
    """The :class:`~moica_auth.revocation.policy.RevocationChecker` and, when ``"crl"``
    is in the order, the :class:`~moica_auth.revocation.refresh.CrlRefresher` whose index
    its CRL source reads (one object: the ``moica_revocation`` command, the background
    thread and the login path share it through :attr:`Services.crl_refresher`)."""
    from moica_auth.revocation.crl import CrlSource
    from moica_auth.revocation.ocsp import OcspSource
    from moica_auth.revocation.policy import (
        RevocationChecker,
        RevocationPolicy,
    )

    policy = RevocationPolicy(
        order=settings.order,
        soft_fail=settings.soft_fail,
        timeout=settings.timeout,
        crl_grace=settings.crl_grace_delta,
        # Strings are checked and converted by RevocationPolicy (ConfigurationError).
        leaf=settings.leaf,  # type: ignore[arg-type]
        intermediates=settings.intermediates,  # type: ignore[arg-type]
    )
    sources: dict[str, RevocationSource] = {}
    if "ocsp" in policy.order:
        sources["ocsp"] = OcspSource(
            store=store,
            timeout=policy.timeout,
            responder_url=settings.ocsp_url,
            responder_urls=settings.ocsp_urls,
            nonce_optout=frozenset(settings.ocsp_nonce_optout),
        )
    refresher: CrlRefresher | None = None
    if "crl" in policy.order:
        refresher = crl_refresher(settings=settings, trust=trust, crl_signers=crl_signers)
        sources["crl"] = CrlSource(
            store=refresher.store,
            grace=policy.crl_grace,
            refresher=refresher,
            fetch_on_miss=settings.fetch_on_miss,
        )
    checker = RevocationChecker(policy=policy, sources=sources)
    if crl_signers is not None:
        # A candidate CRL signer's own status is checked like a login's certificate.
        crl_signers.checker = checker
    return checker, refresher


# One CRL index per process and location: it outlives a rebuild of the services (a trust
# anchor added in the admin must not empty a process-local index).
_indexes: dict[tuple[str | None, str], RevocationIndexStore] = {}
_lock_indexes = threading.Lock()
_background: BackgroundRefresher | None = None


def _index_store(settings: RevocationSettings) -> RevocationIndexStore:
    from moica_auth.revocation.store import MemoryIndexStore, RedisIndexStore

    url = settings.redis_url or app_settings.REDIS_URL
    # A process-local index belongs to one deployment's store prefix, as Redis keys do.
    key = (url, f"{app_settings.STORE_PREFIX}|{settings.redis_prefix}")
    with _lock_indexes:
        if key not in _indexes:
            _indexes[key] = (
                RedisIndexStore.from_url(url, prefix=settings.redis_prefix)
                if url
                else MemoryIndexStore()
            )
        return _indexes[key]


def crl_refresher(
    *,
    settings: RevocationSettings,
    trust: TrustStore,
    crl_signers: CrlSignerCandidates | None = None,
) -> CrlRefresher:
    """The CRL refresher the settings describe, over this process's shared index.

    Accepted CRL issuers: ``issuer_certificates``, else the trust store's certificates.
    Separate CRL signers: ``crl_signer_certificates`` (trusted by configuration) and
    the candidates (non-CA cRLSign certificates of ``MOICA_AUTH_INTERMEDIATES``), which
    :class:`~moica_auth.revocation.signers.CrlSignerCandidates` validates and checks
    before each use.
    """
    global _background
    from moica_auth.revocation.crl import HttpCrlFetcher
    from moica_auth.revocation.refresh import CrlRefresher

    issuers = (
        load_certificate_setting(settings.issuer_certificates)
        if settings.issuer_certificates is not None
        else list(trust.certificates)
    )
    if not issuers:
        raise ConfigurationError(
            "MOICA_AUTH_REVOCATION['issuer_certificates'] must list the CA certificates "
            "(MOICA G2/G3, GRCA G2/G3) whose CRLs are accepted"
        )
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
            max_bytes=settings.max_bytes,
        ),
        store=_index_store(settings),
        issuers=issuers,
        urls=settings.crl_urls,
        certificates=issuers if settings.crl_urls_from_issuers else (),
        crl_signers=load_certificate_setting(settings.crl_signer_certificates),
        refresh_margin=timedelta(seconds=settings.refresh_margin_seconds),
        max_age=timedelta(seconds=settings.max_age_seconds),
        min_interval=timedelta(seconds=settings.min_interval_seconds),
        retry_interval=timedelta(seconds=settings.retry_interval_seconds),
        lock_ttl=settings.lock_ttl_seconds,
        skew=timedelta(seconds=settings.skew_seconds),
        login_deadline=settings.login_fetch_deadline,
        signer_candidates=crl_signers,
        # The deployment's clock (MOICA_AUTH_CLOCK), as for logins: freshness and the
        # status of a candidate CRL signer are judged at the same time as a login would.
        clock=app_settings.now,
    )
    with _lock_indexes:
        if _background is not None:
            _background.stop(timeout=0)
            _background = None
        if settings.background_refresh_seconds > 0:
            _background = refresher.start_background(settings.background_refresh_seconds)
    return refresher


def _validation_policy() -> ValidationPolicy:
    """The chain policy of logins (and of candidate CRL signers)."""
    try:
        return ValidationPolicy(
            profile=app_settings.VALIDATION_PROFILE,
            allowed_policy_oids=app_settings.POLICY_OIDS,
            min_rsa_bits=app_settings.MIN_RSA_BITS,
            max_carried_certificates=app_settings.MAX_CARRIED_CERTIFICATES,
        )
    except (TypeError, ValueError) as exc:
        # The core validates these values; to a deployment they are settings mistakes.
        raise ConfigurationError(f"MOICA_AUTH validation settings: {exc}") from exc


def _build_verifier(
    trust: TrustStore, revocation: VerifierRevocationChecker | None
) -> LoginVerifier:
    policy = _validation_policy()
    try:
        config = VerifierConfig(
            trust=trust,
            policy=policy,
            allowed_hashes=app_settings.ALLOWED_HASHES,
            revocation=revocation,
        )
    except (TypeError, ValueError) as exc:
        # The core validates these values; to a deployment they are settings mistakes.
        raise ConfigurationError(f"MOICA_AUTH validation settings: {exc}") from exc
    return LoginVerifier(config)


def _load_personal_verifiers(paths: Sequence[str]) -> tuple[Any, ...]:
    """The ``MOICA_AUTH_VERIFIERS``; a verifier class whose constructor takes
    ``confirmation`` (:class:`~moica_auth.identity.verifiers.MoicaConfirmationVerifier`)
    gets ``MOICA_AUTH_CONFIRMATION``. Without that setting it refuses to load
    (``ConfigurationError``): the login fails closed and system check E008 says why."""
    from moica_auth.identity.verifiers import load_verifiers

    confirmation = app_settings.CONFIRMATION
    kwargs: dict[str, Any] = {}
    if confirmation is not None:
        kwargs["confirmation"] = confirmation
    return tuple(load_verifiers(list(paths), **kwargs))


def _build() -> tuple[Services, tuple[tuple[str, bool], ...]]:
    """The services, and the database anchor state they were built from."""
    origin = app_settings.ORIGIN
    if not origin:
        raise ConfigurationError("MOICA_AUTH_ORIGIN is not set")
    store = store_from_url(app_settings.REDIS_URL, prefix=app_settings.STORE_PREFIX)
    clock = app_settings.now
    challenges = ChallengeService(
        store,
        origin=origin,
        ttl=app_settings.CHALLENGE_TTL,
        binding_key=app_settings.HASH_KEY,
        clock=clock,
    )
    # Read before the trust store: a change in between makes the next call rebuild.
    state = database_anchor_state()
    trust, signer_certificates = _trust_and_crl_signers()
    signers = (
        CrlSignerCandidates(
            candidates=signer_certificates, trust=trust, policy=_validation_policy()
        )
        if signer_certificates
        else None
    )
    revocation, refresher = _build_revocation(store, trust, signers)
    services = Services(
        store=store,
        challenges=challenges,
        verifier=_build_verifier(trust, revocation),
        trust=trust,
        revocation=revocation,
        limiter=RateLimiter(store=store, limits=app_settings.RATE_LIMIT),
        personal_verifiers=_load_personal_verifiers(app_settings.VERIFIERS),
        clock=clock,
        crl_refresher=refresher,
    )
    return services, state


def database_anchor_state() -> tuple[tuple[str, bool], ...]:
    """(fingerprint, is_root) of the enabled database anchors: one small query.

    The signals that reset the cache reach only the process where a row changed; an
    anchor disabled in the admin of another worker, or removed with ``manage.py
    moica_trust`` (another process altogether), would otherwise stay trusted here until
    a restart. Comparing this state on every use closes that gap.

    It runs on every challenge and login request, so the statement is written once per
    database and executed on a plain cursor: building it through the ORM each time cost
    more than running it (``benchmarks/login.py``).
    """
    from moica_auth.models import TrustAnchor

    alias = router.db_for_read(TrustAnchor)
    connection = connections[alias]
    sql = _ANCHOR_STATE_SQL.get(alias)
    if sql is None:
        meta = TrustAnchor._meta
        quote = connection.ops.quote_name

        def column(name: str) -> str:
            field = cast("models.Field[Any, Any]", meta.get_field(name))
            return quote(str(field.column))

        # Identifiers from the model, quoted by the backend; the one value is a parameter.
        sql = (
            f"SELECT {column('sha256')}, {column('is_root')} FROM {quote(meta.db_table)}"  # noqa: S608
            f" WHERE {column('enabled')} = %s ORDER BY {column(meta.pk.name)}"
        )
        _ANCHOR_STATE_SQL[alias] = sql
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, [True])
            rows = cursor.fetchall()
    except DatabaseError:
        return ()
    return tuple((str(sha), bool(root)) for sha, root in rows)


#: The anchor-state statement per database alias (see :func:`database_anchor_state`).
_ANCHOR_STATE_SQL: dict[str, str] = {}


def get_services() -> Services:
    """The cached :class:`Services`, rebuilt when the enabled database anchors changed
    (in any process); raises ``ConfigurationError`` when misconfigured."""
    global _services, _anchor_state
    current = _services
    if current is not None and database_anchor_state() == _anchor_state:
        return current
    with _lock:
        if _services is None or _services is current:
            _services, _anchor_state = _build()
        return _services


def reset_services(**_: Any) -> None:
    """Forget the cached services (settings or trust anchors changed)."""
    global _services, _anchor_state
    with _lock:
        _services = None
        _anchor_state = None
