"""A client of MOI's SP API for the mobile citizen certificate (``/moise/sp/…``).

Six interfaces (DOMAIN.md; 行動自然人憑證應用程式介面規格書 v2.9):

========  ==========================  ==============================================
ATH-01    :meth:`SpApiClient.get_ticket`     ticket for a QR code / app link
ATH-02    :meth:`SpApiClient.poll`           the result (pending, or signature + cert)
ATH-03    :meth:`SpApiClient.push`           push the request to the citizen's phone
ATH-04    :meth:`SpApiClient.batch_sign`     1–20 documents in one request
LF-01     :meth:`SpApiClient.device_status`  bound phone? mobile signing certificate?
WEB-01    :meth:`SpApiClient.web_redirect` / :meth:`SpApiClient.verify_web_callback`
========  ==========================  ==============================================

Rules every call keeps:

* a fresh UUID4 ``transaction_id`` for every request that creates something (ATH-01,
  ATH-03, ATH-04, LF-01, WEB-01); ATH-02 polls *that* transaction, so it carries the
  ticket's ``transaction_id`` and ``sp_ticket_id`` (inferred from the ATH-02 checksum,
  which covers the ``transaction_id`` the result belongs to);
* an ``sp_checksum`` with a fresh random IV (:mod:`moica_auth.mobile.checksum`);
* the answer's ``idp_checksum`` is verified before *anything* in it is read: a success
  with a missing or wrong checksum is :class:`MobileChecksumInvalid`; an error answer
  with a wrong checksum too; an error answer without one is still only a refusal;
* connect/read timeouts, a response size cap, retries (at most ``retries``) only for
  transport errors: a connect failure for every call, a read timeout only for the
  read-only ATH-02 and LF-01 (repeating a push could ring a phone twice);
* ATH-02 at most once per ``poll_interval`` (≥ 4 s) per ticket in this process; the
  credential source adds the cross-worker gate in the shared store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from moica_auth.mobile.checksum import IDP_FIELDS, SP_FIELDS, make_checksum, payload_of
from moica_auth.mobile.checksum import verify_checksum as _verify
from moica_auth.mobile.errors import (
    MobileApiUnavailable,
    MobileMalformedAnswer,
    MobileRequestRejected,
    MobileResultMismatch,
    error_for_upstream,
    is_pending,
)
from moica_auth.mobile.settings import MODES, MobileSettings

__all__ = [
    "MAX_ANSWER_BYTES",
    "AppLink",
    "DeviceStatus",
    "Pending",
    "RequestsTransport",
    "SignInfo",
    "SignResult",
    "SpApiClient",
    "Ticket",
    "Transport",
    "TransportError",
    "WebRedirect",
    "decode_ticket",
]

MAX_ANSWER_BYTES = 256 * 1024
MAX_SIGN_DATA = 1024
_OP_CODES = frozenset({"ATH", "SIGN", "NFCSIGN"})
_SIGN_TYPES = frozenset({"PKCS#1", "PKCS#7", "RAW"})
_HASHES = frozenset({"SHA1", "SHA256", "SHA384", "SHA512"})


# --- transport ------------------------------------------------------------------------


class TransportError(Exception):
    """The request did not complete; ``sent`` says whether it may have reached MOI."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Transport(Protocol):
    """One method: POST a JSON body, return ``(status, body)`` or raise
    :class:`TransportError`. Tests swap the transport, never the client logic."""

    def post_json(
        self, url: str, body: Mapping[str, Any], *, timeout: tuple[float, float]
    ) -> tuple[int, bytes]: ...


