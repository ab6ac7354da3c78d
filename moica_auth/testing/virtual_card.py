"""A virtual HiPKI local component (跨平台網頁元件) backed by test-PKI cards.

.. warning:: Every card key comes from :mod:`moica_auth.testing.pki`: **public test keys**.
   The server binds to the loopback interface only; it is a test and demo tool.

:class:`VirtualCardServer` speaks the HiPKI HTTP protocol (``docs/virtual-card.md``,
``../shared/DOMAIN.md`` "HiPKI local component") on ``http://127.0.0.1:61161`` or any
port you choose:

* ``GET /popupForm``: the popup bridge page. Its inline script posts ``{"func":"getTbs"}``
  to ``window.opener``, takes the request JSON the opener sends back, runs it against
  ``/sign`` or ``/pkcs11info`` on this server, posts the JSON result to the opener (to the
  origin that sent the request, never to ``*``) and closes itself;
* ``POST /sign``: a ``MakeSignature`` request → the HiPKI ``sign`` response, signed as
  :func:`moica_auth.testing.softcard.sign_response` does (the signer behind
  :class:`~moica_auth.testing.softcard.SoftCard`): PKCS#1 v1.5 (RFC 8017 §8.2) or CMS
  SignedData (RFC 5652 §5) with signingTime, randomNonce and card-number attributes;
* ``GET|POST /pkcs11info[?withcert=true]``: the reader slot, the card and its certificates;
* ``GET /selfTest.htm``: a status page;
* ``GET /addDomain?domain=…``: asks to trust a site (``POST /addDomain`` confirms it);
* ``POST /unlock``: ``{"card", "user_code", "new_pin"}``: the online unlock with the
  用戶代碼, for demos;
* ``POST /_virtual/insert`` ``{"card"}`` and ``POST /_virtual/remove``: test controls;
* ``POST /_virtual/fault`` ``{"ret_code", "last_error", "count", "signed"}``: the next sign
  requests answer with any HiPKI code (``{"clear": true}`` forgets it), so a test can
  show what the citizen sees for each code of :mod:`moica_auth.hipki`.

Card semantics follow the real card: the PIN is 6–8 digits; three wrong PINs in a row lock
the card (``last_error`` 0x80000002, 0x80000001, then 0xA4); a correct PIN resets the count;
four wrong user codes lock the user code too. State lives in memory behind one lock.

PINs and user codes are never logged, and never echoed in a response.

What keeps other sites on the same machine's browser away from the card:

* it listens on a loopback address only (``ValueError`` otherwise);
* it answers only requests whose ``Host`` names this machine (no DNS rebinding);
* its POSTs of requests are ``application/json``, which no cross-site form can send and
  no cross-site ``fetch`` can send without a preflight, which is never granted (no CORS
  headers at all, like the real component);
* ``POST /addDomain`` (a form) is accepted only from the component's own confirmation
  page (``Origin``/``Referer``/``Sec-Fetch-Site``), and no page may be framed
  (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``), so trusting a site takes the
  user's own click in a top-level window.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import ipaddress
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from moica_auth.certificate import CitizenCertificate
from moica_auth.hipki import (
    LAST_CARD_LOCKED,
    LAST_PIN_LENGTH,
    LAST_TRIES_LEFT_1,
    LAST_TRIES_LEFT_2,
    LAST_WRONG_PIN,
    RET_CANCELLED,
    RET_CARD_LOGIN_FAILED,
    RET_CERT_EXPIRED,
    RET_CERT_NOT_YET_VALID,
    RET_JSON_ERROR,
    RET_NO_CARD,
    RET_NO_PIN,
    RET_NO_READER,
    RET_OK,
    RET_PARAMETER_ERROR,
    RET_SIGNER_TIMEOUT,
    RET_SITE_NOT_TRUSTED,
    RET_SITE_NOT_TRUSTED_INFO,
    normalise_code,
)
from moica_auth.testing.httpserver import (
    ServerWithDaemonThreads,
    StartStopContext,
    serve_in_thread,
    serve_until_interrupted,
    shut_down,
)
from moica_auth.testing.pki import CertifiedKey, CitizenCard
from moica_auth.testing.softcard import HIPKI_VERSION, hash_for, raw_sign_response, sign_response

__all__ = [
    "DEFAULT_PORT",
    "LAST_CARD_LOCKED",
    "LAST_PIN_LENGTH",
    "LAST_TRIES_LEFT_1",
    "LAST_TRIES_LEFT_2",
    "LAST_WRONG_PIN",
    "MAX_PIN_TRIES",
    "MAX_USER_CODE_TRIES",
    "RET_BAD_REQUEST",
    "RET_CANCELLED",
    "RET_CARD_LOGIN_FAILED",
    "RET_CERT_EXPIRED",
    "RET_CERT_NOT_YET_VALID",
    "RET_NO_CARD",
    "RET_NO_PIN",
    "RET_NO_READER",
    "RET_OK",
    "RET_SITE_NOT_TRUSTED",
    "RET_SITE_NOT_TRUSTED_INFO",
    "VirtualCard",
    "VirtualCardServer",
    "load_cards",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 61161
SLOT_DESCRIPTION = "moica-auth Virtual Reader 0"
MAX_PIN_TRIES = 3
MAX_USER_CODE_TRIES = 4
_MAX_BODY = 1 << 20

# The codes the virtual card answers with; moica_auth.hipki owns their names and messages.
#: The virtual card's answer to a request it cannot parse: the component's parameter error.
RET_BAD_REQUEST = RET_PARAMETER_ERROR

_PIN_RE = re.compile(r"[0-9]{6,8}")
_DOMAIN_RE = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\]")


@dataclass(frozen=True)
class VirtualCard:
    """One citizen card in the virtual reader (test data only).

    ``signing`` holds the signing key and certificate; ``encryption_certificate`` is listed
    by ``pkcs11info`` but never signs (a real card cannot log in with it either).
    ``pin`` and ``user_code`` are the card's *initial* secrets; the server keeps the
    current ones (an unlock sets a new PIN).
    """

    card_id: str
    signing: CertifiedKey
    encryption_certificate: x509.Certificate
    card_number: str
    pin: str = "123456"
    user_code: str = "12345678"
    chain: tuple[x509.Certificate, ...] = ()

    def __repr__(self) -> str:  # never show the secrets
        return f"VirtualCard(card_id={self.card_id!r}, card_number={self.card_number!r})"

    @classmethod
    def from_citizen_card(cls, card: CitizenCard, *, card_id: str | None = None) -> VirtualCard:
        """The virtual card for a :class:`~moica_auth.testing.pki.CitizenCard`."""
        return cls(
            card_id=card_id or card.card_number,
            signing=card.signing,
            encryption_certificate=card.encryption.certificate,
            card_number=card.card_number,
            pin=card.pin,
            user_code=card.user_code,
            chain=card.chain,
        )

    @classmethod
    def from_pkcs12(
        cls,
        data: bytes,
        password: bytes | None,
        *,
        card_id: str,
        pin: str,
        user_code: str,
        card_number: str | None = None,
    ) -> VirtualCard:
        """Load a card written by ``CitizenCard.to_pkcs12`` (RFC 7292).

        The key bag is the signing key (friendly name ``"<card number> signing"``, which
        gives ``card_number`` when it is not passed); the additional certificate named
        ``encryption`` is the encryption certificate; the others (``ca``) are the chain.
        """
        p12 = pkcs12.load_pkcs12(data, password or None)
        if p12.key is None or p12.cert is None or not isinstance(p12.key, rsa.RSAPrivateKey):
            raise ValueError("the PKCS#12 file holds no RSA signing key and certificate")
        if card_number is None:
            name = (p12.cert.friendly_name or b"").decode("utf-8", "replace")
            if not name.endswith(" signing"):
                raise ValueError("the PKCS#12 file does not name the card number")
            card_number = name.split(" ", 1)[0]
        encryption: x509.Certificate | None = None
        chain: list[x509.Certificate] = []
        for extra in p12.additional_certs:
            if extra.friendly_name == b"encryption" and encryption is None:
                encryption = extra.certificate
            else:
                chain.append(extra.certificate)
        if encryption is None:
            raise ValueError("the PKCS#12 file holds no encryption certificate")
        return cls(
            card_id=card_id,
            signing=CertifiedKey(p12.cert.certificate, p12.key),
            encryption_certificate=encryption,
            card_number=card_number,
            pin=pin,
            user_code=user_code,
            chain=tuple(chain),
        )


@dataclass
class _CardState:
    pin: str
    user_code: str
    pin_failures: int = 0
    user_code_failures: int = 0

    @property
    def locked(self) -> bool:
        return self.pin_failures >= MAX_PIN_TRIES

    @property
    def user_code_locked(self) -> bool:
        return self.user_code_failures >= MAX_USER_CODE_TRIES


@dataclass
class _Fault:
    ret_code: int
    last_error: int
    remaining: int


def _as_signed(code: int) -> int:
    return code - (1 << 32) if code & 0x80000000 else code


def _answer(func: str, ret_code: int, last_error: int = 0, message: str = "") -> dict[str, Any]:
    return {
        "func": func,
        "ret_code": ret_code,
        "last_error": last_error,
        "message": message,
        "version": HIPKI_VERSION,
    }


def _decode_nonce(value: str) -> bytes:
    """The bytes the randomNonce attribute carries for a request ``nonce``.

    The request carries the nonce as text: base64 or base64url (with or without padding)
    is decoded, as the challenge nonces of ``docs/protocol.md`` are; anything else is
    taken as its UTF-8 bytes.
    """
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    alphabet = "-_" if ("-" in text or "_" in text) else "+/"
    try:
        return base64.b64decode(padded, altchars=alphabet.encode(), validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8")


def _hostname(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _normalise_domain(value: str) -> str | None:
    text = value.strip().lower().rstrip(".")
    if "://" in text:
        host = _hostname(text)
        if host is None:
            return None
        text = host
    return text if _DOMAIN_RE.fullmatch(text) else None


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.strip().lower().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class VirtualCardServer(StartStopContext):
    """A local HiPKI-compatible server with a virtual reader holding one of ``cards``.

    ``port=0`` picks a free port (read :attr:`port` / :attr:`url` after :meth:`start`).
    ``clock`` gives the signingTime and the time the signing certificate's validity is
    checked at (default: now; tests pin it). With ``require_trusted_domains`` a request
    from a site not added with ``/addDomain`` (or :meth:`trust_domain`) is refused with
    ``ret_code`` 0x7600000F (sign) / 0x76000031 (pkcs11info). ``confirm_add_domain=False``
    makes ``GET /addDomain`` trust the domain at once instead of asking.
    """

    def __init__(
        self,
        cards: Sequence[VirtualCard],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        clock: Callable[[], datetime] | None = None,
        require_trusted_domains: bool = False,
        trusted_domains: Iterable[str] = (),
        confirm_add_domain: bool = True,
    ) -> None:
        ids = [c.card_id for c in cards]
        if len(set(ids)) != len(ids):
            raise ValueError("card ids must be unique")
        if not _is_loopback(host):
            # Public test keys and a PIN oracle: never on a network interface.
            raise ValueError(
                f"the virtual card listens on the loopback interface only, not {host!r}"
            )
        self.cards: dict[str, VirtualCard] = {c.card_id: c for c in cards}
        self.host = host
        self._requested_port = port
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.require_trusted_domains = require_trusted_domains
        self.confirm_add_domain = confirm_add_domain
        self._lock = threading.Lock()
        self._state = {c.card_id: _CardState(pin=c.pin, user_code=c.user_code) for c in cards}
        self._inserted: str | None = None
        self._reader_connected = True
        self._trusted: set[str] = set()
        self._fault: _Fault | None = None
        for domain in trusted_domains:
            self.trust_domain(domain)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> VirtualCardServer:
        """Start serving in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the virtual card server is already running")
        httpd = _Server((self.host, self._requested_port), _Handler)
        httpd.virtual_card = self  # type: ignore[attr-defined]
        self._httpd = httpd
        # A short poll interval keeps stop() quick (shutdown waits for one poll).
        self._thread = serve_in_thread(httpd, name="moica-virtual-card", poll_interval=0.05)
        logger.info("virtual HiPKI component listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is None:
            return
        shut_down(self._httpd, self._thread)
        self._httpd = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The component base URL (``http://host:port``), what pages use as componentUrl."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ the reader
    def insert(self, card_id: str) -> None:
        """Put card ``card_id`` in the reader (replacing any card there)."""
        if card_id not in self.cards:
            raise KeyError(f"no virtual card {card_id!r}")
        with self._lock:
            self._inserted = card_id

    def remove(self) -> None:
        """Take the card out of the reader."""
        with self._lock:
            self._inserted = None

    @property
    def inserted(self) -> str | None:
        """The id of the card in the reader, or ``None``."""
        with self._lock:
            return self._inserted

    @property
    def reader_connected(self) -> bool:
        with self._lock:
            return self._reader_connected

    @reader_connected.setter
    def reader_connected(self, value: bool) -> None:
        # Unplugging the reader answers ret_code 0x76100003 (no reader).
        with self._lock:
            self._reader_connected = bool(value)

    def trust_domain(self, domain: str) -> None:
        """Trust a site, as the user does through ``/addDomain``."""
        name = _normalise_domain(domain)
        if name is None:
            raise ValueError("not a host name")
        with self._lock:
            self._trusted.add(name)

    @property
    def trusted_domains(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._trusted)

    def inject_fault(
        self, ret_code: int, last_error: int = 0, *, count: int = 1, signed: bool = False
    ) -> None:
        """Answer the next ``count`` sign requests with this failure (e.g. 0x76000999,
        the user cancelled), before any PIN check, so the PIN counter is untouched.

        Any 32-bit code is accepted, known to :mod:`moica_auth.hipki` or not, so a test
        can show what the citizen sees for it. ``signed`` sends the codes as negative
        ints, as some component builds do (0x80000002 as −2147483646).
        ``ret_code`` 0 (success without a signature) and ``count`` outside 1–1000 raise
        ``ValueError``.
        """
        ret = normalise_code(ret_code)
        last = normalise_code(last_error)
        if not ret or last is None:
            raise ValueError("ret_code must be a nonzero 32-bit code, last_error a 32-bit code")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ValueError("count must be 1 to 1000")
        if signed:
            ret, last = _as_signed(ret), _as_signed(last)
        with self._lock:
            self._fault = _Fault(ret, last, count)

    def clear_fault(self) -> None:
        """Forget an injected fault that has not been used up."""
        with self._lock:
            self._fault = None

    def pin_tries_left(self, card_id: str) -> int:
        with self._lock:
            return max(0, MAX_PIN_TRIES - self._state[card_id].pin_failures)

    def is_locked(self, card_id: str) -> bool:
        with self._lock:
            return self._state[card_id].locked

    # ------------------------------------------------------------------ operations
    def unlock(self, card_id: str, user_code: str, new_pin: str) -> dict[str, Any]:
        """Unlock a card with its 用戶代碼 and set ``new_pin``; the JSON of ``/unlock``.

        ``ret_code`` 0 on success. A wrong user code answers 0x76100006 with
        ``last_error`` 0xA0 and ``tries_left``; the fourth wrong one (and every later
        attempt) answers 0xA4: the user code is locked. A new PIN that is not 6–8 digits
        answers 0xA2 and changes nothing.
        """
        func = "unlock"
        if card_id not in self.cards:
            return _answer(func, RET_NO_CARD, 0, "no such card")
        if not isinstance(new_pin, str) or not _PIN_RE.fullmatch(new_pin):
            return _answer(func, RET_CARD_LOGIN_FAILED, LAST_PIN_LENGTH, "PIN must be 6-8 digits")
        with self._lock:
            state = self._state[card_id]
            if state.user_code_locked:
                return _answer(func, RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED, "user code locked")
            if not isinstance(user_code, str) or user_code != state.user_code:
                state.user_code_failures += 1
                left = MAX_USER_CODE_TRIES - state.user_code_failures
                if left <= 0:
                    return _answer(
                        func, RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED, "user code locked"
                    )
                out = _answer(func, RET_CARD_LOGIN_FAILED, LAST_WRONG_PIN, "wrong user code")
                out["tries_left"] = left
                return out
            state.user_code_failures = 0
            state.pin_failures = 0
            state.pin = new_pin
        logger.info("virtual card %s unlocked", card_id)
        return _answer(func, RET_OK)

    def pkcs11info(self, *, with_cert: bool, domain: str | None = None) -> dict[str, Any]:
        """The ``pkcs11info`` answer: one slot, its token (card) and, with ``with_cert``,
        the signing (usage ``digitalSignature``) and encryption (``keyEncipherment``)
        certificates."""
        if not self._domain_allowed(domain):
            return _answer("pkcs11info", RET_SITE_NOT_TRUSTED_INFO, 0, "site not trusted")
        with self._lock:
            connected, card_id = self._reader_connected, self._inserted
        out: dict[str, Any] = {
            "func": "pkcs11info",
            "ret_code": RET_OK,
            "last_error": 0,
            "serverVersion": HIPKI_VERSION,
            "slots": [],
        }
        if not connected:
            return out
        token: dict[str, Any] | None = None
        if card_id is not None:
            card = self.cards[card_id]
            token = {"serialNumber": card.card_number}
            if with_cert:
                token["certs"] = [
                    _cert_info(card.signing.certificate, "digitalSignature", "signing"),
                    _cert_info(card.encryption_certificate, "keyEncipherment", "encryption"),
                ]
        out["slots"].append({"slotDescription": SLOT_DESCRIPTION, "token": token})
        return out

    def sign(self, request: dict[str, Any], *, domain: str | None = None) -> dict[str, Any]:
        """Answer a ``MakeSignature`` request as the component does (``func: "sign"``).

        Order of checks: trusted site, reader, card, injected fault, request shape, PIN
        presence and length, card lock, PIN, certificate validity; then the signature.
        """
        func = "sign"
        if not self._domain_allowed(domain):
            return _answer(func, RET_SITE_NOT_TRUSTED, 0, "site not trusted")
        with self._lock:
            connected, card_id = self._reader_connected, self._inserted
            fault = self._fault
            if fault is not None and card_id is not None and connected:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
        if not connected:
            return _answer(func, RET_NO_READER, 0, "no card reader")
        if card_id is None:
            return _answer(func, RET_NO_CARD, 0, "no card")
        if fault is not None:
            return _answer(func, fault.ret_code, fault.last_error, "injected fault")
        card = self.cards[card_id]

        try:
            parsed = _parse_sign_request(request)
        except ValueError as exc:
            return _answer(func, RET_BAD_REQUEST, 0, str(exc))
        if parsed.slot is not None and parsed.slot != SLOT_DESCRIPTION:
            return _answer(func, RET_NO_CARD, 0, "no card in that slot")

        pin = request.get("pin")
        if pin is None or pin == "":
            return _answer(func, RET_NO_PIN, 0, "no PIN")
        if not isinstance(pin, str) or not _PIN_RE.fullmatch(pin):
            # The component checks the length before it talks to the card, so this
            # does not count as a wrong PIN.
            return _answer(func, RET_CARD_LOGIN_FAILED, LAST_PIN_LENGTH, "PIN length")
        with self._lock:
            state = self._state[card_id]
            if state.locked:
                return _answer(func, RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED, "card locked")
            if pin != state.pin:
                state.pin_failures += 1
                left = MAX_PIN_TRIES - state.pin_failures
                last = {2: LAST_TRIES_LEFT_2, 1: LAST_TRIES_LEFT_1}.get(left, LAST_CARD_LOCKED)
                return _answer(func, RET_CARD_LOGIN_FAILED, last, "wrong PIN")
            state.pin_failures = 0

        now = self.clock()
        cert = card.signing.certificate
        if now < cert.not_valid_before_utc:
            return _answer(func, RET_CERT_NOT_YET_VALID, 0, "certificate not yet valid")
        if now > cert.not_valid_after_utc:
            return _answer(func, RET_CERT_EXPIRED, 0, "certificate expired")
        if parsed.signature_type == "RAW":
            # RAW: the tbs is a DigestInfo the card pads and signs (signing-phase 2).
            try:
                return raw_sign_response(
                    parsed.tbs,
                    private_key=card.signing.private_key,
                    certificate=cert,
                    card_number=card.card_number if parsed.with_card_sn else None,
                )
            except ValueError as exc:
                return _answer(func, RET_BAD_REQUEST, 0, str(exc))
        response = sign_response(
            parsed.tbs,
            private_key=card.signing.private_key,
            certificate=cert,
            card_number=card.card_number if parsed.with_card_sn else None,
            signing_time=now,
            signature_type=parsed.signature_type,
            hash_algorithm=parsed.hash_algorithm,
            nonce=parsed.nonce,
        )
        logger.info("virtual card %s signed (%s)", card_id, parsed.signature_type)
        return response

    def _domain_allowed(self, domain: str | None) -> bool:
        if not self.require_trusted_domains:
            return True
        if domain is None:
            return False
        with self._lock:
            return domain in self._trusted


@dataclass(frozen=True)
class _SignRequest:
    tbs: bytes
    signature_type: str
    hash_algorithm: str
    nonce: bytes | None
    with_card_sn: bool
    slot: str | None = field(default=None)


def _parse_sign_request(request: dict[str, Any]) -> _SignRequest:
    if request.get("func") != "MakeSignature":
        raise ValueError("func must be MakeSignature")
    tbs = request.get("tbs")
    if not isinstance(tbs, str) or tbs == "":
        raise ValueError("tbs is required")
    encoding = str(request.get("tbsEncoding") or "NONE").upper()
    if encoding == "NONE":
        tbs_bytes = tbs.encode("utf-8")
    elif encoding == "BASE64":
        try:
            tbs_bytes = base64.b64decode(tbs, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("tbs is not base64") from exc
    else:
        raise ValueError("tbsEncoding must be NONE or base64")
    signature_type = str(request.get("signatureType") or "PKCS7").upper()
    if signature_type not in ("PKCS7", "PKCS1", "RAW"):
        raise ValueError("signatureType must be PKCS7, PKCS1 or RAW")
    hash_algorithm = str(request.get("hashAlgorithm") or "SHA256")
    hash_for(hash_algorithm)  # raises ValueError for an unknown name
    nonce_value = request.get("nonce")
    if nonce_value is not None and not isinstance(nonce_value, str):
        raise ValueError("nonce must be a string")
    slot = request.get("slotDescription")
    return _SignRequest(
        tbs=tbs_bytes,
        signature_type=signature_type,
        hash_algorithm=hash_algorithm,
        nonce=_decode_nonce(nonce_value) if nonce_value else None,
        with_card_sn=_is_true(request.get("withCardSN")),
        slot=slot if isinstance(slot, str) and slot else None,
    )


def _cert_info(cert: x509.Certificate, usage: str, label: str) -> dict[str, str]:
    # subjectID: the ID number's last four (SubjectDirectoryAttributes 2.16.886.1.100.2.51),
    # the only part of the ID number a citizen certificate carries.
    try:
        subject_id = CitizenCertificate.from_certificate(cert).id_last4 or ""
    except Exception:  # a broken test certificate still lists
        subject_id = ""
    return {
        "label": label,
        "usage": usage,
        "certb64": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        "sn": f"{cert.serial_number:X}",
        "subjectDN": cert.subject.rfc4514_string(),
        "issuerDN": cert.issuer.rfc4514_string(),
        "subjectID": subject_id,
    }


# --------------------------------------------------------------------------- HTTP

_POPUP_HTML = """<!DOCTYPE html>
<html lang="zh-Hant"><head><meta charset="utf-8">
<title>HiPKI (virtual card)</title></head>
<body>
<p id="status">虛擬讀卡機處理中… / Virtual card reader working…</p>
<script>
(function () {
  "use strict";
  var status = document.getElementById("status");
  var opener = window.opener;
  var answered = false;
  if (!opener) {
    status.textContent = "No opener window: open this page from a site.";
    return;
  }
  function reply(origin, result) {
    // Only to the origin that sent the request (MessageEvent.origin, which the browser
    // sets and the page cannot forge), never "*": if the opener has navigated elsewhere
    // since, the browser drops the answer. Not document.referrer (a Referrer-Policy may
    // strip it) and not opener.location (unreadable across origins). The real component
    // is believed to answer to "*"; the client accepts either, since it checks the
    // message's origin and source itself.
    try {
      opener.postMessage(JSON.stringify(result), origin);
    } catch (e) {
      // an opaque ("null") origin cannot be addressed: nobody gets the answer
    }
    window.close();
  }
  window.addEventListener("message", function (event) {
    if (event.source !== opener || answered) { return; }
    answered = true;
    var request;
    try {
      request = typeof event.data === "string" ? JSON.parse(event.data) : event.data;
    } catch (e) {
      request = null;
    }
    var func = request && request.func === "pkcs11info" ? "pkcs11info" : "sign";
    if (!request || typeof request !== "object") {
      reply(event.origin, {func: func, ret_code: __RET_JSON_ERROR__, last_error: 0,
                           message: "unreadable request"});
      return;
    }
    try {
      request.domain = new URL(event.origin).hostname;
    } catch (e) {
      request.domain = "";
    }
    var path = func === "pkcs11info" ? "/pkcs11info" : "/sign";
    fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                 body: JSON.stringify(request), cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (result) { reply(event.origin, result); },
            function () { reply(event.origin, {func: func, ret_code: __RET_SIGNER_TIMEOUT__,
                                               last_error: 0, message: "component error"}); });
  });
  opener.postMessage(JSON.stringify({func: "getTbs"}), "*");
})();
</script>
</body></html>
""".replace("__RET_JSON_ERROR__", str(RET_JSON_ERROR)).replace(
    "__RET_SIGNER_TIMEOUT__", str(RET_SIGNER_TIMEOUT)
)


class _Server(ServerWithDaemonThreads):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closes the popup mid-request is normal, not worth a traceback;
        # anything else is a bug and is logged with its traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("virtual card: connection from %s ended early", client_address[0])
        else:
            logger.exception("virtual card: error while answering %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the base class default): one request per connection, so a stopped
    # server really is gone; no kept-alive connection keeps answering for it.
    server_version = "moica-auth-virtual-hipki/" + HIPKI_VERSION

    @property
    def card_server(self) -> VirtualCardServer:
        return self.server.virtual_card  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        # Paths only (the PIN travels in POST bodies, which are never logged).
        logger.debug("virtual card: " + format, *args)

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # No page of the component may be framed: a framed addDomain confirmation could
        # be clickjacked. (No CORS header either, like the real component.)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict[str, Any], status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _host_allowed(self) -> bool:
        """The ``Host`` header names this machine. Anything else is DNS rebinding: a
        site whose name now resolves to 127.0.0.1, whose pages are then same-origin with
        "the component" and could post JSON to it."""
        host = self.headers.get("Host")
        if host is None:
            return True  # an HTTP/1.0 client without Host: not a browser
        try:
            name = urlsplit("//" + host.strip()).hostname
        except ValueError:
            return False
        return name is not None and (
            _is_loopback(name) or name == self.card_server.host.strip("[]").lower()
        )

    def _refuse_foreign_host(self) -> bool:
        if self._host_allowed():
            return False
        self._json(_answer("", RET_BAD_REQUEST, 0, "unknown host"), 403)
        return True

    def _from_own_page(self) -> bool:
        """A form POST comes from one of this component's own pages (the addDomain
        confirmation), not from another site: a form on any page can POST here."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() != "same-origin":
            return False
        origin = self.headers.get("Origin")
        if origin is not None:
            return origin.strip().rstrip("/") in self._self_origins()
        referer = self.headers.get("Referer")
        if referer is not None:
            return any(referer.startswith(o + "/") for o in self._self_origins())
        return True  # no browser headers at all: a local tool (curl, tests)

    def _self_origins(self) -> set[str]:
        port = self.card_server.port
        return {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", self.card_server.host)}

    def _read_json(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length <= 0 or length > _MAX_BODY:
            return None
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _json_body_or_refuse(self, func: str) -> dict[str, Any] | None:
        # application/json is not a CORS "simple" type, so another site's page cannot
        # make a browser send these requests without a preflight this server never
        # grants: no drive-by PIN guessing that would lock the card.
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._json(_answer(func, RET_BAD_REQUEST, 0, "JSON body required"), 415)
            return None
        data = self._read_json()
        if data is None:
            self._json(_answer(func, RET_BAD_REQUEST, 0, "unreadable request"), 400)
            return None
        return data

    def _requesting_domain(self, body: dict[str, Any] | None) -> str | None:
        """The site a request is made for.

        A browser-set ``Origin`` of another site wins. A request from this server's own
        origin comes from the popup, which names the opener's host in ``domain`` (it took
        it from the ``MessageEvent.origin`` of the request, which the page cannot forge);
        otherwise the ``Referer`` host.
        """
        origin = self.headers.get("Origin")
        if origin and origin.rstrip("/") not in self._self_origins():
            return _hostname(origin)
        if body is not None and isinstance(body.get("domain"), str):
            return _normalise_domain(body["domain"])
        referer = self.headers.get("Referer")
        if referer and not any(referer.startswith(o + "/") for o in self._self_origins()):
            return _hostname(referer)
        return None

    # ---------------------------------------------------------------- verbs
    def do_GET(self) -> None:
        if self._refuse_foreign_host():
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        if path == "/popupForm":
            self._html(_POPUP_HTML)
        elif path == "/pkcs11info":
            with_cert = _is_true(query.get("withcert", [""])[0])
            self._json(
                self.card_server.pkcs11info(
                    with_cert=with_cert, domain=self._requesting_domain(None)
                )
            )
        elif path == "/selfTest.htm":
            self._html(self._self_test())
        elif path == "/addDomain":
            self._add_domain(query.get("domain", [""])[0], confirmed=False)
        else:
            self._json(_answer("", RET_BAD_REQUEST, 0, "not found"), 404)

    def do_POST(self) -> None:
        if self._refuse_foreign_host():
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/sign":
            body = self._json_body_or_refuse("sign")
            if body is not None:
                self._json(self.card_server.sign(body, domain=self._requesting_domain(body)))
        elif path == "/pkcs11info":
            body = self._json_body_or_refuse("pkcs11info")
            if body is not None:
                with_cert = _is_true(
                    body.get("withcert", parse_qs(parts.query).get("withcert", [""])[0])
                )
                domain = self._requesting_domain(body)
                self._json(self.card_server.pkcs11info(with_cert=with_cert, domain=domain))
        elif path == "/addDomain":
            if not self._from_own_page():
                self._html("<!DOCTYPE html><p>Forbidden.</p>", 403)
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                length = -1
            if not 0 < length <= 4096:
                self._html("<!DOCTYPE html><p>Bad request.</p>", 400)
                return
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            self._add_domain(form.get("domain", [""])[0], confirmed=True)
        elif path == "/unlock":
            body = self._json_body_or_refuse("unlock")
            if body is not None:
                self._json(
                    self.card_server.unlock(
                        str(body.get("card") or self.card_server.inserted or ""),
                        body.get("user_code"),  # type: ignore[arg-type]
                        body.get("new_pin"),  # type: ignore[arg-type]
                    )
                )
        elif path == "/_virtual/fault":
            self._fault_control()
        elif path in ("/_virtual/insert", "/_virtual/remove"):
            body = self._json_body_or_refuse("control")
            if body is None:
                return
            try:
                if path.endswith("insert"):
                    self.card_server.insert(str(body.get("card")))
                else:
                    self.card_server.remove()
            except KeyError:
                self._json(_answer("control", RET_NO_CARD, 0, "no such card"), 404)
                return
            self._json({**_answer("control", RET_OK), "inserted": self.card_server.inserted})
        else:
            self._json(_answer("", RET_BAD_REQUEST, 0, "not found"), 404)

    def _fault_control(self) -> None:
        """``POST /_virtual/fault`` ``{"ret_code", "last_error"?, "count"?, "signed"?}``:
        the next ``count`` sign requests answer this failure (see ``inject_fault``);
        ``{"clear": true}`` forgets it. Codes may be ints or decimal/``0x`` strings."""
        body = self._json_body_or_refuse("control")
        if body is None:
            return
        if body.get("clear") is True:
            self.card_server.clear_fault()
            self._json(_answer("control", RET_OK))
            return
        signed = body.get("signed", False)
        try:
            if not isinstance(signed, bool):
                raise ValueError("signed must be true or false")
            self.card_server.inject_fault(
                body.get("ret_code"),  # type: ignore[arg-type]
                body.get("last_error", 0),
                count=body.get("count", 1),
                signed=signed,
            )
        except ValueError as exc:
            self._json(_answer("control", RET_BAD_REQUEST, 0, str(exc)), 400)
            return
        self._json(_answer("control", RET_OK))

    def do_OPTIONS(self) -> None:
        # No CORS, like the real component: preflights are refused.
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain")

    # ---------------------------------------------------------------- pages
    def _add_domain(self, value: str, *, confirmed: bool) -> None:
        domain = _normalise_domain(value)
        if domain is None:
            self._html("<!DOCTYPE html><p>Invalid domain.</p>", 400)
            return
        safe = html.escape(domain)
        if confirmed or not self.card_server.confirm_add_domain:
            self.card_server.trust_domain(domain)
            result = json.dumps({"func": "addDomain", "ret_code": 0, "domain": domain})
            # Tell the opener (if any) so it can retry, as the real component's page does.
            self._html(
                '<!DOCTYPE html><html lang="zh-Hant"><meta charset="utf-8">'
                f'<p id="result">已加入信任網站 / Trusted: {safe}</p>'
                "<script>if (window.opener) { window.opener.postMessage("
                f"{json.dumps(result)}, '*'); }}</script>"
            )
            return
        self._html(
            '<!DOCTYPE html><html lang="zh-Hant"><meta charset="utf-8">'
            f"<p>是否信任網站 / Trust this site: <strong>{safe}</strong>?</p>"
            '<form method="post" action="/addDomain">'
            f'<input type="hidden" name="domain" value="{safe}">'
            '<button id="confirm" type="submit">加入信任網站 / Trust</button></form>'
        )

    def _self_test(self) -> str:
        card = self.card_server.inserted
        return (
            '<!DOCTYPE html><html lang="zh-Hant"><meta charset="utf-8">'
            "<title>selfTest</title>"
            f"<p>HiPKI virtual component {html.escape(HIPKI_VERSION)} (TEST KEYS ONLY)</p>"
            f'<p id="card">{html.escape(card or "no card")}</p>'
        )


# --------------------------------------------------------------------------- CLI


def load_cards(folder: Path) -> list[VirtualCard]:
    """The cards of a test PKI written by ``python -m moica_auth.testing pki --out DIR``:
    each ``manifest.json`` entry's PKCS#12, PIN and user code; the card id is the file
    stem (``g3-card``, ``g3-mobile``, ``g2-card``)."""
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    cards: list[VirtualCard] = []
    for entry in manifest["cards"]:
        path = folder / entry["file"]
        cards.append(
            VirtualCard.from_pkcs12(
                path.read_bytes(),
                str(entry.get("p12_password") or "").encode() or None,
                card_id=Path(entry["file"]).stem,
                pin=str(entry["pin"]),
                user_code=str(entry["user_code"]),
                card_number=entry.get("card_number"),
            )
        )
    return cards


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m moica_auth.testing.virtual_card --cards DIR [--port 61161] [--insert ID]``."""
    parser = argparse.ArgumentParser(
        prog="python -m moica_auth.testing.virtual_card",
        description="A virtual HiPKI local component with test cards (PUBLIC TEST KEYS).",
    )
    parser.add_argument("--cards", required=True, type=Path, help="folder written by `pki --out`")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--insert", default=None, help="card id to insert at start")
    parser.add_argument("--require-trusted-domains", action="store_true")
    parser.add_argument("--trust", action="append", default=[], help="a trusted host name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if not _is_loopback(args.host):
        parser.error(
            f"--host must be a loopback address (127.0.0.1, ::1, localhost), not {args.host!r}"
        )
    cards = load_cards(args.cards)
    server = VirtualCardServer(
        cards,
        host=args.host,
        port=args.port,
        require_trusted_domains=args.require_trusted_domains,
        trusted_domains=args.trust,
    )
    if args.insert:
        server.insert(args.insert)
    server.start()
    print(f"virtual HiPKI component on {server.url} (TEST KEYS ONLY)")
    for card in cards:
        marker = "*" if card.card_id == server.inserted else " "
        print(f" {marker} {card.card_id}  card number {card.card_number}")
    print("Ctrl-C to stop.")
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
