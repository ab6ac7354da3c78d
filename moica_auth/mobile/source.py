"""The mobile credential source: a MOICA login signed in the citizen's phone.

:meth:`MobileCredentialSource.start` issues the same ``moica-auth/1 origin=… nonce=…
iat=…`` challenge as the card login (:class:`~moica_auth.challenge.ChallengeService`:
single use, TTL, bound to session and origin) and asks MOI to have the phone **sign it**
(``op_code`` SIGN, PKCS#1 or PKCS#7, SHA-256), by push (ATH-03) or by a ticket for a QR
code or app link (ATH-01). ``ATH`` (authenticate only) is never used: it returns nothing
a relying party can verify.

:meth:`MobileCredentialSource.poll` asks MOI for the result at most once per
``poll_interval`` per transaction across all workers (an ``add``-lock in the shared
store), and on a result:

1. the client has verified ``idp_checksum`` (the answer is MOI's, for this transaction);
2. the transaction record is taken atomically (a result is used once);
3. ``hashed_id_num`` equals the ticket's (the phone answered for the number we asked);
4. the challenge is consumed (session, origin, expiry: the card login's rules);
5. :meth:`verify_mobile_signature`: the certificate is a *mobile* citizen certificate,
   then :class:`~moica_auth.verifier.LoginVerifier` checks the signature over exactly the
   challenge text, the chain and revocation, as for a card;
6. the certificate's ID last-4 matches the typed ID number.

The result is a :class:`MobileCredential` (channel ``mobile-sp-api``, form ``mobile``).

WEB-01 (redirect mode) has three steps, because MOI's page hands the result back by a
cross-site form POST that carries no cookie of ours (``SameSite=Lax``) and no CSRF token:

* :meth:`MobileCredentialSource.start_web` issues the challenge and returns the form the
  browser POSTs to ``{web_url}/fidoRedirect/web`` (the challenge is ``sign_data``);
* :meth:`MobileCredentialSource.web_callback` (the registered callback, no session)
  verifies ``idp_checksum`` for the transaction MOI names, takes that transaction's
  callback slot (single use) and parks the authenticated answer for at most
  :data:`WEB_ANSWER_TTL` seconds;
* :meth:`MobileCredentialSource.finish_web` (a same-site GET the callback redirects to,
  which carries the session cookie) checks the session binding first, then takes the
  answer and runs steps 2–6 above, the very code the polled flow runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from moica_auth.certificate import CitizenCertificate, load_certificate
from moica_auth.challenge import RETENTION, Challenge, ChallengeService
from moica_auth.exceptions import (
    MalformedRequest,
    MalformedSignature,
    MoicaAuthError,
    SessionMismatch,
)
from moica_auth.identity.id_number import IdNumber, check_last4, parse_id_number
from moica_auth.mobile.client import (
    Pending,
    SignInfo,
    SignResult,
    SpApiClient,
    Ticket,
    decode_ticket,
)
from moica_auth.mobile.errors import (
    MobileCertificateRequired,
    MobileNoDevice,
    MobileNoSigningCertificate,
    MobileRequestRejected,
    MobileResultMismatch,
    MobileTicketExpired,
    MobileTransactionUnknown,
)
from moica_auth.mobile.limits import MobileLimiter
from moica_auth.mobile.settings import MODES, WEB_MODE
from moica_auth.stores import KeyValueStore
from moica_auth.verifier import LoginVerifier, VerifiedLogin

__all__ = [
    "CHANNEL",
    "FORM",
    "MobileCredential",
    "MobileCredentialSource",
    "MobilePending",
    "MobileStart",
    "MobileWebStart",
]

CHANNEL = "mobile-sp-api"
FORM = "mobile"
_RECORD = "mobile:tx:"
_LOCK = "mobile:poll:"
#: WEB-01: MOI's transaction_id (hashed) → our handle, until the callback comes (once).
_WEB = "mobile:web:"
#: WEB-01: the authenticated callback answer, until the session's finish step takes it.
_ANSWER = "mobile:web-answer:"
#: Seconds between the callback and the browser's finish step (one redirect apart).
WEB_ANSWER_TTL = 120
_BINDING_CONTEXT = b"moica-auth/1 mobile session\x00"
_SEAL_CONTEXT = b"moica-auth/1 mobile record key\x00"
_SIGNATURE_TYPES = {"PKCS#1": "PKCS1", "PKCS#7": "PKCS7"}


@dataclass(frozen=True)
class MobileStart:
    """What the browser needs: an opaque ``transaction`` handle (never MOI's ids),
    ``expires_at``, and for a ticket the ``sp_ticket`` (QR content) and ``app_link``."""

    transaction: str
    mode: str
    expires_at: datetime
    sp_ticket: str | None = None
    app_link: str | None = None


@dataclass(frozen=True)
class MobileWebStart:
    """WEB-01: the browser form-POSTs ``fields`` to ``url`` (MOI's page); ``transaction``
    is our opaque handle, kept in the session for the finish step."""

    transaction: str
    expires_at: datetime
    url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class MobilePending:
    """Not answered yet; ask again after ``retry_after`` seconds."""

    retry_after: float


@dataclass(frozen=True)
class MobileCredential:
    """A verified mobile login: the same :class:`VerifiedLogin` a card login yields."""

    verified: VerifiedLogin
    challenge: Challenge
    id_number: IdNumber = field(repr=False)
    #: The phone's signature as MOI returned it (kept in the login's audit row).
    signed_response: str = field(default="", repr=False)
    channel: str = CHANNEL
    form: str = FORM

    @property
    def citizen(self) -> CitizenCertificate:
        return self.verified.citizen


class MobileCredentialSource:
    """Start and finish mobile logins for one site.

    ``challenges`` should have a TTL of at least the MOI ``time_limit`` (the citizen
    has that long to answer); ``hash_key`` (≥ 16 secret bytes) keys the session binding
    and the push counters.
    """

    def __init__(
        self,
        *,
        client: SpApiClient,
        challenges: ChallengeService,
        verifier: LoginVerifier,
        store: KeyValueStore,
        hash_key: bytes,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(hash_key, bytes) or len(hash_key) < 16:
            raise ValueError("hash_key must be at least 16 secret bytes")
        self.client = client
        self.settings = client.settings
        self.challenges = challenges
        self.verifier = verifier
        self.store = store
        self._hash_key = hash_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self.limiter = MobileLimiter(
            store=store,
            limits=self.settings.push_limits,
            hash_key=hash_key,
            max_pending=self.settings.max_pending_per_session,
            pending_window=self.settings.time_limit,
        )

    def _binding(self, session_id: str) -> str:
        return hmac.new(
            self._hash_key, _BINDING_CONTEXT + session_id.encode("utf-8"), hashlib.sha256
        ).hexdigest()

    # The typed ID number must reach the personal-data verifiers after the phone
    # answers, but the shared store must not hold it in the clear: it is sealed with
    # AES-GCM under a key derived from hash_key.
    def _aead(self) -> AESGCM:
        return AESGCM(hashlib.sha256(_SEAL_CONTEXT + self._hash_key).digest())

    def _seal(self, text: str) -> str:
        nonce = secrets.token_bytes(12)
        return (nonce + self._aead().encrypt(nonce, text.encode("ascii"), None)).hex()

    def _open(self, sealed: str) -> str:
        try:
            raw = bytes.fromhex(sealed)
            return self._aead().decrypt(raw[:12], raw[12:], None).decode("ascii")
        except (ValueError, InvalidTag) as exc:
            raise MobileTransactionUnknown("unreadable transaction record") from exc

    # ------------------------------------------------------------------ start
    def start(
        self, *, session_id: str, id_number: str, mode: str, client_ip: str | None = None
    ) -> MobileStart:
        """Issue a challenge and have MOI ask the phone to sign it.

        Raises ``IdNumberInvalid``, :class:`MobileRequestRejected` (mode not enabled),
        the limits' 429s, the LF-01 refusals when ``check_device`` is on, and any
        :mod:`~moica_auth.mobile.errors` refusal of the API.
        """
        number = self.admit(
            session_id=session_id, id_number=id_number, mode=mode, client_ip=client_ip
        )
        challenge = self.challenges.issue(session_id=session_id)
        return self.dispatch(
            prefix=_RECORD,
            session_id=session_id,
            number=number,
            mode=mode,
            sign_data=[challenge.tbs],
            expires_at=challenge.expires_at,
            extra={"nonce": challenge.nonce},
        )

    def admit(
        self, *, session_id: str, id_number: str, mode: str, client_ip: str | None
    ) -> IdNumber:
        """The checks before anything is sent to a phone (login and signing alike): the
        mode is enabled, the ID number is well formed, the push abuse limits
        (:class:`~moica_auth.mobile.limits.MobileLimiter`), and LF-01 when
        ``check_device`` is on. Returns the parsed ID number."""
        if not isinstance(session_id, str) or not session_id:
            raise MalformedRequest("a session id is required")
        if mode not in self.settings.modes or mode not in MODES:
            raise MobileRequestRejected(f"mode {mode!r} is not enabled")
        number = parse_id_number(id_number)
        self.limiter.start(
            id_number=number,
            ip=client_ip,
            session_binding=self._binding(session_id),
            push=mode == "push",
        )
        if self.settings.check_device:
            status = self.client.device_status(id_num=number.value)
            if not status.has_device:
                raise MobileNoDevice("LF-01: no bound phone")
            if not status.can_sign:
                raise MobileNoSigningCertificate("LF-01: no mobile signing certificate")
        return number

    def dispatch(
        self,
        *,
        prefix: str,
        session_id: str,
        number: IdNumber,
        mode: str,
        sign_data: list[str],
        expires_at: datetime,
        extra: dict[str, str],
        hint: str | None = None,
    ) -> MobileStart:
        """Ask MOI to have the phone sign ``sign_data`` (one text: SIGN by push or
        ticket; several: BATSIGN, ATH-04, by ticket) after :meth:`admit`, and keep the
        transaction record under ``prefix`` (login and signing records never mix) with
        ``extra``. The record lives until ``expires_at`` or the ticket's expiry."""
        op_mode = MODES[mode]
        sign_type = self.settings.sign_type
        if len(sign_data) == 1:
            sign_info = SignInfo(
                sign_data=sign_data[0], sign_type=sign_type, hash_algorithm="SHA256"
            )
            if op_mode is None:
                ticket = self.client.push(id_num=number.value, sign_info=sign_info, hint=hint)
            else:
                ticket = self.client.get_ticket(
                    id_num=number.value, op_mode=op_mode, sign_info=sign_info, hint=hint
                )
        else:
            # ATH-04 has no push: a batch is always a ticket (the QR code / app link).
            ticket = self.client.batch_sign(
                id_num=number.value,
                documents=sign_data,
                op_mode=op_mode or MODES["qr"] or "I-SCAN",
                hint=hint,
                sign_type=sign_type,
            )
        handle = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = min(expires_at, ticket.expires_at or expires_at)
        record = {
            **extra,
            "v": 1,
            "tid": ticket.transaction_id,
            "ticket": ticket.sp_ticket,
            "binding": self._binding(session_id),
            "last4": number.last4,
            "id": self._seal(number.value),
            "sign_type": sign_type,
            "op_code": ticket.op_code,
        }
        keep = max(1.0, (expires_at - now).total_seconds()) + RETENTION
        self.store.set(prefix + handle, json.dumps(record).encode("utf-8"), ttl=keep)
        app_link = None
        if mode in ("app2app", "mweb2app"):
            kind = "a2a" if mode == "app2app" else "w2a"
            app_link = self.client.app_link(ticket, kind=kind).url
        shows_ticket = op_mode is not None or ticket.op_code == "BATSIGN"
        return MobileStart(
            transaction=handle,
            mode=mode,
            expires_at=expires_at,
            sp_ticket=ticket.sp_ticket if shows_ticket else None,
            app_link=app_link,
        )

    # ------------------------------------------------------------------ WEB-01
    def start_web(
        self, *, session_id: str, id_number: str | None = None, client_ip: str | None = None
    ) -> MobileWebStart:
        """WEB-01: issue a challenge and return the form for MOI's page, which asks the
        citizen for the ID number and has the phone sign ``sign_data`` = the challenge.

        ``id_number`` (optional) is what the citizen typed on our page: the callback's
        ``id_num`` must then be the same number. Raises like :meth:`start` (the session
        and address limits apply; no push is sent by us, so no per-ID push limit).
        """
        if not isinstance(session_id, str) or not session_id:
            raise MalformedRequest("a session id is required")
        if WEB_MODE not in self.settings.modes:
            raise MobileRequestRejected("mode 'web' is not enabled")
        number = parse_id_number(id_number) if id_number is not None else None
        binding = self._binding(session_id)
        self.limiter.start(id_number=number, ip=client_ip, session_binding=binding, push=False)
        challenge = self.challenges.issue(session_id=session_id)
        sign_info = SignInfo(
            sign_data=challenge.tbs, sign_type=self.settings.sign_type, hash_algorithm="SHA256"
        )
        redirect = self.client.web_redirect(sign_info=sign_info)
        handle = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = min(challenge.expires_at, now + timedelta(seconds=self.settings.time_limit))
        record = {
            "v": 1,
            "mode": WEB_MODE,
            "tid": redirect.transaction_id,
            "ticket": "",
            "nonce": challenge.nonce,
            "binding": binding,
            "last4": number.last4 if number is not None else "",
            "id": self._seal(number.value) if number is not None else "",
            "sign_type": self.settings.sign_type,
            "expires": expires_at.isoformat(),
        }
        keep = max(1.0, (expires_at - now).total_seconds()) + RETENTION
        self.store.set(_RECORD + handle, json.dumps(record).encode("utf-8"), ttl=keep)
        self.store.set(_WEB + _tid_key(redirect.transaction_id), handle.encode(), ttl=keep)
        return MobileWebStart(
            transaction=handle,
            expires_at=expires_at,
            url=redirect.url,
            fields=dict(redirect.fields),
        )

    def web_callback(self, form: Mapping[str, str]) -> str:
        """The registered callback's form (from MOI's page, via the citizen's browser):
        verify ``idp_checksum`` for the transaction it names, and park the answer for
        :meth:`finish_web`. Returns our handle of the transaction.

        Single use: the transaction's callback slot is taken only once the checksum has
        verified, so a forged or garbled form cannot end a real transaction, and a
        replayed one finds no slot. An authenticated error from MOI (cancelled, expired…)
        raises its typed refusal.
        """
        tid = form.get("transaction_id")
        if not isinstance(tid, str) or not 1 <= len(tid) <= 100:
            raise MalformedRequest("the callback names no transaction")
        raw_handle = self.store.get(_WEB + _tid_key(tid))
        if raw_handle is None:
            raise MobileTransactionUnknown("no such WEB-01 transaction (or already answered)")
        handle = raw_handle.decode("ascii", "replace")
        raw = self.store.get(_RECORD + handle)
        if raw is None:
            raise MobileTransactionUnknown("no such mobile transaction")
        record = self._load(raw)
        if record["mode"] != WEB_MODE or not hmac.compare_digest(record["tid"], tid):
            raise MobileTransactionUnknown("not a WEB-01 transaction")
        answer = self.client.verify_web_callback(form, transaction_id=record["tid"])
        if self.store.take(_WEB + _tid_key(tid)) is None:
            raise MobileTransactionUnknown("WEB-01 callback already used")
        parked = {
            "signed_response": answer.signed_response or "",
            "cert": answer.cert or "",
            "id": self._seal(answer.id_num) if answer.id_num and answer.id_num.isascii() else "",
        }
        self.store.set(_ANSWER + handle, json.dumps(parked).encode("utf-8"), ttl=WEB_ANSWER_TTL)
        return handle

    def finish_web(
        self, *, transaction: str, session_id: str, at: datetime | None = None
    ) -> MobileCredential:
        """The finish step in the browser session that started the transaction: the
        session binding first (another session learns nothing and ends nothing), then the
        parked answer and the record are taken (once) and verified as a polled result."""
        key, record = self._owned_record(transaction, session_id)
        if record["mode"] != WEB_MODE:
            raise MobileTransactionUnknown("not a WEB-01 transaction")
        parked_raw = self.store.take(_ANSWER + transaction)
        if parked_raw is None:
            raise MobileTransactionUnknown("MOI has not answered this transaction")
        if self.store.take(key) is None:
            raise MobileTransactionUnknown("mobile transaction already finished")
        expires = datetime.fromisoformat(record["expires"]) if record["expires"] else None
        if expires is None or (at or self._clock()) >= expires:
            raise MobileTicketExpired("the WEB-01 transaction expired")
        try:
            parked = json.loads(parked_raw)
            signed_response, cert = str(parked["signed_response"]), str(parked["cert"])
            answered_id = self._open(str(parked["id"])) if parked["id"] else ""
        except (ValueError, KeyError, TypeError) as exc:
            raise MobileTransactionUnknown("unreadable WEB-01 answer") from exc
        # The number MOI's page was given (authenticated by idp_checksum); when the
        # citizen typed one on our page too, it must be the same.
        number = parse_id_number(answered_id)
        if record["id"] and not hmac.compare_digest(self._open(record["id"]), number.value):
            raise MobileResultMismatch("result is for another ID number than was typed")
        return self._verified_credential(
            record,
            signed_response=signed_response,
            cert=cert,
            number=number,
            session_id=session_id,
            origin=None,  # a GET navigation has no Origin; the challenge names ours
            at=at,
        )

    # ------------------------------------------------------------------ poll
    def _owned_record(
        self, transaction: str, session_id: str, *, prefix: str = _RECORD
    ) -> tuple[str, dict[str, str]]:
        """The transaction's store key (login and signing records live under their own
        ``prefix``) and record, checked against the asking session before anything else:
        another session's browser learns nothing and costs MOI nothing."""
        key = prefix + _check_handle(transaction)
        raw = self.store.get(key)
        if raw is None:
            raise MobileTransactionUnknown("no such mobile transaction")
        record = self._load(raw)
        if not hmac.compare_digest(record["binding"], self._binding(session_id)):
            raise SessionMismatch("mobile transaction belongs to another session")
        return key, record

    def _load(self, raw: bytes) -> dict[str, str]:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != 1:
                raise ValueError("unknown record")
            for k in ("tid", "ticket", "binding", "last4", "id", "sign_type"):
                if not isinstance(data[k], str):
                    raise ValueError("bad record")
            loaded = {k: v for k, v in data.items() if isinstance(v, str)}
            loaded.setdefault("mode", "ticket")
            loaded.setdefault("expires", "")
            return loaded
        except (ValueError, KeyError, TypeError) as exc:
            raise MobileTransactionUnknown("unreadable transaction record") from exc

    def open_id_number(self, record: dict[str, str]) -> IdNumber:
        """The ID number a record was started for (sealed in the shared store)."""
        return parse_id_number(self._open(record["id"]))

    def _ticket(self, record: dict[str, str]) -> Ticket:
        claims = decode_ticket(record["ticket"])
        return Ticket(
            transaction_id=record["tid"],
            sp_ticket=record["ticket"],
            sp_ticket_id=str(claims.get("sp_ticket_id", "")),
            op_code=record.get("op_code", "SIGN"),
            op_mode=str(claims.get("op_mode", "")),
            sp_service_id=self.settings.service_id,
            hashed_id_num=str(claims.get("hashed_id_num", "")),
            expires_at=None,
            claims=claims,
        )

    def poll(
        self,
        *,
        transaction: str,
        session_id: str,
        origin: str | None = None,
        at: datetime | None = None,
    ) -> MobilePending | MobileCredential:
        """Pending, or the verified credential; refusals raise (and end the transaction
        when they are final)."""
        polled = self.collect(prefix=_RECORD, transaction=transaction, session_id=session_id)
        if isinstance(polled, MobilePending):
            return polled
        record, answer = polled
        return self._verified_credential(
            record,
            signed_response=answer.signed_response or "",
            cert=answer.cert or "",
            number=self.open_id_number(record),
            session_id=session_id,
            origin=origin,
            at=at,
        )

    def collect(
        self, *, prefix: str, transaction: str, session_id: str
    ) -> MobilePending | tuple[dict[str, str], SignResult]:
        """The common half of a poll (login and signing alike): the record under
        ``prefix``, its session binding (checked before any upstream call), the
        single-flight ATH-02 (at most one per ``poll_interval`` per transaction across
        workers), and on a result the record taken once and ``hashed_id_num`` matched to
        the ticket's. Returns the record and the checksum-verified result."""
        key, record = self._owned_record(transaction, session_id, prefix=prefix)
        if record["mode"] == WEB_MODE:  # answered by the callback, never by ATH-02
            raise MobileTransactionUnknown("a WEB-01 transaction is not polled")
        interval = self.settings.poll_interval
        # Single flight: whoever adds the lock polls; it expires after one interval, so
        # the upstream sees at most one ATH-02 per interval however many workers ask.
        if not self.store.add(_LOCK + transaction, b"1", ttl=interval):
            return MobilePending(retry_after=interval)
        ticket = self._ticket(record)
        try:
            answer = self.client.poll(ticket)
        except MoicaAuthError as exc:
            if getattr(exc, "http_status", 400) != 503:
                self.store.delete(key)  # final: cancelled, expired, forged…
            raise
        if isinstance(answer, Pending):
            return MobilePending(retry_after=interval)
        if self.store.take(key) is None:
            raise MobileTransactionUnknown("mobile transaction already finished")
        if ticket.hashed_id_num and not hmac.compare_digest(
            answer.hashed_id_num.encode(), ticket.hashed_id_num.encode()
        ):
            raise MobileResultMismatch("result is for another ID number than the ticket")
        return record, answer

    def _verified_credential(
        self,
        record: dict[str, str],
        *,
        signed_response: str,
        cert: str,
        number: IdNumber,
        session_id: str,
        origin: str | None,
        at: datetime | None,
    ) -> MobileCredential:
        """Steps 4–6 for an authenticated answer (polled or WEB-01 callback): consume
        the challenge, verify the signature over exactly it (form, chain, revocation),
        match the certificate's ID last-4 with ``number``."""
        if not signed_response or not cert:
            raise MalformedSignature("the result carries no signature or certificate")
        if "nonce" not in record:
            raise MobileTransactionUnknown("not a login transaction")
        challenge = self.challenges.consume(
            nonce=record["nonce"], session_id=session_id, origin=origin
        )
        verified = self.verify_mobile_signature(
            content=challenge.tbs_bytes(),
            signed_response=signed_response,
            cert=cert,
            sign_type=record["sign_type"],
            at=at,
        )
        check_last4(number, verified.citizen.id_last4)
        return MobileCredential(
            verified=verified,
            challenge=challenge,
            id_number=number,
            signed_response=signed_response,
        )

    def verify_mobile_signature(
        self,
        *,
        content: bytes,
        signed_response: str,
        cert: str,
        sign_type: str = "PKCS#1",
        at: datetime | None = None,
    ) -> VerifiedLogin:
        """The mobile path's signature + profile check, reusable on its own (the real
        ``openac-g3-2026`` vector goes through here).

        The form is checked first (cheap, and no revocation traffic for a card
        certificate on the wrong path); then :meth:`LoginVerifier.verify` does exactly
        what it does for a card: signature over ``content``, chain, revocation.
        """
        certificate = load_certificate(cert)
        if CitizenCertificate.from_certificate(certificate).form != FORM:
            raise MobileCertificateRequired("the signer certificate has no SDA form 'mobile'")
        signature_type = _SIGNATURE_TYPES.get(sign_type)
        if signature_type is None:
            raise MalformedSignature(f"unsupported mobile sign_type {sign_type!r}")
        verified = self.verifier.verify(
            content=content,
            signature=signed_response,
            signature_type=signature_type,
            certificate=cert,
            at=at,
        )
        if verified.citizen.form != FORM:  # a PKCS#7 could carry another signer
            raise MobileCertificateRequired("the verified signer is not a mobile certificate")
        return verified


def _check_handle(transaction: object) -> str:
    if not isinstance(transaction, str) or not 20 <= len(transaction) <= 64:
        raise MalformedRequest("transaction must be the handle start returned")
    return transaction


def _tid_key(transaction_id: str) -> str:
    """MOI's transaction_id as a store key (hashed: it is client-supplied text)."""
    return hashlib.sha256(transaction_id.encode("utf-8", "replace")).hexdigest()
