"""A virtual MOI SP API and a virtual phone, over real HTTP (TEST USE ONLY).

:class:`VirtualSpApi` serves MOI's relying-party interfaces under ``/moise/sp/`` with the
real rules: every request's ``sp_checksum`` is checked (``INV_SP_CHECKSUM`` otherwise),
``transaction_id`` may be used once (``TXNLOG_INS_ERR``), tickets expire after
``time_limit`` (``SPTKT_OVD``) and give their result once (``SPTKTID_SPTKT_RDM``), pushes
land in a per-ID-number inbox, and every answer carries an ``idp_checksum`` made with a
fresh IV.

The **virtual phone** page ``/phone/?id=<ID number>`` lists the pending requests of that
ID number (push inbox and tickets pasted into the page) with 「同意」(approve: the phone
signs ``sign_data`` with the ID number's *mobile* certificate from the test PKI, SDA
``"mobile"``) and 「拒絕」(cancel) buttons. Tests do the same through :meth:`approve` and
:meth:`cancel`.

Fault modes (``server.fault = …``): ``"slow"`` (answers after ``slow_seconds``),
``"5xx"``, ``"garbage"`` (not JSON), ``"bad_checksum"`` (an idp_checksum under another
key), ``"foreign_cert"`` (signed with a certificate from another CA), ``"card_cert"``
(signed with the citizen's *card* certificate), ``"other_person"`` (a valid mobile
certificate of someone else), ``"other_data"`` (signature over other
text). A revoked phone certificate is made by revoking :meth:`phone`'s certificate in the
test CRL. Run ``python -m moica_auth.testing.virtual_sp`` for a standalone server.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from moica_auth.mobile.checksum import IDP_FIELDS, SP_FIELDS, make_checksum, payload_of
from moica_auth.mobile.checksum import verify_checksum as _verify_checksum
from moica_auth.mobile.errors import MobileChecksumInvalid
from moica_auth.testing.httpserver import (
    ServerWithDaemonThreads,
    StartStopContext,
    serve_in_thread,
    serve_until_interrupted,
    shut_down,
)
from moica_auth.testing.pki import CitizenCard, TestPKI, default_pki, make_id_number
from moica_auth.testing.softcard import build_signed_data

__all__ = ["FAULTS", "PhoneRequest", "VirtualSpApi", "hashed_id_num"]

FAULTS = frozenset(
    {
        "slow",
        "5xx",
        "garbage",
        "bad_checksum",
        "foreign_cert",
        "card_cert",
        "other_data",
        "other_person",
    }
)
_ID_RE = re.compile(r"[A-Z][12890][0-9]{8}")
_MAX_BODY = 64 * 1024
_PATHS = {
    "getSpTicket": "ATH-01",
    "getAthOrSignResult": "ATH-02",
    "requestAthOrSignPush": "ATH-03",
    "doBatchSigning": "ATH-04",
    "checkDeviceStatus": "LF-01",
}


def hashed_id_num(id_num: str) -> str:
    """The virtual API's digest of an ID number (MOI's own is opaque to an RP)."""
    return hashlib.sha256(id_num.encode("ascii")).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class PhoneRequest:
    """One transaction as the virtual API keeps it."""

    ticket_id: str
    transaction_id: str
    id_num: str
    op_code: str
    op_mode: str
    hint: str
    sign_infos: list[dict[str, str]]
    expires: float
    state: str = "pending"  # pending, approved, cancelled, failed, redeemed
    result: dict[str, Any] = field(default_factory=dict)


class VirtualSpApi(StartStopContext):
    """MOI's SP API and a phone page on ``127.0.0.1`` (port 0 picks a free port)."""

    def __init__(
        self,
        *,
        service_id: str = "VIRTUAL-SP-0001",
        aes_key: bytes | None = None,
        pki: TestPKI | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        callback_url: str = "",
    ) -> None:
        self.service_id = service_id
        #: WEB-01: where MOI's page POSTs the result (the RP's registered callback).
        self.callback_url = callback_url
        self.aes_key = aes_key or secrets.token_bytes(32)
        self.pki = pki or default_pki()
        self.host, self.port = host, port
        self.clock = clock
        self._unshifted_clock = clock
        self.fault: str | None = None
        self.slow_seconds = 2.0
        self.calls: dict[str, int] = {name: 0 for name in _PATHS.values()}
        self._lock = threading.Lock()
        self._used_transactions: set[str] = set()
        self._requests: dict[str, PhoneRequest] = {}
        self._phones: dict[str, CitizenCard] = {}
        self._foreign: TestPKI | None = None
        self._web_forms: dict[str, dict[str, str]] = {}
        self._httpd: ServerWithDaemonThreads | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The ``api_url`` to configure (``{url}/moise/sp/…``)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    @property
    def phone_url(self) -> str:
        return f"{self.url}/phone/"

    def start(self) -> VirtualSpApi:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ServerWithDaemonThreads((self.host, self.port), handler)
        self._thread = serve_in_thread(self._httpd, name="virtual-sp-api", poll_interval=0.1)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            shut_down(self._httpd, self._thread, timeout=5)
            self._httpd = None

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A ``MOICA_AUTH_MOBILE`` dict pointing at this server."""
        return {
            "api_url": self.url,
            "service_id": self.service_id,
            "aes_key": base64.b64encode(self.aes_key).decode("ascii"),
            "web_url": self.url,
            **extra,
        }

    # ------------------------------------------------------------------ phones
    def register_phone(self, id_number: str, *, name: str = "王小明") -> CitizenCard:
        """Bind a phone holding a mobile certificate (SDA form "mobile") to ``id_number``."""
        card = self.pki.issue_card(id_number=id_number, name=name, form="mobile")
        with self._lock:
            self._phones[id_number] = card
        return card

    def bind_phone(self, id_number: str, card: CitizenCard) -> None:
        """Bind a phone holding ``card`` (an existing mobile certificate, e.g. the demo's
        with its CRL/OCSP URLs) to ``id_number``."""
        with self._lock:
            self._phones[id_number] = card

    def phone(self, id_number: str) -> CitizenCard:
        return self._phones[id_number]

    def pending(self, id_number: str) -> list[PhoneRequest]:
        """Pending, unexpired requests for ``id_number`` (the phone's inbox)."""
        now = self.clock()
        with self._lock:
            return [
                r
                for r in self._requests.values()
                if r.id_num == id_number and r.state == "pending" and r.expires > now
            ]

    def approve(self, ticket_id: str | None = None, *, id_number: str | None = None) -> None:
        """The citizen approves (the phone signs); by ticket id or the newest for an ID."""
        request = self._find(ticket_id, id_number)
        phone = self._phones.get(request.id_num)
        if phone is None:
            raise KeyError("no phone for this ID number")
        request.result = self._sign(request, phone)
        request.state = "approved"

    def cancel(self, ticket_id: str | None = None, *, id_number: str | None = None) -> None:
        self._find(ticket_id, id_number).state = "cancelled"

    def _find(self, ticket_id: str | None, id_number: str | None) -> PhoneRequest:
        with self._lock:
            if ticket_id is not None:
                return self._requests[ticket_id]
            matches = [
                r for r in self._requests.values() if r.id_num == id_number and r.state == "pending"
            ]
        if not matches:
            raise KeyError("no pending request")
        return matches[-1]

    def _signer(self, phone: CitizenCard) -> CitizenCard:
        if self.fault == "card_cert":
            return self.pki.issue_card(id_number=phone.id_number, name=phone.name)
        if self.fault == "other_person":
            return self.pki.issue_card(
                id_number=make_id_number("virtual-sp-other-person"), name="陳大同", form="mobile"
            )
        if self.fault == "foreign_cert":
            if self._foreign is None:
                self._foreign = TestPKI(seed="virtual-sp-foreign-ca")
            return self._foreign.issue_card(
                id_number=phone.id_number, name=phone.name, form="mobile"
            )
        return phone

    def _sign(self, request: PhoneRequest, phone: CitizenCard) -> dict[str, Any]:
        signer = self._signer(phone)
        cert_der = signer.signing.certificate.public_bytes(serialization.Encoding.DER)
        signatures = []
        for info in request.sign_infos:
            data = info["sign_data"]
            if info.get("tbs_encoding") == "base64":
                content = base64.b64decode(data)
            else:
                content = data.encode("utf-8")
            if self.fault == "other_data":
                content = b"moica-auth/1 something else entirely"
            # SHA-1 is not offered: the login path refuses it anyway.
            algorithm = {"SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}.get(
                info.get("hash_algorithm", ""), hashes.SHA256()
            )
            if info.get("sign_type") == "PKCS#7":
                raw = build_signed_data(
                    content=content,
                    private_key=signer.signing.private_key,
                    certificate=signer.signing.certificate,
                    hash_algorithm=info.get("hash_algorithm", "SHA256"),
                )
            else:
                raw = signer.signing.private_key.sign(content, padding.PKCS1v15(), algorithm)
            signatures.append(base64.b64encode(raw).decode("ascii"))
        out: dict[str, Any] = {
            "hashed_id_num": hashed_id_num(request.id_num),
            "cert": base64.b64encode(cert_der).decode("ascii"),
        }
        if request.op_code == "BATSIGN":
            out["signed_response_set"] = signatures
        elif request.op_code != "ATH":
            out["signed_response"] = signatures[0]
            # ATH only proves to MOI, not to us: no signature, no certificate.
        else:
            out.pop("cert")
        return out

    # ------------------------------------------------------------------ API
    def idp_checksum(self, kind: str, values: dict[str, str | None]) -> str:
        key = self.aes_key if self.fault != "bad_checksum" else bytes(32)
        return make_checksum(key, payload_of(IDP_FIELDS[kind], values))

    def _error(self, interface: str, code: str, transaction_id: str, kind: str) -> dict[str, Any]:
        full = code if code.isdigit() else f"SP-API-{interface}-{code}"
        return {
            "error_code": full,
            "error_message": code,
            "result": {
                "idp_checksum": self.idp_checksum(
                    kind, {"transaction_id": transaction_id, "error_code": full}
                )
            },
        }

    def handle(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        interface = _PATHS[path]
        with self._lock:
            self.calls[interface] += 1
        kind = {"ATH-02": "ATH-02", "LF-01": "LF-01"}.get(interface, "TICKET")
        tid = body.get("transaction_id")
        if not isinstance(tid, str) or not 0 < len(tid) <= 100:
            return self._error(interface, "PM_TXNID_ERR", "", kind)
        if body.get("sp_service_id") != self.service_id:
            return self._error(interface, "SPSVCID_NF", tid, kind)
        values = {k: v for k, v in body.items() if isinstance(v, str)}
        sign_info = body.get("sign_info")
        if isinstance(sign_info, dict) and isinstance(sign_info.get("sign_data"), str):
            values["sign_data"] = sign_info["sign_data"]
        try:
            _verify_checksum(
                self.aes_key, payload_of(SP_FIELDS[interface], values), body.get("sp_checksum")
            )
        except MobileChecksumInvalid:
            return self._error(interface, "INV_SP_CHECKSUM", tid, kind)
        if interface == "ATH-02":
            return self._result(tid, body)
        with self._lock:
            if tid in self._used_transactions:
                return self._error(interface, "TXNLOG_INS_ERR", tid, kind)
            self._used_transactions.add(tid)
        id_num = body.get("id_num")
        if not isinstance(id_num, str) or not _ID_RE.fullmatch(id_num):
            return self._error(interface, "PM_IDN_FT_ERR", tid, kind)
        if interface == "LF-01":
            has = id_num in self._phones
            flags = {"is_fido": "Y" if has else "N", "is_mcert_sign": "Y" if has else "N"}
            return {
                "error_code": "0",
                "error_message": "",
                "result": {
                    **flags,
                    "idp_checksum": self.idp_checksum(
                        "LF-01", {"transaction_id": tid, "error_code": "0", **flags}
                    ),
                },
            }
        return self._new_ticket(interface, tid, id_num, body)

    def _new_ticket(
        self, interface: str, tid: str, id_num: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        if id_num not in self._phones:
            code = "IDNUM_DEVPROF_NF" if interface == "ATH-03" else "IDNUM_USERPROF_NF"
            return self._error(interface, code, tid, "TICKET")
        try:
            time_limit = int(body.get("time_limit", "120"))
        except (TypeError, ValueError):
            time_limit = -1
        if not 30 <= time_limit <= 600:
            return self._error(interface, "SPTKT_TIME_ORV", tid, "TICKET")
        raw_infos = body.get("sign_info")
        infos = raw_infos if isinstance(raw_infos, list) else [raw_infos] if raw_infos else []
        if interface == "ATH-04" and not 1 <= len(infos) <= 20:
            return self._error(interface, "BATSIGN_CNT_LIMIT", tid, "TICKET")
        for info in infos:
            if not isinstance(info, dict) or not isinstance(info.get("sign_data"), str):
                return self._error(interface, "PM_SIGNINFO_ERR", tid, "TICKET")
            if len(info["sign_data"]) > 1024:
                return self._error(interface, "SIGNDATA_LEN_LIMIT", tid, "TICKET")
        op_code = str(body.get("op_code", ""))
        op_mode = "PUSH" if interface == "ATH-03" else str(body.get("op_mode", ""))
        ticket_id = uuid.uuid4().hex
        expires = self.clock() + time_limit
        claims = {
            "transaction_id": tid,
            "op_code": op_code,
            "op_mode": op_mode,
            "sp_service_id": self.service_id,
            "sp_ticket_id": ticket_id,
            "sp_name": "Virtual SP",
            "hint": str(body.get("hint", "")),
            "expiration_time": datetime.fromtimestamp(expires, tz=UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "hashed_id_num": hashed_id_num(id_num),
            "version": "1.0",
        }
        part = _b64url(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
        sp_ticket = part + "." + _b64url(hashlib.sha256(part.encode("ascii")).digest())
        with self._lock:
            self._requests[ticket_id] = PhoneRequest(
                ticket_id=ticket_id,
                transaction_id=tid,
                id_num=id_num,
                op_code=op_code,
                op_mode=op_mode,
                hint=claims["hint"],
                sign_infos=infos,
                expires=expires,
            )
        return {
            "error_code": "0",
            "error_message": "",
            "result": {
                "sp_ticket": sp_ticket,
                "idp_checksum": self.idp_checksum(
                    "TICKET", {"transaction_id": tid, "error_code": "0", "sp_ticket": sp_ticket}
                ),
            },
        }

    def _result(self, tid: str, body: dict[str, Any]) -> dict[str, Any]:
        ticket_id = body.get("sp_ticket_id")
        with self._lock:
            request = self._requests.get(ticket_id) if isinstance(ticket_id, str) else None
            if request is None or request.transaction_id != tid:
                return self._error("ATH-02", "SPTKTID_TXNLOG_NF", tid, "ATH-02")
            if request.state == "redeemed":
                return self._error("ATH-02", "SPTKTID_SPTKT_RDM", tid, "ATH-02")
            if request.state == "cancelled":
                return self._error("ATH-02", "APP_USER_CANCEL", tid, "ATH-02")
            if request.state == "pending":
                if self.clock() >= request.expires:
                    return self._error("ATH-02", "SPTKT_OVD", tid, "ATH-02")
                return self._error("ATH-02", "20002", tid, "ATH-02")
            request.state = "redeemed"
            result = dict(request.result)
        signed = result.get("signed_response") or "".join(result.get("signed_response_set", []))
        result["idp_checksum"] = self.idp_checksum(
            "ATH-02",
            {
                "transaction_id": tid,
                "error_code": "0",
                "hashed_id_num": result["hashed_id_num"],
                "signed_response": signed,
            },
        )
        return {"error_code": "0", "error_message": "", "result": result}

    # ------------------------------------------------------------------ phone page
    def phone_page(self, id_number: str) -> str:
        rows = []
        for r in self.pending(id_number):
            esc = html.escape
            data = esc(r.sign_infos[0]["sign_data"]) if r.sign_infos else ""
            rows.append(
                f'<li data-ticket="{esc(r.ticket_id)}"><b>{esc(r.hint)}</b> ({esc(r.op_mode)})'
                f"<pre>{data}</pre>"
                f'<form method="post" action="/phone/approve"><input type="hidden" '
                f'name="ticket" value="{esc(r.ticket_id)}"><input type="hidden" name="id" '
                f'value="{esc(id_number)}"><button>同意 Approve</button></form>'
                f'<form method="post" action="/phone/cancel"><input type="hidden" '
                f'name="ticket" value="{esc(r.ticket_id)}"><input type="hidden" name="id" '
                f'value="{esc(id_number)}"><button>拒絕 Cancel</button></form></li>'
            )
        items = "".join(rows) or "<li>沒有待處理的請求 No pending request</li>"
        return (
            '<!doctype html><html lang="zh-Hant"><meta charset="utf-8">'
            "<title>虛擬行動自然人憑證 Virtual phone</title>"
            f"<h1>虛擬手機 Virtual phone</h1>"
            '<form method="get" action="/phone/">身分證字號 ID <input name="id" '
            f'value="{html.escape(id_number)}"><button>開啟 Open</button></form>'
            '<form method="post" action="/phone/scan">掃描 / 貼上 sp_ticket '
            f'<input type="hidden" name="id" value="{html.escape(id_number)}">'
            '<input name="sp_ticket"><button>讀取 Read</button></form>'
            f'<ul id="requests">{items}</ul></html>'
        )

    # ------------------------------------------------------------------ WEB-01
    def _autopost(self, fields: dict[str, str]) -> str:
        """The page that form-POSTs the result to the RP's callback (WEB-01)."""
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        return (
            '<!doctype html><html lang="zh-Hant"><meta charset="utf-8">'
            f'<form id="result" method="post" action="{html.escape(self.callback_url)}">'
            f"{inputs}<button>返回 Return</button></form>"
            "<script>document.getElementById('result').submit()</script></html>"
        )

    def _web_result(self, tid: str, code: str, extra: dict[str, str]) -> str:
        full = code if code == "0" else f"SP-API-WEB-01-{code}"
        fields = {"transaction_id": tid, "error_code": full, **extra}
        fields["idp_checksum"] = self.idp_checksum("WEB-01", dict(fields))
        return self._autopost(fields)

    def web_page(self, path: str, form: dict[str, str]) -> str:
        """MOI's WEB-01 pages: ``/fidoRedirect/web`` checks the RP's form and asks for the
        ID number; ``/fidoRedirect/id`` puts the request in that phone's inbox;
        ``/fidoRedirect/done`` POSTs the outcome to ``callback_url``."""
        esc = html.escape
        if path == "/fidoRedirect/web":
            tid = form.get("transaction_id", "")
            sign_data = ""
            try:
                info = json.loads(form.get("sign_info", "{}"))
                sign_data = str(info.get("sign_data", "")) if isinstance(info, dict) else ""
            except ValueError:
                info = {}
            try:
                _verify_checksum(
                    self.aes_key,
                    payload_of(SP_FIELDS["WEB-01"], {**form, "sign_data": sign_data}),
                    form.get("sp_checksum"),
                )
            except MobileChecksumInvalid:
                return self._web_result(tid, "INV_SP_CHECKSUM", {})
            with self._lock:
                if not tid or tid in self._used_transactions:
                    return self._web_result(tid, "TXNLOG_INS_ERR", {})
                self._used_transactions.add(tid)
                self._web_forms[tid] = {**form, "sign_data": sign_data}
            return (
                '<!doctype html><html lang="zh-Hant"><meta charset="utf-8">'
                '<form method="post" action="/fidoRedirect/id">'
                f'<input type="hidden" name="transaction_id" value="{esc(tid)}">'
                '身分證字號 ID <input name="id_num"><button>下一步 Next</button></form></html>'
            )
        tid = form.get("transaction_id", "")
        saved = self._web_forms.get(tid)
        if saved is None:
            return "<p>unknown transaction</p>"
        if path == "/fidoRedirect/id":
            id_num = form.get("id_num", "")
            if id_num not in self._phones:
                return self._web_result(tid, "IDNUM_USERPROF_NF", {})
            info = {
                "sign_type": "PKCS#1",
                "sign_data": saved["sign_data"],
                "hash_algorithm": "SHA256",
                "tbs_encoding": "NONE",
            }
            ticket_id = uuid.uuid4().hex
            with self._lock:
                self._requests[ticket_id] = PhoneRequest(
                    ticket_id=ticket_id,
                    transaction_id=tid,
                    id_num=id_num,
                    op_code=saved.get("op_code", "SIGN"),
                    op_mode="WEB",
                    hint=saved.get("hint", ""),
                    sign_infos=[info],
                    expires=self.clock() + int(saved.get("time_limit") or 120),
                )
                saved["ticket_id"] = ticket_id
            return (
                '<!doctype html><html lang="zh-Hant"><meta charset="utf-8">'
                "<p>請在手機上確認 Confirm on your phone</p>"
                '<form method="post" action="/fidoRedirect/done">'
                f'<input type="hidden" name="transaction_id" value="{esc(tid)}">'
                "<button>完成 Done</button></form></html>"
            )
        if path == "/fidoRedirect/done":
            request = self._requests.get(saved.get("ticket_id", ""))
            if request is None or request.state == "pending":
                return self._web_result(tid, "SPTKTID_TXNLOG_NF", {})
            if request.state == "cancelled":
                return self._web_result(tid, "APP_USER_CANCEL", {})
            if request.state == "redeemed":
                return self._web_result(tid, "SPTKTID_SPTKT_RDM", {})
            request.state = "redeemed"
            return self._web_result(
                tid,
                "0",
                {
                    "id_num": request.id_num,
                    "signed_response": str(request.result.get("signed_response", "")),
                    "cert": str(request.result.get("cert", "")),
                },
            )
        return "<p>not found</p>"

    def scan(self, sp_ticket: str) -> PhoneRequest:
        """The phone reads a ticket (QR / app link): find its transaction."""
        part = sp_ticket.split(".")[0]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return self._requests[str(claims["sp_ticket_id"])]


class _Handler(BaseHTTPRequestHandler):
    api: VirtualSpApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output quiet; no ID numbers in logs

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/phone/":
            id_number = parse_qs(parts.query).get("id", [""])[0]
            self._send(200, self.api.phone_page(id_number).encode(), "text/html; charset=utf-8")
            return
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        api = self.api
        parts = urlsplit(self.path)
        try:
            raw = self._body()
        except ValueError:
            self._send(413, b"too large", "text/plain")
            return
        if parts.path.startswith("/phone/"):
            self._phone_post(parts.path, raw)
            return
        if parts.path == "/_virtual/control":
            self._control(raw)
            return
        if parts.path.startswith("/fidoRedirect/"):
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            page = api.web_page(parts.path, form)
            self._send(200, page.encode(), "text/html; charset=utf-8")
            return
        name = parts.path.removeprefix("/moise/sp/")
        if name not in _PATHS:
            self._send(404, b"not found", "text/plain")
            return
        if api.fault == "slow":
            time.sleep(api.slow_seconds)
        if api.fault == "5xx":
            self._send(502, b"<html>Bad Gateway</html>", "text/html")
            return
        if api.fault == "garbage":
            self._send(200, b"{not json", "application/json")
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._send(400, b'{"error_code":"PM_JSON_ERR"}', "application/json")
            return
        answer = api.handle(name, body)
        self._send(200, json.dumps(answer, ensure_ascii=False).encode(), "application/json")

    def _control(self, raw: bytes) -> None:
        """Test control for a server in another process (the demo): ``{"fault": name |
        null}`` sets a fault mode; ``{"advance": seconds}`` sets the server's clock that far
        ahead of its own (ticket expiry; ``0`` resets it)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError
            if "fault" in data:
                fault = data["fault"]
                if fault is not None and fault not in FAULTS:
                    raise ValueError
                self.api.fault = fault
            if "advance" in data:
                seconds = float(data["advance"])
                if not 0 <= seconds <= 86400:
                    raise ValueError
                base = self.api._unshifted_clock
                self.api.clock = lambda: base() + seconds
        except (ValueError, TypeError):
            self._send(400, b'{"ok": false}', "application/json")
            return
        self._send(200, b'{"ok": true}', "application/json")

    def _phone_post(self, path: str, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        id_number = form.get("id", "")
        try:
            if path == "/phone/approve":
                self.api.approve(form.get("ticket", ""))
            elif path == "/phone/cancel":
                self.api.cancel(form.get("ticket", ""))
            elif path == "/phone/scan":
                id_number = self.api.scan(form.get("sp_ticket", "")).id_num
            else:
                self._send(404, b"not found", "text/plain")
                return
        except (KeyError, ValueError):
            self._send(400, "無此請求 unknown request".encode(), "text/plain; charset=utf-8")
            return
        self.send_response(303)
        self.send_header("Location", f"/phone/?id={id_number}")
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> None:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="virtual MOI SP API and phone page")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument(
        "--phone",
        action="append",
        default=[],
        metavar="ID",
        help="bind a phone to this (test) ID number",
    )
    args = parser.parse_args()
    server = VirtualSpApi(port=args.port).start()
    for id_number in args.phone:
        server.register_phone(id_number)
    print(
        json.dumps(
            {"api_url": server.url, "phone": server.phone_url, "settings": server.settings()}
        )
    )
    serve_until_interrupted(server)


if __name__ == "__main__":  # pragma: no cover
    main()
