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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from django.db import DatabaseError, connections, models, router
from django.utils.module_loading import import_string

from moica_auth.certificate import load_certificates
from moica_auth.challenge import ChallengeService
from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError
from moica_auth.ratelimit import RateLimiter
from moica_auth.stores import KeyValueStore, store_from_url
from moica_auth.validation.trust import TrustStore

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
    verifier: Any  # moica_auth.verifier.LoginVerifier
    trust: TrustStore
    revocation: Any  # a RevocationChecker-like object with .check(chain, at=...), or None
    limiter: RateLimiter
    personal_verifiers: tuple[Any, ...]
    clock: Callable[[], datetime]


_lock = threading.Lock()
_services: Services | None = None
_anchor_state: tuple[tuple[str, bool], ...] | None = None


def load_certificate_setting(
    values: Iterable[str | bytes | x509.Certificate],
) -> list[x509.Certificate]:
    """Certificates from a setting: file paths, PEM text, DER bytes or objects."""
    out: list[x509.Certificate] = []
    for value in values:
        if isinstance(value, x509.Certificate):
            out.append(value)
        elif isinstance(value, bytes):
            out.extend(load_certificates(value))
        elif isinstance(value, str | Path):
            text = str(value)
            if "-----BEGIN" in text:
                out.extend(load_certificates(text))
            else:
                try:
                    out.extend(load_certificates(Path(text).read_bytes()))
                except OSError as exc:
                    raise ConfigurationError(f"cannot read certificate file {text}") from exc
        else:
            raise ConfigurationError(
                f"unsupported certificate setting value of type {type(value).__name__}"
            )
    return out


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
    anchors = load_certificate_setting(app_settings.TRUST_ANCHORS)
    intermediates = load_certificate_setting(app_settings.INTERMEDIATES)
    db_roots, db_others = database_anchors()
    anchors += db_roots
    intermediates += db_others
    if not anchors:
        raise ConfigurationError(
            "no trust anchors: set MOICA_AUTH_TRUST_ANCHORS or run "
            "`manage.py moica_trust add-official`"
        )
    return TrustStore.from_certificates(anchors, intermediates)


def _build_revocation(store: KeyValueStore, trust: TrustStore) -> Any:
    options = app_settings.REVOCATION
    if options is None:
        return None
    options = dict(options)
    factory = options.pop("checker", None)
    if factory is not None:
        if isinstance(factory, str):
            factory = import_string(factory)
        return factory(store=store, trust=trust, options=options)
    return default_revocation_checker(store=store, trust=trust, options=options)


def default_revocation_checker(
    *, store: KeyValueStore, trust: TrustStore, options: dict[str, Any]
) -> Any:
    """A :class:`~moica_auth.revocation.policy.RevocationChecker` from settings options.

    ``order``, ``soft_fail``, ``timeout``, ``crl_grace`` (seconds), ``check_intermediates``
    feed the policy; ``ocsp_url`` (one responder for all), ``ocsp_urls`` (AIA rewrites)
    and ``ocsp_nonce_optout`` configure the OCSP source (RFC 6960); the CRL source reads
    the revocation index kept fresh by ``moica-auth crl refresh`` (RFC 5280 §6.3).
    """
    from datetime import timedelta

    from moica_auth.revocation.ocsp import OcspSource
    from moica_auth.revocation.policy import RevocationChecker, RevocationPolicy

    order = tuple(options.get("order", ("ocsp", "crl")))
    policy = RevocationPolicy(
        order=order,
        soft_fail=bool(options.get("soft_fail", False)),
        timeout=float(options.get("timeout", 5.0)),
        crl_grace=timedelta(seconds=float(options.get("crl_grace", 0))),
        check_intermediates=bool(options.get("check_intermediates", True)),
    )
    sources: dict[str, Any] = {}
    if "ocsp" in order:
        sources["ocsp"] = OcspSource(
            store=store,
            timeout=policy.timeout,
            responder_url=options.get("ocsp_url"),
            responder_urls=options.get("ocsp_urls"),
            nonce_optout=frozenset(options.get("ocsp_nonce_optout", ())),
        )
    if "crl" in order:
        sources["crl"] = _crl_source(trust=trust, policy=policy, options=options)
    return RevocationChecker(policy=policy, sources=sources)


def _crl_source(*, trust: TrustStore, policy: Any, options: dict[str, Any]) -> Any:
    """The CRL source of :mod:`moica_auth.revocation.refresh`, sharing its index.

    Defaults filled from the app settings: the accepted CRL issuers are the trust store's
    certificates, the index lives in ``MOICA_AUTH_REDIS_URL`` when set, and the grace
    past nextUpdate is ``crl_grace``.
    """
    from moica_auth.revocation.refresh import crl_source_from_settings

    config = dict(options)
    config.setdefault("issuer_certificates", list(trust.certificates))
    if app_settings.REDIS_URL:
        config.setdefault("redis_url", app_settings.REDIS_URL)
    config.setdefault("grace_seconds", policy.crl_grace.total_seconds())
    return crl_source_from_settings(config)


def _build_verifier(trust: TrustStore, revocation: Any) -> Any:
    from moica_auth.validation.chain import ValidationPolicy
    from moica_auth.verifier import LoginVerifier, VerifierConfig

    try:
        policy = ValidationPolicy(
            profile=app_settings.VALIDATION_PROFILE,
            allowed_policy_oids=app_settings.POLICY_OIDS,
            min_rsa_bits=app_settings.MIN_RSA_BITS,
        )
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
    trust = trust_store()
    revocation = _build_revocation(store, trust)
    services = Services(
        store=store,
        challenges=challenges,
        verifier=_build_verifier(trust, revocation),
        trust=trust,
        revocation=revocation,
        limiter=RateLimiter(store=store, limits=app_settings.RATE_LIMIT),
        personal_verifiers=_load_personal_verifiers(app_settings.VERIFIERS),
        clock=clock,
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
