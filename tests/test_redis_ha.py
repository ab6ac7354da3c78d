"""Replicated Redis: a real Sentinel deployment whose master is killed mid-stream of
logins, a real 3-master Redis Cluster, and the fence that stops a challenge taken on a
former master from being accepted again on the new one.

The deployments are started by :mod:`tests.redis_ha` on loopback ports (Debian's
redis-server, redis-sentinel and redis-cli); the tests skip only when those are missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.test import Client

from moica_auth.exceptions import ConfigurationError, StoreUnavailable
from moica_auth.revocation.crl import parse_crl
from moica_auth.revocation.store import RedisIndexStore
from moica_auth.services import get_services
from moica_auth.stores import RedisStore, redis_client_from_url, store_from_url
from moica_auth.testing.pki import TestPKI
from moica_auth.testing.responders import ResponderServer
from tests.django_fixtures import (
    Cards,
    app_clock,
    csrf_header,
    login_body,
    post_login,
    sign_challenge,
)
from tests.redis_ha import (
    DOWN_AFTER_MS,
    ClusterDeployment,
    SentinelDeployment,
    cluster_deployment,
    missing_binaries,
    sentinel_deployment,
)
from tests.redis_server import redis_server

pytestmark = pytest.mark.redis

#: The 503 codes the documentation lists for an unavailable store or status source.
DOCUMENTED_503 = {"store_unavailable", "revocation_unavailable", "login_unavailable"}
CRL_PATH = "/crl/ha-g3.crl"


def _need(*names: str) -> None:
    missing = missing_binaries(*names)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install redis-sentinel)")


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelDeployment]:
    _need("redis-server", "redis-sentinel")
    with sentinel_deployment() as deployment:
        yield deployment


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterDeployment]:
    _need("redis-server", "redis-cli")
    with cluster_deployment() as deployment:
        yield deployment


# --- URL parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",  # no master name
        "redis+sentinel://127.0.0.1:26379/moica/0/extra",
        "redis+sentinel://127.0.0.1:26379/moica/zero",
        "redis+sentinel://127.0.0.1:notaport/moica",
        "redis+sentinel://127.0.0.1:70000/moica",
        "redis+sentinel://:pw@/moica",
        "redis+cluster://127.0.0.1:7000,:7001",
        "redis+sentinel://127.0.0.1/moica?fence=maybe",
        "memcached://127.0.0.1:11211",
    ],
)
def test_bad_replicated_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        RedisStore.from_url(url)
    # The URL may carry a password: it is never echoed.
    assert "pw" not in str(exc.value)


def test_sentinel_url_parts_reach_redis_py() -> None:
    client = redis_client_from_url(
        "rediss+sentinel://user:s%40cret@10.0.0.1:26380,[::1]/portal/3?sentinel_password=x"
    )
    pool: Any = client.connection_pool
    assert pool.service_name == "portal"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "s@cret"
    assert pool.connection_kwargs["username"] == "user"
    manager = pool.sentinel_manager
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in manager.sentinels
    ]
    assert hosts == [("10.0.0.1", 26380), ("::1", 26379)]
    assert manager.sentinels[0].connection_pool.connection_kwargs["password"] == "x"
    fenced = RedisStore.from_url("redis+sentinel://127.0.0.1/portal")
    assert fenced.fenced
    assert not RedisStore.from_url("redis+sentinel://127.0.0.1/portal?fence=no").fenced
    assert not RedisStore.from_url("redis://127.0.0.1/0").fenced
    assert RedisStore.from_url("redis://127.0.0.1/0?fence=yes").fenced


# --- the fence, deterministically ---------------------------------------------------------


def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_challenge_taken_on_a_former_master_is_not_taken_again() -> None:
    """Asynchronous replication can lose the DEL of a taken challenge in a failover.

    Reproduced exactly: the replica is promoted by hand (REPLICAOF NO ONE) after the
    challenge reached it and before the master's take did. Unfenced, the new master
    hands the challenge out a second time; fenced, it reads as absent.
    """
    with redis_server() as master_url, redis_server() as replica_url:
        master = redis.Redis.from_url(master_url)
        replica = redis.Redis.from_url(replica_url)
        port = master.connection_pool.connection_kwargs["port"]
        replica.replicaof("127.0.0.1", port)
        for fence in (False, True):
            query = "?fence=yes" if fence else ""
            old = RedisStore.from_url(master_url + query, prefix="fence:")
            new = RedisStore.from_url(replica_url + query, prefix="fence:")
            key = f"challenge:{fence}"
            assert old.add(key, b"record", ttl=60)
            _until(lambda k=key: replica.exists("fence:" + k) == 1)  # reached the replica
            replica.replicaof("NO", "ONE")  # promoted; the master keeps serving
            assert old.take(key) == b"record"  # first login, on the old master
            second = new.take(key)  # replayed against the promoted replica
            if fence:
                assert second is None
                assert new.get(key) is None
                # A fresh write on the new master is stamped with its own id.
                assert new.add(key, b"fresh", ttl=60)
                assert new.take(key) == b"fresh"
            else:
                assert second == b"record"  # the double acceptance the fence prevents
            replica.replicaof("127.0.0.1", port)
            _until(lambda: replica.info("replication").get("master_link_status") == "up")
        master.close()
        replica.close()


# --- Sentinel failover mid-stream of logins ---------------------------------------------


@pytest.fixture(scope="module")
def responder() -> Iterator[ResponderServer]:
    with ResponderServer(clock=app_clock) as server:
        yield server


@pytest.fixture
def store_kind() -> str:
    return "redis"


def _serial(card: Any) -> int:
    return int(card.signing.certificate.serial_number)


def _configure(
    moica_settings: Any, responder: ResponderServer, pki: TestPKI, cards: Cards, clock: Any
) -> str:
    ca = pki.moica("G3")
    crl = pki.make_crl(
        issuer=ca,
        this_update=clock(),
        number=2026010300,
        revoked=[(_serial(cards.alice_renewed), clock(), x509.ReasonFlags.key_compromise)],
    )
    url = responder.publish_crl(CRL_PATH, crl.public_bytes(serialization.Encoding.DER))
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["crl"],
        "crl_urls": [url],
        "crl_urls_from_issuers": False,
        "intermediates": "never",
    }
    moica_settings.MOICA_AUTH_RATE_LIMIT = {
        "cert_failures": 100_000,
        "ip_failures": 100_000,
        "ip_challenges": 100_000,
    }
    refresher = get_services().revocation.sources["crl"].refresher
    assert refresher.refresh(url).ok
    return url


class Stream:
    """Logins one after another; every answer is checked as it comes."""

    def __init__(self, cards: Cards) -> None:
        self.cards = cards
        self.accepted: list[tuple[Client, dict[str, Any]]] = []
        self.codes: dict[str, int] = {}

    def _check(self, response: Any) -> str:
        data = response.json() if response["Content-Type"].startswith("application/json") else {}
        code = "ok" if response.status_code == 200 else str(data.get("code"))
        if response.status_code >= 500:
            assert response.status_code == 503 and code in DOCUMENTED_503, (
                response.status_code,
                response.content,
            )
        self.codes[code] = self.codes.get(code, 0) + 1
        return code

    def login(self, card: Any) -> str:
        client = Client()
        client.get("/moica/session/")
        response = client.post("/moica/challenge/", headers=csrf_header(client))
        if response.status_code != 200:
            return self._check(response)
        challenge = response.json()
        body = login_body(challenge, sign_challenge(card, challenge))
        code = self._check(post_login(client, body))
        if card is self.cards.alice_renewed:
            assert code != "ok", "a revoked certificate was accepted"
        if code == "ok":
            self.accepted.append((client, body))
            # The same answer again, at once: never a second login.
            assert self.replay(client, body) != "ok"
        return code

    def replay(self, client: Client, body: dict[str, Any]) -> str:
        return self._check(post_login(client, body))


@pytest.mark.django_db
def test_sentinel_failover_mid_stream_of_logins(
    sentinel: SentinelDeployment,
    moica_settings: Any,
    responder: ResponderServer,
    pki: TestPKI,
    cards: Cards,
    clock: Any,
) -> None:
    moica_settings.MOICA_AUTH_REDIS_URL = sentinel.url
    crl_url = _configure(moica_settings, responder, pki, cards, clock)
    stream = Stream(cards)
    for i in range(12):
        assert stream.login(cards.alice_renewed if i % 3 == 2 else cards.alice) in (
            "ok",
            "certificate_revoked",
        )
    before = list(stream.accepted)
    assert len(before) == 8

    # One login's challenge is issued before the kill and answered after it.
    pending = Client()
    pending.get("/moica/session/")
    issued = pending.post("/moica/challenge/", headers=csrf_header(pending)).json()

    old = sentinel.kill_master()
    killed_at = time.monotonic()
    resumed_at: float | None = None
    during: list[str] = []
    while time.monotonic() - killed_at < 30:
        code = stream.login(cards.alice)
        during.append(code)
        if code == "ok":
            resumed_at = time.monotonic()
            break
        assert code in DOCUMENTED_503 | {"challenge_unknown"}, code
        time.sleep(0.05)
    assert resumed_at is not None, f"logins did not resume: {during[-5:]}"
    # Failover time (down-after plus election) plus a few seconds.
    assert resumed_at - killed_at < DOWN_AFTER_MS / 1000 + 10
    assert "store_unavailable" in during  # the switch was seen, and refused closed
    assert sentinel.wait_for_new_master(old, timeout=10) != old

    # The challenge issued on the former master: unknown, never accepted.
    body = login_body(issued, sign_challenge(cards.alice, issued))
    assert stream.replay(pending, body) == "challenge_unknown"
    # Every answer accepted before the failover, replayed on the new master: refused.
    for client, body in before:
        assert stream.replay(client, body) != "ok"

    # The CRL index follows the failover (or is refreshed, then read).
    index = get_services().revocation.sources["crl"].refresher
    kid_scopes = RedisIndexStore.from_url(sentinel.url).all_info()
    if not kid_scopes:
        assert index.refresh(crl_url).ok
        kid_scopes = RedisIndexStore.from_url(sentinel.url).all_info()
    assert [info.number for info in kid_scopes] == [2026010300]
    for i in range(9):
        code = stream.login(cards.alice_renewed if i % 3 == 2 else cards.alice)
        assert code == ("certificate_revoked" if i % 3 == 2 else "ok")
    assert not [
        code
        for code in stream.codes
        if code
        not in DOCUMENTED_503
        | {"ok", "certificate_revoked", "challenge_unknown", "challenge_reused"}
    ], stream.codes


# --- Cluster ----------------------------------------------------------------------------


def test_cluster_store_every_operation(cluster: ClusterDeployment) -> None:
    store = RedisStore.from_url(cluster.url, prefix="ha-cluster:")
    assert store.fenced
    store.ping()
    for i in range(40):  # spread over the three masters' slots
        key = f"k{i}"
        assert store.add(key, b"v", ttl=30)
        assert not store.add(key, b"w", ttl=30)
        assert store.get(key) == b"v"
        ttl = store.ttl(key)
        assert ttl is not None and 0 < ttl <= 30
        assert store.take(key) == b"v"
        assert store.take(key) is None
        assert store.incr(f"n{i}", ttl=30) == 1
        assert store.incr(f"n{i}", ttl=30) == 2
        store.set(key, b"x")
        store.delete(key)
        assert store.get(key) is None
    store.set("left", b"1", ttl=30)
    store.clear()
    assert store.get("left") is None and store.incr("n0", ttl=30) == 1
    store.clear()


def test_cluster_crl_index_keeps_one_slot(cluster: ClusterDeployment, pki: TestPKI) -> None:
    index = RedisIndexStore.from_url(cluster.url, prefix="ha:crl")
    assert index.prefix == "{ha:crl}"
    ca = pki.moica("G3")
    for number in (1, 2):
        der = pki.make_crl(
            issuer=ca,
            number=number,
            revoked=[(n, pki.now, None) for n in range(1, 50 * number)],
        ).public_bytes(serialization.Encoding.DER)
        parsed = parse_crl(der, issuers=[ca.certificate], at=pki.now, url="http://crl.test/g3")
        assert index.replace(parsed)
    assert not index.replace(parsed)  # same number: refused
    ((info, packed),) = index.read(parsed.issuer_key_id, 60)
    assert info.number == 2 and packed is not None
    assert index.read(parsed.issuer_key_id, 10_000)[0][1] is None
    assert index.info_for_url("http://crl.test/g3") is not None
    with index.lock("refresh", 5) as held:
        assert held
        with index.lock("refresh", 5) as again:
            assert not again
    # Every key of the index in one hash slot, so the swap script could run at all.
    client: Any = index.client
    keys = list(client.scan_iter(match="{ha:crl}*", target_nodes=client.PRIMARIES))
    assert {client.keyslot(k) for k in keys} == {client.keyslot("{ha:crl}")}
    assert len([k for k in keys if b":gen:" in k]) == 1  # the old generation is gone


def test_cluster_store_unavailable_when_no_node_answers() -> None:
    store = store_from_url("redis+cluster://127.0.0.1:1", prefix="gone:")
    with pytest.raises(StoreUnavailable):
        store.get("x")


@pytest.mark.django_db
def test_cluster_logins_use_every_key_family(
    cluster: ClusterDeployment,
    moica_settings: Any,
    responder: ResponderServer,
    pki: TestPKI,
    cards: Cards,
    clock: Any,
) -> None:
    """Challenges, abuse counters, the OCSP cache and the CRL index, all on the Cluster."""
    moica_settings.MOICA_AUTH_REDIS_URL = cluster.url
    _configure(moica_settings, responder, pki, cards, clock)
    ca = pki.moica("G3")
    responder.add_ocsp(issuer=ca.certificate, signer=ca, path="/ocsp-ha")
    revoked_at = clock()
    responder.set_status(
        _serial(cards.alice_renewed),
        "revoked",
        revoked_at=revoked_at,
        reason="key_compromise",
        path="/ocsp-ha",
    )
    moica_settings.MOICA_AUTH_REVOCATION = {
        **moica_settings.MOICA_AUTH_REVOCATION,
        "order": ["ocsp", "crl"],
        "ocsp_url": responder.url_for("/ocsp-ha"),
    }
    stream = Stream(cards)
    for i in range(6):
        code = stream.login(cards.alice_renewed if i % 2 else cards.alice)
        assert code == ("certificate_revoked" if i % 2 else "ok")
    client: Any = redis_client_from_url(cluster.url)
    prefix = moica_settings.MOICA_AUTH_STORE_PREFIX
    keys = {k.decode() for k in client.scan_iter(match=prefix + "*", target_nodes=client.PRIMARIES)}
    families = {key[len(prefix) :].split(":", 1)[0] for key in keys}
    assert {"challenge-issued", "rl", "ocsp"} <= families, families
    assert RedisIndexStore.from_url(cluster.url).all_info()  # the CRL index, on its slot
    # Keys of the store spread over more than one master: it is a real cluster run.
    assert len({client.keyslot(k) for k in keys}) > 1


@pytest.mark.django_db
def test_check_warns_when_the_fence_is_off(
    sentinel: SentinelDeployment, moica_settings: Any
) -> None:
    from moica_auth.checks import check_settings

    def ids() -> set[str]:
        return {m.id for m in check_settings() if m.id}

    moica_settings.MOICA_AUTH_REDIS_URL = sentinel.url
    assert "moica_auth.W030" not in ids() and "moica_auth.E005" not in ids()
    moica_settings.MOICA_AUTH_REDIS_URL = sentinel.url + "?fence=no"
    assert "moica_auth.W030" in ids()


def test_structured_setting_becomes_the_same_url() -> None:
    from moica_auth.stores import redis_url_from_mapping

    url = redis_url_from_mapping(
        {
            "sentinels": [("10.0.0.1", 26380), ("::1", 26379)],
            "master": "portal",
            "db": 3,
            "username": "user",
            "password": "s@cret/x",
            "sentinel_password": "p&q",
            "tls": True,
        }
    )
    assert url.startswith("rediss+sentinel://user:s%40cret%2Fx@10.0.0.1:26380,[::1]:26379/")
    client: Any = redis_client_from_url(url)
    pool = client.connection_pool
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("portal", 3)
    assert pool.connection_kwargs["password"] == "s@cret/x"
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "p&q"
    cluster = redis_url_from_mapping({"cluster": [("h1", 7000), ("h2", 7001)], "fence": False})
    assert cluster == "redis+cluster://h1:7000,h2:7001?fence=no"
    assert not RedisStore.from_url(cluster).fenced


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"sentinels": [("h", 1)], "cluster": [("h", 2)], "master": "m"},
        {"sentinels": [("h", 1)]},  # no master
        {"sentinels": [("h", "1")], "master": "m"},
        {"sentinels": [], "master": "m"},
        {"sentinels": [("h", 1)], "master": "m", "db": -1},
        {"cluster": [("h", 1)], "pasword": "typo"},
        {"cluster": ["h:1"]},
    ],
)
def test_structured_setting_refuses_bad_shapes(config: dict[str, Any]) -> None:
    from moica_auth.stores import redis_url_from_mapping

    with pytest.raises(ConfigurationError):
        redis_url_from_mapping(config)


@pytest.mark.django_db
def test_structured_setting_reaches_the_stores(
    sentinel: SentinelDeployment, moica_settings: Any
) -> None:
    from moica_auth.conf import app_settings

    moica_settings.MOICA_AUTH_REDIS_URL = {
        "sentinels": [("127.0.0.1", s.port) for s in sentinel.sentinels],
        "master": "moica",
    }
    assert app_settings.REDIS_URL is not None
    store = get_services().store
    assert isinstance(store, RedisStore) and store.fenced
    store.set("structured", b"1", ttl=5)
    assert store.get("structured") == b"1"
