"""Django system checks: misconfiguration fails at start-up, each message says the fix.

IDs (``moica_auth.E00x`` errors, ``moica_auth.W00x`` warnings):

* E001 ``MOICA_AUTH_ORIGIN`` missing or not ``scheme://host[:port]``; E002 plain ``http``
  for a host other than localhost/127.0.0.1 (RFC 6454 origins; the challenge binds it);
* E003 no trust anchor in settings nor in the database; E004 an anchor cannot be read;
  W004 no anchor in settings and the database is not migrated yet (``migrate`` must run);
* W001 revocation checking off; W002 revocation ``soft_fail``;
* E009 ``MOICA_AUTH_REVOCATION`` is not a dict or has an unknown key (named); E010 a key
  of the wrong type or out of range (named); E011 an invalid ``order`` / ``leaf`` /
  ``intermediates``;
* E005 ``MOICA_AUTH_REDIS_URL`` set but Redis unreachable;
* E006 ``MoicaMiddleware`` before ``SessionMiddleware``/``AuthenticationMiddleware``
  or without them;
* E007 ``moica_auth.backends.MoicaBackend`` missing from ``AUTHENTICATION_BACKENDS``;
* W003 ``MOICA_AUTH_HASH_KEY`` derived from ``SECRET_KEY``;
* E008 ``MoicaConfirmationVerifier`` listed in ``MOICA_AUTH_VERIFIERS`` while
  ``MOICA_AUTH_CONFIRMATION`` is missing, incomplete or unreadable;
* W005 ``SecurityMiddleware`` sends ``Cross-Origin-Opener-Policy: same-origin``, which cuts
  the HiPKI popup off from pages that render the login box.
* E020–E029 / W020–W029: ``MOICA_AUTH_MOBILE`` (see :mod:`moica_auth.mobile.checks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError, MoicaAuthError
from moica_auth.mobile.checks import check_mobile

__all__ = ["check_settings"]

MIDDLEWARE_PATH = "moica_auth.middleware.MoicaMiddleware"
BACKEND_PATH = "moica_auth.backends.MoicaBackend"
SESSION_MW = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH_MW = "django.contrib.auth.middleware.AuthenticationMiddleware"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _check_origin() -> list[CheckMessage]:
    from moica_auth.challenge import normalise_origin

    origin = app_settings.ORIGIN
    if not origin:
        return [
            Error(
                "MOICA_AUTH_ORIGIN is not set.",
                hint='Set MOICA_AUTH_ORIGIN to the site origin, e.g. "https://portal.example.gov.tw".',
                id="moica_auth.E001",
            )
        ]
    try:
        normal = normalise_origin(origin)
    except MoicaAuthError:
        return [
            Error(
                f"MOICA_AUTH_ORIGIN {origin!r} is not an origin.",
                hint="Use scheme://host[:port] with no path, e.g. https://portal.example.gov.tw.",
                id="moica_auth.E001",
            )
        ]
    scheme, _, rest = normal.partition("://")
    host = rest.rsplit(":", 1)[0] if not rest.startswith("[") else rest.split("]")[0] + "]"
    if scheme != "https" and host not in _LOCAL_HOSTS:
        return [
            Error(
                f"MOICA_AUTH_ORIGIN {origin!r} is not https.",
                hint="Serve the portal over https; plain http is only accepted for localhost.",
                id="moica_auth.E002",
            )
        ]
    return []


def _check_anchors() -> list[CheckMessage]:
    from moica_auth.services import database_anchors, load_certificate_setting

    try:
        anchors = load_certificate_setting(app_settings.TRUST_ANCHORS)
        load_certificate_setting(app_settings.INTERMEDIATES)
    except MoicaAuthError as exc:
        return [
            Error(
                f"A MOICA_AUTH_TRUST_ANCHORS/INTERMEDIATES entry cannot be read ({exc.detail}).",
                hint="Give PEM or DER file paths, PEM text or certificate objects.",
                id="moica_auth.E004",
            )
        ]
    if anchors:
        return []
    if not _anchor_table_exists():
        # Not migrated yet: an error here would block the very `migrate` that creates
        # the table `moica_trust` needs.
        return [
            Warning(
                "No trust anchor in settings, and the TrustAnchor table does not exist yet.",
                hint="Run `manage.py migrate`, then `manage.py moica_trust add-official`.",
                id="moica_auth.W004",
            )
        ]
    if database_anchors()[0]:
        return []
    return [
        Error(
            "No trust anchor is configured: every card login would be refused.",
            hint="Run `manage.py moica_trust add-official` (GRCA G2/G3 roots, fingerprints "
            "pinned) or set MOICA_AUTH_TRUST_ANCHORS to PEM files.",
            id="moica_auth.E003",
        )
    ]


def _anchor_table_exists() -> bool:
    from django.db import DatabaseError, connections, router

    from moica_auth.models import TrustAnchor

    alias = router.db_for_read(TrustAnchor)
    try:
        with connections[alias].cursor() as cursor:
            tables = connections[alias].introspection.table_names(cursor)
    except DatabaseError:
        return False
    return TrustAnchor._meta.db_table in tables


def _check_revocation() -> list[CheckMessage]:
    try:
        options = app_settings.REVOCATION
    except ConfigurationError as exc:
        key = str(exc.data.get("key", ""))
        unknown = "unknown key" in exc.detail or key == "MOICA_AUTH_REVOCATION"
        return [
            Error(
                f"{exc.detail}.",
                hint="See docs/revocation.md for the MOICA_AUTH_REVOCATION keys and types.",
                id="moica_auth.E009" if unknown else "moica_auth.E010",
            )
        ]
    if options is None:
        return [
            Warning(
                "Revocation checking is turned off: revoked or suspended cards can log in.",
                hint='Remove MOICA_AUTH_REVOCATION = None/"off" (the default: OCSP, then CRLs).',
                id="moica_auth.W001",
            )
        ]
    if options.checker is None:
        from moica_auth.revocation.policy import RevocationPolicy

        try:
            RevocationPolicy(
                order=options.order,
                timeout=options.timeout,
                leaf=options.leaf,  # type: ignore[arg-type]
                intermediates=options.intermediates,  # type: ignore[arg-type]
            )
        except ConfigurationError as exc:
            return [
                Error(
                    f"MOICA_AUTH_REVOCATION: {exc.detail}.",
                    hint="See docs/revocation.md (order, leaf, intermediates).",
                    id="moica_auth.E011",
                )
            ]
    if options.soft_fail:
        return [
            Warning(
                "Revocation soft_fail is on: a login is accepted when no status can be obtained.",
                hint='Set MOICA_AUTH_REVOCATION["soft_fail"] = False to fail closed.',
                id="moica_auth.W002",
            )
        ]
    return []


def _check_redis() -> list[CheckMessage]:
    from moica_auth.stores import store_from_url

    url = app_settings.REDIS_URL
    if not url:
        return []
    try:
        store_from_url(url, prefix=app_settings.STORE_PREFIX).ping()
    except MoicaAuthError as exc:
        return [
            Error(
                f"Redis at MOICA_AUTH_REDIS_URL is unreachable ({exc.code}).",
                hint="Start Redis or fix MOICA_AUTH_REDIS_URL; logins fail closed without it.",
                id="moica_auth.E005",
            )
        ]
    return []


def _check_redis_fence() -> list[CheckMessage]:
    """A replicated store (Sentinel, Cluster) without the failover fence (see stores.py)."""
    from moica_auth.stores import RedisStore, store_from_url

    url = app_settings.REDIS_URL
    if not url or "+" not in url.split(":", 1)[0]:
        return []
    try:
        store = store_from_url(url, prefix=app_settings.STORE_PREFIX)
    except MoicaAuthError:
        return []  # reported by E005
    if isinstance(store, RedisStore) and not store.fenced:
        return [
            Warning(
                "MOICA_AUTH_REDIS_URL names a replicated Redis with fence=no: after a "
                "failover, a challenge already used on the old master may be accepted again.",
                hint="Remove fence=no from MOICA_AUTH_REDIS_URL.",
                id="moica_auth.W030",
            )
        ]
    return []


def _index(items: Sequence[str], name: str) -> int | None:
    return items.index(name) if name in items else None


def _check_middleware() -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = _index(middleware, MIDDLEWARE_PATH)
    if ours is None:
        return []
    problems: list[CheckMessage] = []
    for needed in (SESSION_MW, AUTH_MW):
        position = _index(middleware, needed)
        if position is None or position > ours:
            problems.append(
                Error(
                    f"{MIDDLEWARE_PATH} must come after {needed}.",
                    hint=f"Put {needed} in MIDDLEWARE before {MIDDLEWARE_PATH}.",
                    id="moica_auth.E006",
                )
            )
    return problems


def _check_backend() -> list[CheckMessage]:
    if BACKEND_PATH in list(getattr(settings, "AUTHENTICATION_BACKENDS", [])):
        return []
    return [
        Error(
            f"{BACKEND_PATH} is not in AUTHENTICATION_BACKENDS.",
            hint=f'Add "{BACKEND_PATH}" to AUTHENTICATION_BACKENDS.',
            id="moica_auth.E007",
        )
    ]


def _check_hash_key() -> list[CheckMessage]:
    if not app_settings.HASH_KEY_IS_DERIVED:
        return []
    return [
        Warning(
            "MOICA_AUTH_HASH_KEY is derived from SECRET_KEY.",
            hint="Set MOICA_AUTH_HASH_KEY to its own secret (>= 32 random bytes): rotating "
            "SECRET_KEY would otherwise orphan every ID-number binding.",
            id="moica_auth.W003",
        )
    ]


def _check_opener_policy() -> list[CheckMessage]:
    if "django.middleware.security.SecurityMiddleware" not in settings.MIDDLEWARE:
        return []
    if getattr(settings, "SECURE_CROSS_ORIGIN_OPENER_POLICY", "same-origin") != "same-origin":
        return []
    return [
        Warning(
            "Cross-Origin-Opener-Policy is 'same-origin': the HiPKI popup cannot answer the "
            "pages that render {% moica_login_box %}.",
            hint='Set SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin-allow-popups", or set '
            "that header on the responses that carry the login box. moica_auth's own login "
            "page sets it itself; silence this warning if that is the only page you use.",
            id="moica_auth.W005",
        )
    ]


def _lists_confirmation_verifier() -> bool:
    """Whether a ``MOICA_AUTH_VERIFIERS`` entry is the confirmation verifier *class*
    (a ready verifier object brings its own client)."""
    import inspect

    from django.utils.module_loading import import_string

    from moica_auth.identity.verifiers import MoicaConfirmationVerifier

    for path in app_settings.VERIFIERS:
        try:
            target = import_string(str(path))
        except ImportError:
            continue  # reported when the verifiers are loaded
        if inspect.isclass(target) and issubclass(target, MoicaConfirmationVerifier):
            return True
    return False


def _check_confirmation() -> list[CheckMessage]:
    from moica_auth.conf import CONFIRMATION_KEYS, CONFIRMATION_REQUIRED_KEYS

    if not _lists_confirmation_verifier():
        return []
    hint = (
        "Set MOICA_AUTH_CONFIRMATION = {'url': …, 'client_cert': …, 'client_key': …, "
        "'service_cert': …} (see docs/integration.md), or remove MoicaConfirmationVerifier "
        "from MOICA_AUTH_VERIFIERS."
    )
    try:
        config = app_settings.CONFIRMATION
    except MoicaAuthError as exc:
        return [Error(f"{exc.detail}.", hint=hint, id="moica_auth.E008")]
    if config is None:
        return [
            Error(
                "MoicaConfirmationVerifier is in MOICA_AUTH_VERIFIERS but "
                "MOICA_AUTH_CONFIRMATION is not set: every login asking for personal data "
                "would be refused.",
                hint=hint,
                id="moica_auth.E008",
            )
        ]
    missing = sorted(CONFIRMATION_REQUIRED_KEYS - {k for k, v in config.items() if v})
    unknown = sorted(set(config) - CONFIRMATION_KEYS)
    if missing or unknown:
        what = (f"lacks {missing}" if missing else "") + (
            f"{' and ' if missing else ''}has unknown keys {unknown}" if unknown else ""
        )
        return [Error(f"MOICA_AUTH_CONFIRMATION {what}.", hint=hint, id="moica_auth.E008")]
    try:
        from moica_auth.identity.confirmation import client_from_config

        client_from_config(config)
    except MoicaAuthError as exc:
        return [
            Error(
                f"MOICA_AUTH_CONFIRMATION cannot be used ({exc.detail}).",
                hint=hint,
                id="moica_auth.E008",
            )
        ]
    except ImportError:
        return [
            Error(
                "The MOICA ID confirmation client needs the optional packages signxml and lxml.",
                hint="Install signxml (>= 5) and lxml.",
                id="moica_auth.E008",
            )
        ]
    return []


@register(Tags.security, deploy=False)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """All ``moica_auth`` configuration checks."""
    messages: list[CheckMessage] = []
    messages += _check_origin()
    messages += _check_anchors()
    messages += _check_revocation()
    messages += _check_redis()
    messages += _check_redis_fence()
    messages += _check_middleware()
    messages += _check_backend()
    messages += _check_confirmation()
    messages += _check_hash_key()
    messages += _check_opener_policy()
    messages += check_mobile()
    return messages
