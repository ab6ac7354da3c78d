"""The demo's Redis variant (``MOICA_AUTH_REDIS_URL=… make demo``), over plain HTTP.

The demo runs in a subprocess against the suite's real redis-server; the test plays the
browser client's part with ``requests`` (session → challenge → the virtual component's
``/sign`` → login), so it needs no browser. It shows that challenges, rate-limit counters,
OCSP answers and the CRL index then live in Redis, and that revocation still refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from example_site.citizens import DemoCitizen, citizen
from tests.browser.conftest import Demo, run_demo

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_redis_url(redis_url: str) -> str:
    # A database of its own (redis://host:port/<db>), emptied first, so keys written by
    # other tests cannot mix in.
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def redis_demo(demo_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    state: Path = tmp_path_factory.mktemp("demo-redis-state")
    with run_demo(state, f"--redis-url={demo_redis_url}") as running:
        yield running


def _login(demo: Demo, person: DemoCitizen, **fields: str) -> tuple[int, dict[str, Any]]:
    """One card login as the browser client does it (``docs/client.md``)."""
    demo.insert(person.slug)
    site = requests.Session()
    site.get(f"{demo.url}/moica/session/", timeout=10).raise_for_status()
    headers = {"X-CSRFToken": site.cookies["csrftoken"], "Origin": demo.url}
    challenge = site.post(f"{demo.url}/moica/challenge/", headers=headers, timeout=10).json()
    # What the popup sends to the component: same-origin, naming the site it serves.
    signed = requests.post(
        f"{demo.card_url}/sign",
        json={
            "func": "MakeSignature",
            "signatureType": "PKCS7",
            "tbs": challenge["tbs"],
            "tbsEncoding": "NONE",
            "hashAlgorithm": "SHA256",
            "withCardSN": "true",
            "pin": person.pin,
            "nonce": challenge["nonce"],
            "domain": "127.0.0.1",
        },
        headers={"Origin": demo.card_url},
        timeout=10,
    ).json()
    assert signed["ret_code"] == 0
    answer = site.post(
        f"{demo.url}/moica/login/",
        json={
            "signature": signed["signature"],
            "signature_type": "PKCS7",
            "certificate": signed["certb64"],
            "card_sn": signed.get("cardSN"),
            "nonce": challenge["nonce"],
            **fields,
        },
        headers={**headers, "X-CSRFToken": site.cookies["csrftoken"], "Accept": "application/json"},
        timeout=30,
    )
    return answer.status_code, answer.json()


def test_redis_variant_logs_in_and_keeps_its_state_in_redis(
    redis_demo: Demo, demo_redis_url: str
) -> None:
    person = citizen("g2-card")
    status, answer = _login(
        redis_demo, person, id_number=person.id_number, birth_date=person.birth_date_roc
    )
    assert (status, answer["ok"]) == (200, True)
    client = redis.Redis.from_url(demo_redis_url, decode_responses=True)
    keys = {str(k) for k in client.keys("moica:*")}
    assert any(k.startswith("moica:ocsp:") for k in keys), keys
    assert any(k.startswith("moica:crl") for k in keys), keys


def test_redis_variant_refuses_suspended_and_revoked_cards(redis_demo: Demo) -> None:
    for slug, code in (("suspended", "certificate_suspended"), ("revoked", "certificate_revoked")):
        person = citizen(slug)
        status, answer = _login(redis_demo, person, id_number=person.id_number)
        assert status == 403
        assert answer["code"] == code
