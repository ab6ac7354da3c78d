"""Login challenges: issued once, bound to a browser session and a site, consumed once.

A challenge is the text the citizen's card signs (the *tbs*, "to be signed"). The server
issues it, keeps a record in a :class:`~moica_auth.stores.KeyValueStore` and, when the
signed token comes back, consumes the record with an atomic get-and-delete
(:meth:`KeyValueStore.take`), so a signature can log in at most once.

The tbs is one line of ASCII with a fixed field order (see ``docs/protocol.md``)::

    moica-auth/1 origin=https://portal.example.gov.tw nonce=<43 b64url> iat=2026-11-27T05:00:00Z

The nonce carries 256 bits from :func:`secrets.token_bytes` (RFC 4086 §3 asks for a
cryptographic source), so it cannot be guessed. The origin is in the text the card signs,
so a signature made for one site cannot be replayed at another (the relying-party
binding WebAuthn gets from ``clientDataJSON.origin``, W3C WebAuthn §7.2 steps 9–12).

The record is bound to the session by ``HMAC-SHA256(binding_key, session id)`` (RFC 2104);
the raw session key is never stored, so a read of the store does not yield sessions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moica_auth.exceptions import (
    ChallengeExpired,
    ChallengeReused,
    ChallengeUnknown,
    ConfigurationError,
    MalformedRequest,
    OriginMismatch,
    SessionMismatch,
    StoreUnavailable,
)
from moica_auth.stores import KeyValueStore, add_many

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "NONCE_BYTES",
    "RETENTION",
    "TBS_VERSION",
    "Challenge",
    "ChallengeService",
    "normalise_origin",
    "parse_tbs",
]

TBS_VERSION = "moica-auth/1"
NONCE_BYTES = 32
DEFAULT_TTL = 120.0
# A citizen types a PIN on a card reader; half an hour is far beyond any real login and
# keeps a stolen-but-unused signature from being useful for long.
MAX_TTL = 1800.0
# Records outlive their TTL by this much so a late answer is reported as *expired*
# (with a useful message) rather than as *unknown*.
RETENTION = 300.0

_RECORD_KEY = "challenge:"
# Written at issue time next to the record and kept as long: once the record has been
# taken, its presence tells a replay (challenge_reused) from a nonce never issued
# (challenge_unknown) without any race against the winning consumer.
_ISSUED_KEY = "challenge-issued:"
_BINDING_CONTEXT = b"moica-auth/1 session binding\x00"

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_IAT_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"
_TBS_RE = re.compile(
    r"moica-auth/1 origin=(?P<origin>https?://[!-~]+?) nonce=(?P<nonce>[A-Za-z0-9_-]{43})"
    r" iat=(?P<iat>" + _IAT_RE + r")"
)
_IAT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_HOSTPORT_RE = re.compile(
    r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<host>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_ORIGIN = 255


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _format_iat(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_IAT_FORMAT)


def normalise_origin(origin: str) -> str:
    """Return ``scheme://host[:port]`` in canonical form (RFC 6454 §4 and §6.2).

    The scheme is ``http`` or ``https``; scheme and host are lower-cased; a default port
    is dropped; an IPv6 literal is kept in brackets, compressed. A DNS name must already
    be in its ASCII (A-label) form, as browsers send it in the ``Origin`` header. Paths
    other than ``/``, queries, fragments, user-info, ``null``, non-ASCII and whitespace
    are refused with :class:`MalformedRequest`: an origin is a security boundary, so
    nothing is guessed.
    """
    if not isinstance(origin, str) or not origin or len(origin) > _MAX_ORIGIN:
        raise MalformedRequest("origin must be a non-empty string of at most 255 characters")
    if not origin.isascii() or not origin.isprintable() or any(c.isspace() for c in origin):
        raise MalformedRequest("origin must be printable ASCII without spaces")
    scheme, sep, rest = origin.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise MalformedRequest("origin scheme must be http or https")
    if rest.endswith("/"):
        rest = rest[:-1]
    match = _HOSTPORT_RE.fullmatch(rest.lower())
    if match is None:
        raise MalformedRequest("origin must be scheme://host[:port] with nothing after it")
    if match["ipv6"] is not None:
        try:
            host = f"[{ipaddress.IPv6Address(match['ipv6']).compressed}]"
        except ValueError:
            raise MalformedRequest("origin has an invalid IPv6 address") from None
    else:
        host = match["host"]
        if len(host) > 253 or not all(_LABEL_RE.fullmatch(lb) for lb in host.split(".")):
            raise MalformedRequest("origin has an invalid host name")
        if host.replace(".", "").isdigit():
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise MalformedRequest("origin has an invalid IPv4 address") from None
    port_text = match["port"]
    if port_text is None:
        return f"{scheme}://{host}"
    port = int(port_text)
    if not 0 < port < 65536:
        raise MalformedRequest("origin port is out of range")
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_tbs(tbs: str) -> dict[str, str]:
    """Parse a tbs line strictly; return ``{"version", "origin", "nonce", "iat"}``.

    Anything but the exact format (version tag, field order, single spaces, canonical
    origin, 43-character base64url nonce, ``YYYY-MM-DDTHH:MM:SSZ``) raises
    :class:`MalformedRequest`. Parsing never trusts the text: the caller still compares
    it byte for byte with the issued challenge.
    """
    if not isinstance(tbs, str) or len(tbs) > 512 or not tbs.isascii():
        raise MalformedRequest("tbs must be a short ASCII string")
    match = _TBS_RE.fullmatch(tbs)
    if match is None:
        raise MalformedRequest(f"tbs is not in the {TBS_VERSION} format")
    origin = match["origin"]
    if normalise_origin(origin) != origin:
        raise MalformedRequest("tbs origin is not in canonical form")
    nonce = match["nonce"]
    _decode_nonce(nonce)
    try:
        datetime.strptime(match["iat"], _IAT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise MalformedRequest("tbs iat is not a valid UTC time") from None
    return {"version": TBS_VERSION, "origin": origin, "nonce": nonce, "iat": match["iat"]}


def _decode_nonce(nonce: object) -> bytes:
    """Decode a wire nonce; refuse anything but the canonical 43-character form."""
    if not isinstance(nonce, str) or _NONCE_RE.fullmatch(nonce) is None:
        raise MalformedRequest("nonce must be 43 base64url characters")
    try:
        raw = base64.urlsafe_b64decode(nonce + "=")
    except (binascii.Error, ValueError):
        raise MalformedRequest("nonce is not base64url") from None
    # Two spellings decode to the same bytes when the last character has non-zero
    # padding bits; only the canonical one was ever issued.
    if len(raw) != NONCE_BYTES or _b64url(raw) != nonce:
        raise MalformedRequest("nonce is not a canonical 32-byte base64url value")
    return raw


@dataclass(frozen=True)
class Challenge:
    """An issued login challenge. ``tbs`` is the exact text the card signs."""

    nonce: str
    origin: str
    issued_at: datetime
    expires_at: datetime
    tbs: str
    session_binding: str

    def tbs_bytes(self) -> bytes:
        """The signed content: the tbs in ASCII (what ``verify_signature`` compares)."""
        return self.tbs.encode("ascii")

    def nonce_bytes(self) -> bytes:
        """The 32 random bytes of the nonce."""
        return _decode_nonce(self.nonce)

    def as_json(self) -> dict[str, str]:
        """What a browser needs to sign: never the session binding."""
        return {
            "nonce": self.nonce,
            "tbs": self.tbs,
            "origin": self.origin,
            "issued_at": _format_iat(self.issued_at),
            "expires_at": self.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


class ChallengeService:
    """Issue and consume single-use challenges in a :class:`KeyValueStore`.

    ``origin`` is this site's origin (normalised); ``ttl`` is how long a challenge may
    be answered, in seconds (default 120, at most 1800); ``binding_key`` (at least 16
    bytes, secret) keys the HMAC that binds a challenge to a session; ``clock`` returns an
    aware datetime and is injected by tests.
    """

    def __init__(
        self,
        store: KeyValueStore,
        *,
        origin: str,
        ttl: float = DEFAULT_TTL,
        binding_key: bytes,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        try:
            self.origin = normalise_origin(origin)
        except MalformedRequest as exc:
            raise ConfigurationError(f"invalid site origin: {exc.detail}") from exc
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise ConfigurationError("challenge ttl must be a number of seconds")
        if not 0 < ttl <= MAX_TTL:
            raise ConfigurationError(f"challenge ttl must be in (0, {MAX_TTL:g}] seconds")
        if not isinstance(binding_key, bytes) or len(binding_key) < 16:
            raise ConfigurationError("binding_key must be at least 16 secret bytes")
        self.store = store
        self.ttl = float(ttl)
        self._binding_key = binding_key
        self._clock = clock or _utcnow

    def __repr__(self) -> str:
        # Never show the binding key.
        return f"ChallengeService(origin={self.origin!r}, ttl={self.ttl:g})"

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigurationError("the challenge clock must return an aware datetime")
        return now.astimezone(UTC)

    def _binding(self, session_id: str) -> str:
        return hmac.new(
            self._binding_key, _BINDING_CONTEXT + session_id.encode("utf-8"), hashlib.sha256
        ).hexdigest()

    def issue(self, *, session_id: str) -> Challenge:
        """Create a challenge for the session ``session_id`` and store it.

        The record is kept for ``ttl`` + 300 s so a late answer is reported as expired.
        Raises :class:`MalformedRequest` without a session id (the caller must save the
        session first) and :class:`StoreUnavailable` if the store cannot be written.
        """
        if not isinstance(session_id, str) or not session_id:
            raise MalformedRequest("a session id is required to issue a challenge")
        issued_at = self._now().replace(microsecond=0)
        expires_at = issued_at + timedelta(seconds=self.ttl)
        binding = self._binding(session_id)
        keep = self.ttl + RETENTION
        # 256 random bits never collide in practice; ``add`` makes sure a collision
        # could not overwrite a live challenge anyway.
        for _ in range(3):
            nonce = _b64url(secrets.token_bytes(NONCE_BYTES))
            tbs = f"{TBS_VERSION} origin={self.origin} nonce={nonce} iat={_format_iat(issued_at)}"
            record = json.dumps(
                {
                    "v": 1,
                    "origin": self.origin,
                    "iat": issued_at.isoformat(),
                    "exp": expires_at.isoformat(),
                    "tbs": tbs,
                    "binding": binding,
                },
                separators=(",", ":"),
                sort_keys=True,
            ).encode("ascii")
            # Both keys in one step (one round trip on Redis). The issued marker first:
            # with a store that writes them one by one, a record must never exist
            # without it, or its replay would be reported as unknown instead of reused.
            items = {_ISSUED_KEY + nonce: b"1", _RECORD_KEY + nonce: record}
            if not add_many(self.store, items, ttl=keep):
                continue
            return Challenge(
                nonce=nonce,
                origin=self.origin,
                issued_at=issued_at,
                expires_at=expires_at,
                tbs=tbs,
                session_binding=binding,
            )
        raise StoreUnavailable("could not store a fresh challenge")

    def consume(self, *, nonce: str, session_id: str, origin: str | None = None) -> Challenge:
        """Take the challenge ``nonce`` out of the store and check it belongs here.

        Checks, in order (each raises the named error):

        1. ``nonce`` is a canonical 43-character base64url string (``malformed_request``);
           ``origin``, when given, is a valid origin (``malformed_request``);
        2. the record is taken atomically; if it is absent, a nonce that was issued and
           already taken is ``challenge_reused``, any other ``challenge_unknown``;
        3. the session binding matches (``session_mismatch``);
        4. the challenge was issued for this site, and for ``origin`` when the caller
           passes the request's origin (``origin_mismatch``);
        5. the clock is before ``expires_at`` (``challenge_expired``).

        The take happens before checks 3–5, so a failed check burns the challenge too:
        the store fails closed, an attacker who learns a nonce cannot probe it
        (each try would destroy it) and the legitimate browser simply asks for a new one.
        """
        _decode_nonce(nonce)
        if not isinstance(session_id, str):
            raise MalformedRequest("session id must be a string")
        expected_origin = None if origin is None else normalise_origin(origin)

        raw = self.store.take(_RECORD_KEY + nonce)
        if raw is None:
            if self.store.get(_ISSUED_KEY + nonce) is not None:
                raise ChallengeReused("challenge already consumed")
            raise ChallengeUnknown("no such challenge")
        challenge = self._load(nonce, raw)

        if not hmac.compare_digest(challenge.session_binding, self._binding(session_id)):
            raise SessionMismatch("challenge was issued to another session")
        if challenge.origin != self.origin:
            raise OriginMismatch("challenge was issued for another site")
        if expected_origin is not None and expected_origin != challenge.origin:
            raise OriginMismatch("request origin differs from the challenge origin")
        if self._now() >= challenge.expires_at:
            raise ChallengeExpired("challenge expired", expired_at=challenge.expires_at)
        return challenge

    def _load(self, nonce: str, raw: bytes) -> Challenge:
        try:
            data: Any = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != 1:
                raise ValueError("unknown record version")
            issued_at = datetime.fromisoformat(data["iat"])
            expires_at = datetime.fromisoformat(data["exp"])
            tbs, origin, binding = data["tbs"], data["origin"], data["binding"]
            if not all(isinstance(v, str) for v in (tbs, origin, binding)):
                raise ValueError("bad field types")
            if issued_at.tzinfo is None or expires_at.tzinfo is None:
                raise ValueError("naive timestamps")
            if parse_tbs(tbs)["nonce"] != nonce:
                raise ValueError("tbs names another nonce")
        except (ValueError, KeyError, TypeError, MalformedRequest) as exc:
            # A record this code did not write: refuse it rather than guess.
            raise ChallengeUnknown("unreadable challenge record") from exc
        return Challenge(
            nonce=nonce,
            origin=origin,
            issued_at=issued_at,
            expires_at=expires_at,
            tbs=tbs,
            session_binding=binding,
        )
