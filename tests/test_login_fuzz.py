"""A seeded mutation fuzz of ``POST /moica/login/`` through the real Django stack (issue
#8): 300 mutated bodies built from valid, freshly signed tokens. Never a 5xx; never a
login unless the mutated body still carries a token equivalent to the valid one."""

from __future__ import annotations

import base64
import binascii
import json
import random
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.test import Client

from tests.django_fixtures import (
    csrf_header,
    get_challenge,
    login_body,
    sign_challenge,
)

pytestmark = pytest.mark.django_db

SEED = 20261205
ROUNDS = 300
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "text/plain",
]
TOKEN_FIELDS = ("signature", "certificate", "nonce", "signature_type", "card_sn")


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a bit
            i = min(at, len(data) - 1)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # delete a range
            del data[at : at + rng.randint(1, 64)]
        elif op == 2:  # insert hostile bytes
            junk = rng.choice(
                [b"\x00", b"\\u0000", b"9" * 5000, b"[" * 3000, b'"', b",", b"}", b"\xff\xfe", b" "]
            )
            data[at:at] = junk
        elif op == 3:  # duplicate a range
            data[at:at] = data[at : at + rng.randint(1, 200)]
        elif op == 4 and data:  # change one byte to a random one
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op == 5:  # truncate
            del data[at:]
        else:  # swap two ranges' contents
            other = rng.randrange(len(data) + 1)
            data[at:at], data[other:other] = b"", b""
    return bytes(data)


def _der(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def equivalent(mutated: bytes, original: dict[str, Any]) -> bool:
    """Whether ``mutated`` still is the valid token: the same signature, nonce and type,
    and the same certificate or card number when given (JSON whitespace aside)."""
    try:
        data = json.loads(mutated.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict):
        return False
    if _der(data.get("signature")) != _der(original["signature"]):
        return False
    if data.get("nonce") != original["nonce"]:
        return False
    if str(data.get("signature_type") or "PKCS7").upper() != original["signature_type"]:
        return False
    if data.get("certificate") not in (None, "") and _der(data["certificate"]) != _der(
        original["certificate"]
    ):
        return False
    return data.get("card_sn") in (None, "", original.get("card_sn"))


def test_mutated_login_posts_never_5xx_and_never_log_in_falsely(moica_settings, cards):
    # Limits out of the way: this is about parsing and verification, not lock-outs.
    moica_settings.MOICA_AUTH_RATE_LIMIT = {
        "cert_failures": 10**6,
        "ip_failures": 10**6,
        "ip_challenges": 10**6,
    }
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    logins = 0
    for round_ in range(ROUNDS):
        client = Client()
        challenge = get_challenge(client)
        signed = sign_challenge(cards.alice, challenge)
        original = login_body(challenge, signed)
        raw = json.dumps(original).encode()
        mutated = mutate(rng, raw)
        content_type = "application/json" if round_ % 3 else rng.choice(CONTENT_TYPES)
        # generic(): the bytes as they are (post() would re-encode them in the charset).
        response = client.generic(
            "POST", "/moica/login/", mutated, content_type=content_type, headers=csrf_header(client)
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (round_, response.status_code, response.content[:200])
        logged_in = AUTH_SESSION_KEY in client.session
        if response.status_code == 200 or logged_in:
            logins += 1
            # JSON is UTF-8 (RFC 8259 §8.1): a charset parameter does not change the bytes.
            json_type = content_type.split(";")[0] == "application/json"
            assert json_type and equivalent(mutated, original), (
                round_,
                mutated[:300],
            )
        else:
            assert response["Content-Type"].startswith("application/json"), round_
    # The mutator is not so gentle that everything passes, nor so harsh that nothing does.
    assert logins < ROUNDS
    assert sum(n for status, n in statuses.items() if 400 <= status < 500) > ROUNDS // 2
