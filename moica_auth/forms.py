"""Parsing of the login request: body limits, content types, duplicate keys, field shapes.

:func:`parse_login` turns a ``POST login/`` request into a :class:`LoginInput` (shape
only, not meaning) or raises :class:`~moica_auth.exceptions.MalformedRequest` /
:class:`~moica_auth.exceptions.RequestTooLarge` / :class:`~moica_auth.exceptions.FieldRequired`.
Every exception the JSON and form parsers can raise on hostile input (the int-conversion
limit, nesting depth, too many fields, a broken multipart body, an unknown charset) is
turned into one of those: bad input is a 4xx, never a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from moica_auth.conf import app_settings
from moica_auth.exceptions import FieldRequired, MalformedRequest, RequestTooLarge
from moica_auth.login import PERSONAL_FIELDS, HipkiCardSource, PersonalInput

__all__ = ["BODY_ERRORS", "LoginInput", "optional_text", "parse_fields", "parse_login", "read_body"]

_SIGNATURE_TYPES = ("PKCS7", "PKCS1")
_TEXT_FIELDS = (
    "signature",
    "signature_type",
    "certificate",
    "card_sn",
    "nonce",
    "id_number",
    "birth_date",
    "next",
)

#: What reading ``request.POST`` / ``request.body`` may raise on a hostile body:
#: RequestDataTooBig and TooManyFieldsSent (SuspiciousOperation), an unknown charset or
#: an unreadable form (BadRequest), a broken multipart body, an aborted upload (OSError),
#: a charset that cannot decode the bytes (UnicodeError), a codec name Python does not
#: know (LookupError).
BODY_ERRORS: tuple[type[BaseException], ...] = (
    SuspiciousOperation,
    BadRequest,
    MultiPartParserError,
    OSError,
    UnicodeError,
    LookupError,
)


@dataclass(frozen=True)
class LoginInput:
    """The login request, checked for shape (not yet for meaning)."""

    # repr=False: a repr of the request (a log line, a debug page, an error tracker) must
    # never show the full ID number, the birth date or the whole signature.
    signature: str = field(repr=False)
    signature_type: str
    certificate: str | None = field(repr=False)
    card_sn: str | None
    nonce: str
    id_number: str | None = field(repr=False)
    birth_date: str | None = field(repr=False)
    next: str | None
    fields: frozenset[str]

    def card_source(self) -> HipkiCardSource:
        """The HiPKI card token of this request as a login credential source."""
        return HipkiCardSource(
            signature=self.signature,
            signature_type=self.signature_type,
            certificate=self.certificate,
            card_sn=self.card_sn,
            nonce=self.nonce,
        )

    def personal(self) -> PersonalInput:
        return PersonalInput(
            id_number=self.id_number, birth_date=self.birth_date, requested=self.fields
        )


def optional_text(data: Mapping[str, Any], name: str, *, limit: int = 64) -> str | None:
    """A short optional string field of a JSON body: ``None`` when absent or empty,
    stripped otherwise; anything else (a number, a list, too long) is a 400."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise MalformedRequest(f"{name} must be a short string")
    return value.strip()


def parse_fields(value: object) -> frozenset[str]:
    """``fields`` asked for by a step-up page: a list, or comma-separated text."""
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise MalformedRequest("fields must be a list of names")
    unknown = set(names) - set(PERSONAL_FIELDS)
    if unknown:
        raise MalformedRequest("unknown personal field requested")
    return frozenset(names)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a key given twice (RFC 8259 §4: names SHOULD be
    unique; parsers disagree on which one wins, so a proxy or WAF in front of the site
    could see another request than this view). Like a form field sent twice."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedRequest("a JSON member was sent more than once")
    return out


def read_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a dict: a JSON object, or a form without files and without
    a field sent twice."""
    limit = app_settings.MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise MalformedRequest("invalid Content-Length") from None
    if length > limit:
        raise RequestTooLarge(f"body of {length} bytes exceeds {limit}")
    content_type = request.content_type
    try:
        if content_type == "application/json":
            body = request.body
            if len(body) > limit:
                raise RequestTooLarge(f"body exceeds {limit} bytes")
            try:
                data = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
            except (ValueError, RecursionError):
                # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer
                # over Python's int-conversion limit (4,300 digits).
                raise MalformedRequest("body is not valid JSON") from None
            if not isinstance(data, dict):
                raise MalformedRequest("body must be a JSON object")
            return data
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            if request.FILES:
                raise MalformedRequest("files are not accepted")
            out: dict[str, Any] = {}
            for key in request.POST:
                values = request.POST.getlist(key)
                if len(values) != 1:
                    raise MalformedRequest("a field was sent more than once")
                out[key] = values[0]
            return out
    except BODY_ERRORS as exc:
        raise MalformedRequest(f"unreadable body: {type(exc).__name__}") from None
    raise MalformedRequest("content type must be application/json or a form")


def parse_login(request: HttpRequest) -> LoginInput:
    """Check the login request's shape; raise ``MalformedRequest``/``FieldRequired``."""
    data = read_body(request)
    values: dict[str, str | None] = {}
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is None or value == "":
            values[name] = None
        elif isinstance(value, str):
            values[name] = value.strip()
        else:
            raise MalformedRequest(f"{name} must be a string")
    if values["signature"] is None:
        raise FieldRequired("signature is required", fields=["signature"])
    if values["nonce"] is None:
        raise FieldRequired("nonce is required", fields=["nonce"])
    signature_type = (values["signature_type"] or "PKCS7").upper()
    if signature_type not in _SIGNATURE_TYPES:
        raise MalformedRequest("signature_type must be PKCS7 or PKCS1")
    if signature_type == "PKCS1" and values["certificate"] is None:
        raise FieldRequired("a PKCS1 signature needs the certificate", fields=["certificate"])
    return LoginInput(
        signature=values["signature"],
        signature_type=signature_type,
        certificate=values["certificate"],
        card_sn=values["card_sn"],
        nonce=values["nonce"],
        id_number=values["id_number"],
        birth_date=values["birth_date"],
        next=values["next"],
        fields=parse_fields(data.get("fields")),
    )
