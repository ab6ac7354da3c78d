"""``python -m moica_auth mobile device-status|sign``: admin checks against the SP API.

The API is configured from the environment, never from the command line (where the key
would show in ``ps`` and shell history): ``MOICA_AUTH_MOBILE_API_URL``,
``MOICA_AUTH_MOBILE_SERVICE_ID`` and ``MOICA_AUTH_MOBILE_AES_KEY`` (base64), the same
variables example_site reads. ``--api-url`` / ``--service-id`` override the first two.

* ``device-status --id A123456789``: LF-01; does the ID number have a bound phone and a
  mobile signing certificate;
* ``sign --id … --data TEXT [--mode push|qr] [--wait SECONDS]``: ask the phone to sign
  ``TEXT`` (PKCS#1, SHA-256), wait for the answer and verify the signature under the
  returned certificate (the chain is checked by ``python -m moica_auth check``).

The last line is one JSON object, ``{"ok", "code", "message", "message_en", …}``; exit
0 on success, 1 on a refusal, 2 on a usage error. The ID number is printed masked.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from moica_auth.exceptions import MoicaAuthError

__all__ = ["add_mobile_parser"]

ENV_URL = "MOICA_AUTH_MOBILE_API_URL"
ENV_SERVICE = "MOICA_AUTH_MOBILE_SERVICE_ID"
ENV_KEY = "MOICA_AUTH_MOBILE_AES_KEY"


def _client(args: argparse.Namespace) -> Any:
    from moica_auth.cli import UsageError
    from moica_auth.mobile.client import SpApiClient
    from moica_auth.mobile.settings import parse_mobile_settings

    raw = {
        "api_url": args.api_url or os.environ.get(ENV_URL, ""),
        "service_id": args.service_id or os.environ.get(ENV_SERVICE, ""),
        "aes_key": f"env:{ENV_KEY}",
    }
    try:
        return SpApiClient(parse_mobile_settings(raw))
    except MoicaAuthError as exc:
        raise UsageError(f"mobile API configuration: {exc.detail or exc.code}") from exc


def _id(args: argparse.Namespace) -> Any:
    from moica_auth.cli import UsageError
    from moica_auth.identity.id_number import parse_id_number

    try:
        return parse_id_number(args.id)
    except MoicaAuthError as exc:
        raise UsageError("--id: not a valid ID number") from exc


def _out(error: MoicaAuthError | None, **fields: Any) -> int:
    from moica_auth.cli import _emit

    return _emit(
        {
            "ok": error is None,
            "code": error.code if error else None,
            "message": error.message_in("zh-hant") if error else "成功",
            "message_en": error.message_in("en") if error else "ok",
            **({"detail": error.detail} if error and error.detail else {}),
            **fields,
        }
    )


def cmd_device_status(args: argparse.Namespace) -> int:
    number = _id(args)
    client = _client(args)
    try:
        status = client.device_status(id_num=number.value)
    except MoicaAuthError as exc:
        return _out(exc, id_number=number.masked())
    return _out(
        None,
        id_number=number.masked(),
        has_device=status.has_device,
        can_sign=status.can_sign,
    )


def cmd_sign(args: argparse.Namespace) -> int:
    from moica_auth.cli import _profile
    from moica_auth.mobile.client import Pending, SignInfo
    from moica_auth.signature import verify_signature

    number = _id(args)
    client = _client(args)
    try:
        info = SignInfo(sign_data=args.data, sign_type="PKCS#1", hash_algorithm="SHA256")
        if args.mode == "push":
            ticket = client.push(id_num=number.value, sign_info=info)
        else:
            ticket = client.get_ticket(id_num=number.value, op_mode="I-SCAN", sign_info=info)
    except MoicaAuthError as exc:
        return _out(exc, id_number=number.masked())
    shown: dict[str, Any] = {
        "id_number": number.masked(),
        "transaction_id": ticket.transaction_id,
    }
    if args.mode == "qr":
        shown["sp_ticket"] = ticket.sp_ticket
    deadline = time.monotonic() + args.wait
    try:
        while True:
            # The citizen needs a moment anyway; polling first after one interval keeps
            # to MOI's "at most every 4 s".
            time.sleep(client.settings.poll_interval)
            answer = client.poll(ticket)
            if not isinstance(answer, Pending):
                break
            if time.monotonic() >= deadline:
                return _out(None, state="pending", **shown)
        signed = verify_signature(
            content=args.data.encode("utf-8"),
            signature=answer.signed_response or "",
            signature_type="PKCS1",
            certificate=answer.cert,
        )
    except MoicaAuthError as exc:
        return _out(exc, **shown)
    return _out(
        None,
        state="signed",
        signature_valid=True,
        certificate=_profile(signed.certificate),
        **shown,
    )


def add_mobile_parser(sub: Any) -> None:
    """Register ``mobile device-status`` and ``mobile sign`` on the CLI's subparsers."""
    p_mobile = sub.add_parser("mobile", help="mobile citizen certificate SP API (admins)")
    mobile_sub = p_mobile.add_subparsers(
        dest="mobile_command", required=True, parser_class=type(p_mobile)
    )

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--id", required=True, help="the citizen's ID number")
        parser.add_argument("--api-url", help=f"default: ${ENV_URL}")
        parser.add_argument("--service-id", help=f"default: ${ENV_SERVICE}")

    p_status = mobile_sub.add_parser("device-status", help="LF-01: bound phone? certificate?")
    common(p_status)
    p_status.set_defaults(func=cmd_device_status)

    p_sign = mobile_sub.add_parser("sign", help="ask the phone to sign a text and verify it")
    common(p_sign)
    p_sign.add_argument("--data", required=True, help="the text to sign (≤ 1024 characters)")
    p_sign.add_argument("--mode", choices=("push", "qr"), default="push")
    p_sign.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the answer")
    p_sign.set_defaults(func=cmd_sign)