class RequestsTransport:
    """:class:`Transport` on a ``requests.Session`` with a response size cap."""

    def __init__(
        self, session: requests.Session | None = None, *, max_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self.session = session or requests.Session()
        self.max_bytes = max_bytes

    def post_json(
        self, url: str, body: Mapping[str, Any], *, timeout: tuple[float, float]
    ) -> tuple[int, bytes]:
        try:
            with self.session.post(
                url, json=dict(body), timeout=timeout, stream=True, allow_redirects=False
            ) as response:
                data = response.raw.read(self.max_bytes + 1, decode_content=True)
                status = response.status_code
        except requests.exceptions.ConnectTimeout as exc:
            raise TransportError("connect timeout", sent=False) from exc
        except requests.exceptions.SSLError as exc:
            raise TransportError("TLS failure", sent=False) from exc
        except requests.exceptions.ConnectionError as exc:
            # A refused or reset connection before an answer: the request may or may not
            # have been read; only a refused connect is surely unsent.
            refused = "refused" in str(exc).lower()
            raise TransportError("connection failed", sent=not refused) from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise TransportError(type(exc).__name__, sent=True) from exc
        if len(data) > self.max_bytes:
            raise TransportError("answer too large", sent=True)
        return status, data


# --- typed requests and results -------------------------------------------------------


@dataclass(frozen=True)
class SignInfo:
    """``sign_info`` of ATH-01/03/WEB-01: what the app signs and how."""

    sign_data: str
    sign_type: str = "PKCS#1"
    hash_algorithm: str = "SHA256"
    tbs_encoding: str = "NONE"

    def __post_init__(self) -> None:
        if self.sign_type not in _SIGN_TYPES:
            raise MobileRequestRejected(f"sign_type {self.sign_type!r} is not supported")
        if self.hash_algorithm not in _HASHES:
            raise MobileRequestRejected(f"hash_algorithm {self.hash_algorithm!r} unknown")
        if self.tbs_encoding not in ("NONE", "base64"):
            raise MobileRequestRejected("tbs_encoding must be NONE or base64")
        if not self.sign_data or len(self.sign_data) > MAX_SIGN_DATA:
            raise MobileRequestRejected("sign_data must be 1–1024 characters")

    def as_json(self) -> dict[str, str]:
        return {
            "sign_type": self.sign_type,
            "sign_data": self.sign_data,
            "tbs_encoding": self.tbs_encoding,
            "hash_algorithm": self.hash_algorithm,
        }


@dataclass(frozen=True)
class Ticket:
    """An ``sp_ticket`` MOI issued (ATH-01/03/04), decoded and checked against our
    request. ``hashed_id_num`` is MOI's digest of the ID number (never the number)."""

    transaction_id: str
    sp_ticket: str
    sp_ticket_id: str
    op_code: str
    op_mode: str
    sp_service_id: str
    hashed_id_num: str
    expires_at: datetime | None
    claims: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """A JSON-able form for the shared store."""
        return {"transaction_id": self.transaction_id, "sp_ticket": self.sp_ticket}


@dataclass(frozen=True)
class Pending:
    """ATH-02: the citizen has not answered yet."""

    error_code: str


@dataclass(frozen=True)
class SignResult:
    """ATH-02 (or WEB-01) success: authenticated by ``idp_checksum``, except ``cert``,
    which the checksum does not cover and the caller must validate."""

    transaction_id: str
    hashed_id_num: str
    signed_response: str | None
    signed_response_set: tuple[str, ...]
    cert: str | None
    id_num: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DeviceStatus:
    """LF-01: ``has_device`` (``is_fido``), ``can_sign`` (``is_mcert_sign``)."""

    transaction_id: str
    has_device: bool
    can_sign: bool


@dataclass(frozen=True)
class WebRedirect:
    """WEB-01: the browser POSTs ``fields`` (form-encoded) to ``url``."""

    url: str
    fields: Mapping[str, str]
    transaction_id: str


@dataclass(frozen=True)
class AppLink:
    """APP-01 ``mobilemoica://`` link handing a ticket to the app on the same phone."""

    url: str


# --- helpers --------------------------------------------------------------------------


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64url text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _parse_time(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        if value.isdigit():
            return _parse_time(int(value))
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            # MOI's hosts are in Asia/Taipei; a naive time is read as UTC+8 (inferred).
            from datetime import timedelta, timezone

            parsed = parsed.replace(tzinfo=timezone(timedelta(hours=8)))
        return parsed.astimezone(UTC)
    raise ValueError("unreadable expiration_time")


def decode_ticket(sp_ticket: str) -> dict[str, Any]:
    """Decode ``base64url(JSON) + "." + base64url(SHA-256(first part))``.

    The digest is unkeyed, so it only catches corruption; the ticket is authenticated by
    the answer's ``idp_checksum``, which covers the whole ``sp_ticket`` string.
    """
    if not isinstance(sp_ticket, str) or len(sp_ticket) > 8192 or sp_ticket.count(".") != 1:
        raise MobileMalformedAnswer("sp_ticket is not two base64url parts")
    body, digest = sp_ticket.split(".")
    try:
        claimed = _b64url_decode(digest)
        claims = json.loads(_b64url_decode(body))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise MobileMalformedAnswer("sp_ticket is not base64url JSON") from None
    if not hmac.compare_digest(claimed, hashlib.sha256(body.encode("ascii")).digest()):
        raise MobileMalformedAnswer("sp_ticket digest does not match")
    if not isinstance(claims, dict):
        raise MobileMalformedAnswer("sp_ticket body is not an object")
    return claims


def _text(data: Mapping[str, Any], name: str, *, required: bool = True, limit: int = 16384) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise MobileMalformedAnswer(f"answer field {name} is missing or not a string")
    return value


# --- client ---------------------------------------------------------------------------


class SpApiClient:
    """MOI's SP API for one registered service (``settings``). Thread-safe."""

    def __init__(
        self,
        settings: MobileSettings,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.transport: Transport = transport or RequestsTransport()
        self._clock = clock
        self._sleep = sleep
        self._last_poll: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpApiClient(api_url={self.settings.api_url!r})"

    # -- plumbing
    def _checksum(self, interface: str, values: Mapping[str, str | None]) -> str:
        return make_checksum(self.settings.aes_key, payload_of(SP_FIELDS[interface], values))

    def _post(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        url = self.settings.endpoint(path)
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                status, raw = self.transport.post_json(url, body, timeout=timeout)
                break
            except TransportError as exc:
                retry = attempt + 1 < attempts and (idempotent or not exc.sent)
                if not retry:
                    raise MobileApiUnavailable(f"{path}: {exc}") from exc
                self._sleep(min(0.25 * 2**attempt, 2.0))
        if status >= 500:
            raise MobileApiUnavailable(f"{path}: HTTP {status}")
        if status != 200:
            raise MobileApiUnavailable(f"{path}: unexpected HTTP {status}")
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise MobileMalformedAnswer(f"{path}: answer is not JSON") from None
        if not isinstance(answer, dict):
            raise MobileMalformedAnswer(f"{path}: answer is not an object")
        code = answer.get("error_code")
        if isinstance(code, int) and not isinstance(code, bool):
            code = str(code)
        if not isinstance(code, str) or not code or len(code) > 100:
            raise MobileMalformedAnswer(f"{path}: answer has no error_code")
        answer["error_code"] = code
        result = answer.get("result")
        if result is None:
            answer["result"] = {}
        elif not isinstance(result, dict):
            raise MobileMalformedAnswer(f"{path}: result is not an object")
        return answer

    def _authenticate(
        self,
        kind: str,
        transaction_id: str,
        answer: dict[str, Any],
        values: Mapping[str, str | None],
    ) -> None:
        """Verify ``idp_checksum`` over the ``kind`` payload; refuse a forged or absent one
        on success, refuse a forged one on an error, and map the error."""
        code: str = answer["error_code"]
        checksum = answer["result"].get("idp_checksum")
        payload = payload_of(
            IDP_FIELDS[kind], {"transaction_id": transaction_id, "error_code": code, **values}
        )
        if code == "0" or checksum not in (None, ""):
            _verify(self.settings.aes_key, payload, checksum)
        if code != "0" and not is_pending(code):
            raise error_for_upstream(code, authenticated=checksum not in (None, ""))

    def _ticket_answer(
        self, path: str, body: dict[str, Any], transaction_id: str, *, op_code: str, op_mode: str
    ) -> Ticket:
        answer = self._post(path, body, idempotent=False)
        result = answer["result"]
        raw_ticket = result.get("sp_ticket")
        ticket_text = raw_ticket if isinstance(raw_ticket, str) else None
        self._authenticate("TICKET", transaction_id, answer, {"sp_ticket": ticket_text})
        if answer["error_code"] != "0":  # a "pending" code makes no sense here
            raise error_for_upstream(answer["error_code"])
        sp_ticket = _text(result, "sp_ticket", limit=8192)
        claims = decode_ticket(sp_ticket)
        # The checksum covers the ticket, so these claims are MOI's; still check they are
        # about *this* request, or a valid ticket of another transaction could be swapped in.
        if claims.get("transaction_id") != transaction_id:
            raise MobileResultMismatch("sp_ticket names another transaction")
        if claims.get("sp_service_id") != self.settings.service_id:
            raise MobileResultMismatch("sp_ticket names another service")
        if claims.get("op_code", op_code) != op_code:
            raise MobileResultMismatch("sp_ticket has another op_code")
        ticket_id = _text(claims, "sp_ticket_id", limit=200)
        try:
            expires = _parse_time(claims.get("expiration_time"))
        except (ValueError, OverflowError, OSError):
            raise MobileMalformedAnswer("sp_ticket expiration_time is unreadable") from None
        return Ticket(
            transaction_id=transaction_id,
            sp_ticket=sp_ticket,
            sp_ticket_id=ticket_id,
            op_code=op_code,
            op_mode=str(claims.get("op_mode") or op_mode),
            sp_service_id=self.settings.service_id,
            hashed_id_num=_text(claims, "hashed_id_num", required=False, limit=200),
            expires_at=expires,
            claims=claims,
        )

    @staticmethod
    def new_transaction_id() -> str:
        return str(uuid.uuid4())

    def _check_request(self, op_code: str, time_limit: int | None) -> int:
        if op_code not in _OP_CODES:
            raise MobileRequestRejected(f"op_code {op_code!r} unknown")
        limit = self.settings.time_limit if time_limit is None else time_limit
        if not 30 <= limit <= 600:
            raise MobileRequestRejected("time_limit must be 30–600 seconds")
        return limit

    # -- ATH-01
    def get_ticket(
        self,
        *,
        id_num: str,
        op_mode: str,
        sign_info: SignInfo | None,
        op_code: str = "SIGN",
        hint: str | None = None,
        time_limit: int | None = None,
    ) -> Ticket:
        """ATH-01 ``getSpTicket``: a ticket the app reads from a QR code (``I-SCAN``) or
        an app link (``APP2APP``, ``MWEB2APP``)."""
        limit = self._check_request(op_code, time_limit)
        if op_mode not in {m for m in MODES.values() if m}:
            raise MobileRequestRejected(f"op_mode {op_mode!r} unknown")
        if op_code != "ATH" and sign_info is None:
            raise MobileRequestRejected("SIGN needs sign_info")
        tid = self.new_transaction_id()
        hint_text = self.settings.hint if hint is None else hint
        sign_data = sign_info.sign_data if sign_info else ""
        body: dict[str, Any] = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "id_num": id_num,
            "op_code": op_code,
            "op_mode": op_mode,
            "hint": hint_text,
            "time_limit": str(limit),
            "sp_checksum": self._checksum(
                "ATH-01",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "id_num": id_num,
                    "op_code": op_code,
                    "op_mode": op_mode,
                    "hint": hint_text,
                    "sign_data": sign_data,
                },
            ),
        }
        if sign_info is not None:
            body["sign_info"] = sign_info.as_json()
        return self._ticket_answer("getSpTicket", body, tid, op_code=op_code, op_mode=op_mode)

    # -- ATH-03
    def push(
        self,
        *,
        id_num: str,
        sign_info: SignInfo | None,
        op_code: str = "SIGN",
        hint: str | None = None,
        time_limit: int | None = None,
        device_user_def_desc: str | None = None,
    ) -> Ticket:
        """ATH-03 ``requestAthOrSignPush``: MOI pushes the request to the bound phone(s)."""
        limit = self._check_request(op_code, time_limit)
        if op_code != "ATH" and sign_info is None:
            raise MobileRequestRejected("SIGN needs sign_info")
        tid = self.new_transaction_id()
        hint_text = self.settings.hint if hint is None else hint
        sign_data = sign_info.sign_data if sign_info else ""
        body: dict[str, Any] = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "id_num": id_num,
            "op_code": op_code,
            "hint": hint_text,
            "time_limit": str(limit),
            "sp_checksum": self._checksum(
                "ATH-03",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "id_num": id_num,
                    "device_user_def_desc": device_user_def_desc,
                    "op_code": op_code,
                    "hint": hint_text,
                    "sign_data": sign_data,
                },
            ),
        }
        if device_user_def_desc:
            body["device_user_def_desc"] = device_user_def_desc
        if sign_info is not None:
            body["sign_info"] = sign_info.as_json()
        return self._ticket_answer(
            "requestAthOrSignPush", body, tid, op_code=op_code, op_mode="PUSH"
        )

    # -- ATH-04
    def batch_sign(
        self,
        *,
        id_num: str,
        documents: Sequence[str],
        op_mode: str = "I-SCAN",
        hint: str | None = None,
        time_limit: int | None = None,
        sign_type: str = "PKCS#1",
        hash_algorithm: str = "SHA256",
        tbs_encoding: str = "NONE",
    ) -> Ticket:
        """ATH-04 ``doBatchSigning`` (``BATSIGN``): 1–20 documents of ≤ 1024 characters."""
        limit = self._check_request("SIGN", time_limit)
        if not 1 <= len(documents) <= 20:
            raise MobileRequestRejected("a batch holds 1–20 documents")
        infos = [
            SignInfo(
                sign_data=d,
                sign_type=sign_type,
                hash_algorithm=hash_algorithm,
                tbs_encoding=tbs_encoding,
            )
            for d in documents
        ]
        tid = self.new_transaction_id()
        hint_text = self.settings.hint if hint is None else hint
        body: dict[str, Any] = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "id_num": id_num,
            "op_code": "BATSIGN",
            "op_mode": op_mode,
            "hint": hint_text,
            "time_limit": str(limit),
            "sign_info": [info.as_json() for info in infos],
            "sp_checksum": self._checksum(
                "ATH-04",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "id_num": id_num,
                    "op_code": "BATSIGN",
                    "op_mode": op_mode,
                    "hint": hint_text,
                },
            ),
        }
        return self._ticket_answer("doBatchSigning", body, tid, op_code="BATSIGN", op_mode=op_mode)

    # -- ATH-02
    def wait_for_poll_slot(self, ticket_id: str) -> None:
        """Sleep until ``poll_interval`` has passed since this process last polled."""
        with self._lock:
            now = self._clock()
            last = self._last_poll.get(ticket_id)
            wait = 0.0 if last is None else last + self.settings.poll_interval - now
            self._last_poll[ticket_id] = now + max(wait, 0.0)
            if len(self._last_poll) > 10000:
                self._last_poll.clear()
        if wait > 0:
            self._sleep(wait)

    def poll(self, ticket: Ticket) -> Pending | SignResult:
        """ATH-02 ``getAthOrSignResult`` for ``ticket``: :class:`Pending`, or the
        checksum-verified :class:`SignResult`; any error raises its typed refusal."""
        self.wait_for_poll_slot(ticket.sp_ticket_id)
        tid = ticket.transaction_id
        body = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "sp_ticket_id": ticket.sp_ticket_id,
            "sp_checksum": self._checksum(
                "ATH-02",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "sp_ticket_id": ticket.sp_ticket_id,
                },
            ),
        }
        answer = self._post("getAthOrSignResult", body, idempotent=True)
        result = answer["result"]
        signed = result.get("signed_response")
        signed_set = result.get("signed_response_set")
        if signed_set is not None and (
            not isinstance(signed_set, list)
            or not all(isinstance(s, str) for s in signed_set)
            or len(signed_set) > 20
        ):
            raise MobileMalformedAnswer("signed_response_set is not a list of strings")
        hashed = result.get("hashed_id_num")
        # For a batch the checksum payload takes the signatures concatenated (inferred:
        # the spec names signed_response only).
        covered = signed if isinstance(signed, str) else "".join(signed_set or [])
        self._authenticate(
            "ATH-02",
            tid,
            answer,
            {
                "hashed_id_num": hashed if isinstance(hashed, str) else None,
                "signed_response": covered,
            },
        )
        if is_pending(answer["error_code"]):
            return Pending(error_code=answer["error_code"])
        cert = result.get("cert")
        if cert is not None and not isinstance(cert, str):
            raise MobileMalformedAnswer("cert is not a string")
        return SignResult(
            transaction_id=tid,
            hashed_id_num=_text(result, "hashed_id_num", required=False, limit=200),
            signed_response=_text(result, "signed_response", required=False) or None,
            signed_response_set=tuple(signed_set or ()),
            cert=cert or None,
        )

    # -- LF-01
    def device_status(self, *, id_num: str) -> DeviceStatus:
        """LF-01 ``checkDeviceStatus``: whether ``id_num`` has a bound phone and a
        mobile signing certificate."""
        tid = self.new_transaction_id()
        body = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "id_num": id_num,
            "sp_checksum": self._checksum(
                "LF-01",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "id_num": id_num,
                },
            ),
        }
        answer = self._post("checkDeviceStatus", body, idempotent=True)
        result = answer["result"]
        fido, sign = result.get("is_fido"), result.get("is_mcert_sign")
        self._authenticate(
            "LF-01",
            tid,
            answer,
            {
                "is_fido": fido if isinstance(fido, str) else None,
                "is_mcert_sign": sign if isinstance(sign, str) else None,
            },
        )
        if answer["error_code"] != "0":
            raise error_for_upstream(answer["error_code"])
        if fido not in ("Y", "N") or sign not in ("Y", "N"):
            raise MobileMalformedAnswer("is_fido / is_mcert_sign must be Y or N")
        return DeviceStatus(transaction_id=tid, has_device=fido == "Y", can_sign=sign == "Y")

    # -- WEB-01
    def web_redirect(
        self,
        *,
        sign_info: SignInfo | None,
        op_code: str = "SIGN",
        hint: str | None = None,
        time_limit: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> WebRedirect:
        """WEB-01: the fields the browser form-POSTs to ``{web_url}/fidoRedirect/web``;
        MOI's page runs the flow and POSTs the result to the registered callback."""
        limit = self._check_request(op_code, time_limit)
        tid = self.new_transaction_id()
        hint_text = self.settings.hint if hint is None else hint
        fields: dict[str, str] = {
            "transaction_id": tid,
            "sp_service_id": self.settings.service_id,
            "op_code": op_code,
            "hint": hint_text,
            "time_limit": str(limit),
            "sp_checksum": self._checksum(
                "WEB-01",
                {
                    "transaction_id": tid,
                    "sp_service_id": self.settings.service_id,
                    "op_code": op_code,
                    "hint": hint_text,
                    "sign_data": sign_info.sign_data if sign_info else "",
                },
            ),
        }
        if sign_info is not None:
            fields["sign_info"] = json.dumps(sign_info.as_json(), separators=(",", ":"))
        fields.update(extra or {})
        return WebRedirect(
            url=f"{self.settings.web_url}/fidoRedirect/web", fields=fields, transaction_id=tid
        )

    def verify_web_callback(self, form: Mapping[str, str], *, transaction_id: str) -> SignResult:
        """Authenticate the form MOI's page POSTs back (``idp_checksum`` over
        ``transaction_id + error_code + id_num + signed_response``) for our
        ``transaction_id``; an error raises its typed refusal."""

        def get(name: str) -> str | None:
            value = form.get(name)
            return value if isinstance(value, str) else None

        if get("transaction_id") != transaction_id:
            raise MobileResultMismatch("callback names another transaction")
        code = get("error_code") or ""
        if not code:
            raise MobileMalformedAnswer("callback has no error_code")
        answer = {"error_code": code, "result": {"idp_checksum": get("idp_checksum")}}
        self._authenticate(
            "WEB-01",
            transaction_id,
            answer,
            {"id_num": get("id_num"), "signed_response": get("signed_response")},
        )
        if is_pending(code):
            raise MobileMalformedAnswer("callback reports a pending transaction")
        return SignResult(
            transaction_id=transaction_id,
            hashed_id_num="",
            signed_response=get("signed_response") or None,
            signed_response_set=(),
            cert=get("cert") or None,
            id_num=get("id_num"),
        )

    # -- APP-01
    @staticmethod
    def app_link(
        ticket: Ticket, *, kind: str = "a2a", rtn_url: str = "", rtn_val: str = ""
    ) -> AppLink:
        """APP-01: ``mobilemoica://moica.moi.gov.tw/{a2a|w2a}/verifySign?…`` with
        ``rtn_url``/``rtn_val`` base64url."""
        if kind not in ("a2a", "w2a"):
            raise MobileRequestRejected("app link kind must be a2a or w2a")
        query = urlencode(
            {
                "sp_ticket": ticket.sp_ticket,
                "rtn_url": _b64url(rtn_url.encode()),
                "rtn_val": _b64url(rtn_val.encode()),
            }
        )
        return AppLink(url=f"mobilemoica://moica.moi.gov.tw/{kind}/verifySign?{query}")
