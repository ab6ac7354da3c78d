"""CRL verification, the CRL source, the HTTP fetcher and the refresher (RFC 5280 §5, §6.3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier

from moica_auth.exceptions import (
    ConfigurationError,
    CrlInvalid,
    MoicaAuthError,
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.crl import (
    COMPLETE_SCOPE,
    CrlSource,
    HttpCrlFetcher,
    decode_entry,
    key_id,
    parse_crl,
)
from moica_auth.revocation.refresh import CrlRefresher
from moica_auth.revocation.store import MemoryIndexStore
from moica_auth.testing.pki import CitizenCard, TestPKI
from moica_auth.validation.trust import TrustStore
from tests.crl_fixtures import DAY, CrlHttpServer, crl_http, der, pki

__all__ = ["crl_http", "pki"]

R = x509.ReasonFlags


@pytest.fixture(scope="module")
def cards(pki: TestPKI) -> dict[str, CitizenCard]:
    base = pki.crl_base_url
    return {
        # Partition 10-31 (the default CRLDP: partition + complete).
        "g3_a": pki.issue_card(generation="G3", label="crl/g3/a"),
        "g3_b": pki.issue_card(generation="G3", label="crl/g3/b"),
        # Another partition of the same CA.
        "g3_y": pki.issue_card(
            generation="G3",
            label="crl/g3/y",
            crl_urls=[f"{base}/MOICA-G3-11-01.crl", f"{base}/MOICA-G3-complete.crl"],
        ),
        "g2_a": pki.issue_card(generation="G2", label="crl/g2/a"),
    }


def _parse(pki: TestPKI, crl: x509.CertificateRevocationList, **kw):
    kw.setdefault("issuers", pki.intermediates)
    kw.setdefault("at", pki.now)
    return parse_crl(der(crl), **kw)


def _code(exc: pytest.ExceptionInfo[MoicaAuthError]) -> str:
    return exc.value.code


# --- parse_crl ------------------------------------------------------------------------


def test_parses_entries_reasons_and_metadata(pki: TestPKI) -> None:
    t = pki.now - DAY
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[(11, t, R.key_compromise), (12, t, R.certificate_hold), (13, t, None)],
        number=2026010112,
    )
    parsed = _parse(pki, crl)
    assert parsed.issuer_key_id == key_id(pki.moica_g3.certificate)
    assert parsed.number == 2026010112
    assert parsed.scope == COMPLETE_SCOPE
    assert parsed.next_update == pki.now + DAY
    assert len(parsed.entries) == 3
    assert decode_entry(parsed.entries[11]).reason == "key_compromise"
    assert decode_entry(parsed.entries[11]).revoked_at == t
    assert decode_entry(parsed.entries[12]).is_hold
    assert decode_entry(parsed.entries[13]).reason is None


def test_signature_is_verified_over_the_raw_tbs_like_cryptography(pki: TestPKI) -> None:
    crl = pki.make_crl(issuer=pki.moica_g2, revoked=[(5, pki.now, None)])
    assert crl.is_signature_valid(pki.moica_g2.private_key.public_key())
    assert _parse(pki, crl).issuer_key_id == key_id(pki.moica_g2.certificate)


def test_rejects_wrong_signature(pki: TestPKI) -> None:
    other = pki.key("crl-test/other-signer")
    crl = pki.make_crl(issuer=pki.moica_g3, signing_key=other)
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"
    assert "signature" in exc.value.detail


def test_rejects_crl_of_another_issuer_key(pki: TestPKI) -> None:
    # Same DN (MOICA G2 and G3), different key: the AKI and the signature tell them apart.
    crl = pki.make_crl(issuer=pki.moica_g2)
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl, issuers=[pki.moica_g3.certificate])
    assert _code(exc) == "crl_invalid"


def test_rejects_unknown_issuer_name(pki: TestPKI) -> None:
    crl = pki.make_crl(issuer=pki.grca_g3)
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"


def test_rejects_unknown_critical_crl_extension(pki: TestPKI) -> None:
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    crl = pki.make_crl(issuer=pki.moica_g3, extra_extensions=[(unknown, True)])
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"
    assert "critical" in exc.value.detail
    # The same extension, non-critical, may be ignored (RFC 5280 §5.2).
    lenient = pki.make_crl(issuer=pki.moica_g3, extra_extensions=[(unknown, False)])
    assert _parse(pki, lenient).number == 2026010100


def _crl_with_entry_extension(pki: TestPKI, ext: x509.ExtensionType, critical: bool):
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(77)
        .revocation_date(pki.now - DAY)
        .add_extension(ext, critical=critical)
        .build()
    )
    ca = pki.moica_g3
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(pki.now)
        .next_update(pki.now + DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_revoked_certificate(entry)
    )
    from cryptography.hazmat.primitives import hashes

    return builder.sign(ca.private_key, hashes.SHA256())


def test_rejects_unknown_critical_entry_extension(pki: TestPKI) -> None:
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x05\x00")
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, _crl_with_entry_extension(pki, unknown, True))
    assert _code(exc) == "crl_invalid"
    assert 77 in _parse(pki, _crl_with_entry_extension(pki, unknown, False)).entries


def test_rejects_indirect_crl_entries(pki: TestPKI) -> None:
    issuer = x509.CertificateIssuer([x509.DirectoryName(pki.grca_g3.certificate.subject)])
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, _crl_with_entry_extension(pki, issuer, True))
    assert _code(exc) == "crl_invalid"


def test_invalidity_date_entry_extension_is_accepted(pki: TestPKI) -> None:
    ext = x509.InvalidityDate(pki.now - 2 * DAY)
    assert 77 in _parse(pki, _crl_with_entry_extension(pki, ext, False)).entries


def test_rejects_delta_crl(pki: TestPKI) -> None:
    crl = pki.make_crl(issuer=pki.moica_g3, extra_extensions=[(x509.DeltaCRLIndicator(1), True)])
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"
    assert "delta" in exc.value.detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"indirect_crl": True},
        {"only_some_reasons": frozenset({R.key_compromise})},
        {"only_contains_attribute_certs": True},
    ],
    ids=["indirect", "only_some_reasons", "attribute_certs"],
)
def test_rejects_unsupported_issuing_distribution_points(pki: TestPKI, kwargs) -> None:
    fields: dict[str, Any] = {
        "full_name": [x509.UniformResourceIdentifier("http://x.test/p.crl")],
        "relative_name": None,
        "only_contains_user_certs": False,
        "only_contains_ca_certs": False,
        "only_some_reasons": None,
        "indirect_crl": False,
        "only_contains_attribute_certs": False,
    }
    fields.update(kwargs)
    if kwargs.get("only_contains_attribute_certs"):
        fields["full_name"] = None
    idp = x509.IssuingDistributionPoint(**fields)
    crl = pki.make_crl(issuer=pki.moica_g3, extra_extensions=[(idp, True)])
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"


def test_rejects_crl_from_the_future(pki: TestPKI) -> None:
    crl = pki.make_crl(issuer=pki.moica_g3, this_update=pki.now + timedelta(hours=1))
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"


def test_rejects_truncated_and_garbage_der(pki: TestPKI) -> None:
    body = der(pki.make_crl(issuer=pki.moica_g3, revoked=[(1, pki.now, None)]))
    for broken in (body[:-10], body + b"\x00", b"\x30\x03abc", b"not a crl", b""):
        with pytest.raises(CrlInvalid) as exc:
            parse_crl(broken, issuers=pki.intermediates, at=pki.now)
        assert _code(exc) == "crl_invalid"


def test_remove_from_crl_entries_are_not_indexed(pki: TestPKI) -> None:
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[(1, pki.now, R.remove_from_crl), (2, pki.now, R.superseded)],
    )
    assert set(_parse(pki, crl).entries) == {2}


def test_separate_crl_signing_certificate(pki: TestPKI) -> None:
    # RFC 5280 §6.3.3 (f): a CRL signed by another key with the CA's DN, issued by the
    # same parent, speaks for that CA.
    signer_key = pki.key("crl-test/separate-signer")
    signer = pki.issue_leaf(
        issuer=pki.grca_g3,
        subject=pki.moica_g3.certificate.subject,
        label="crl-test/separate-signer",
        private_key=signer_key,
        extensions=[
            (x509.KeyUsage(False, False, False, False, False, False, True, False, False), True),
            (x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False),
            (
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    pki.grca_g3.certificate.public_key()  # type: ignore[arg-type]
                ),
                False,
            ),
        ],
    )
    crl = pki.make_crl(issuer=signer, revoked=[(9, pki.now, None)])
    parsed = _parse(pki, crl, signers=[signer.certificate])
    assert parsed.issuer_key_id == key_id(pki.moica_g3.certificate)
    assert parsed.signer_key_id == key_id(signer.certificate)
    with pytest.raises(CrlInvalid):
        _parse(pki, crl)  # the signer is unknown


# --- CrlSource ------------------------------------------------------------------------


def _install(store: MemoryIndexStore, pki: TestPKI, crl: x509.CertificateRevocationList) -> None:
    assert store.replace(_parse(pki, crl), fetched_at=pki.now)


def _status(store, card: CitizenCard, at, **kw):
    source = CrlSource(store=store, **kw)
    return source.status(
        certificate=card.signing.certificate, issuer=card.issuer.certificate, at=at
    )


def test_good_revoked_and_suspended(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    t = pki.now - DAY
    a, b = cards["g3_a"].signing.certificate, cards["g3_b"].signing.certificate
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3,
            revoked=[
                (a.serial_number, t, R.key_compromise),
                (b.serial_number, t, R.certificate_hold),
            ],
        ),
    )
    revoked = _status(store, cards["g3_a"], pki.now)
    assert (revoked.status, revoked.reason, revoked.revoked_at) == ("revoked", "key_compromise", t)
    assert _status(store, cards["g3_b"], pki.now).status == "hold"
    assert _status(store, cards["g3_y"], pki.now).status == "good"


def test_hold_then_later_crl_without_entry_is_good_again(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    serial = cards["g3_b"].signing.certificate.serial_number
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3, revoked=[(serial, pki.now, R.certificate_hold)], number=10
        ),
    )
    assert _status(store, cards["g3_b"], pki.now).status == "hold"
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3, number=11, this_update=pki.now))
    assert _status(store, cards["g3_b"], pki.now).status == "good"


def test_g2_crl_never_answers_for_g3(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    g3 = cards["g3_a"].signing.certificate
    # The G2 CRL lists the G3 certificate's serial: it must not touch the G3 certificate.
    _install(
        store, pki, pki.make_crl(issuer=pki.moica_g2, revoked=[(g3.serial_number, pki.now, None)])
    )
    with pytest.raises(RevocationUnavailable) as exc:
        _status(store, cards["g3_a"], pki.now)
    assert _code(exc) == "revocation_unavailable"
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3))
    assert _status(store, cards["g3_a"], pki.now).status == "good"


def test_no_crl_is_unavailable(pki: TestPKI, cards) -> None:
    with pytest.raises(RevocationUnavailable) as exc:
        _status(MemoryIndexStore(), cards["g2_a"], pki.now)
    assert _code(exc) == "revocation_unavailable"


def test_stale_past_next_update_plus_grace(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3))  # nextUpdate = now + 1 day
    later = pki.now + DAY + timedelta(minutes=30)
    assert _status(store, cards["g3_a"], later, grace=timedelta(hours=1)).status == "good"
    with pytest.raises(RevocationStale) as exc:
        _status(store, cards["g3_a"], later)
    assert _code(exc) == "revocation_stale"


def test_stale_crl_still_reports_permanent_revocation(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    serial = cards["g3_a"].signing.certificate.serial_number
    _install(
        store,
        pki,
        pki.make_crl(issuer=pki.moica_g3, revoked=[(serial, pki.now, R.key_compromise)]),
    )
    assert _status(store, cards["g3_a"], pki.now + 10 * DAY).status == "revoked"


def test_partition_speaks_only_for_its_own_certificates(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    x_url = pki.default_crl_urls("G3")[0]  # the 10-31 partition
    y_serial = cards["g3_y"].signing.certificate.serial_number
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3, scope_url=x_url, number=5))
    # A certificate of partition 10-31 is answered by it ...
    assert _status(store, cards["g3_a"], pki.now).status == "good"
    # ... but its silence says nothing about a certificate of partition 11-01.
    with pytest.raises(RevocationUnavailable):
        _status(store, cards["g3_y"], pki.now)
    # The complete CRL (no IDP) covers it.
    _install(
        store,
        pki,
        pki.make_crl(issuer=pki.moica_g3, revoked=[(y_serial, pki.now, R.superseded)], number=6),
    )
    assert _status(store, cards["g3_y"], pki.now).status == "revoked"


def test_revocation_in_the_complete_crl_wins_over_a_silent_partition(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    serial = cards["g3_a"].signing.certificate.serial_number
    x_url = pki.default_crl_urls("G3")[0]
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3, scope_url=x_url, number=7))
    _install(
        store,
        pki,
        pki.make_crl(issuer=pki.moica_g3, revoked=[(serial, pki.now, R.key_compromise)], number=6),
    )
    assert _status(store, cards["g3_a"], pki.now).status == "revoked"


def test_intermediate_checked_against_the_root_crl(pki: TestPKI) -> None:
    store = MemoryIndexStore()
    moica = pki.moica_g3.certificate
    crl = pki.make_crl(
        issuer=pki.grca_g3, revoked=[(moica.serial_number, pki.now, R.ca_compromise)]
    )
    assert store.replace(parse_crl(der(crl), issuers=pki.anchors, at=pki.now))
    status = CrlSource(store=store).status(
        certificate=moica, issuer=pki.grca_g3.certificate, at=pki.now
    )
    assert (status.status, status.reason) == ("revoked", "ca_compromise")


# --- HTTP fetcher ---------------------------------------------------------------------


def test_fetch_with_etag_and_304(crl_http: CrlHttpServer, pki: TestPKI) -> None:
    body = der(pki.make_crl(issuer=pki.moica_g3))
    url = crl_http.serve("/etag.crl", body, etag='"v1"')
    fetcher = HttpCrlFetcher()
    first = fetcher.fetch(url)
    assert (first.status, first.content, first.etag) == ("ok", body, '"v1"')
    again = fetcher.fetch(url, etag='"v1"')
    assert again.status == "not_modified"
    assert again.content == b""


def test_fetch_refuses_truncated_body(crl_http: CrlHttpServer) -> None:
    url = crl_http.serve("/truncated.crl", b"\x30" * 4096, mode="truncate")
    with pytest.raises(CrlInvalid) as exc:
        HttpCrlFetcher().fetch(url)
    assert _code(exc) == "crl_invalid"


def test_fetch_enforces_size_limit(crl_http: CrlHttpServer) -> None:
    declared = crl_http.serve("/big.crl", b"\x00" * 5000)
    with pytest.raises(CrlInvalid) as exc:
        HttpCrlFetcher(max_bytes=1000).fetch(declared)
    assert _code(exc) == "crl_invalid"
    streamed = crl_http.serve("/endless.crl", b"\x00" * 1024, mode="no_length")
    with pytest.raises(CrlInvalid) as exc:
        HttpCrlFetcher(max_bytes=16 * 1024).fetch(streamed)
    assert "limit" in exc.value.detail


def test_fetch_read_timeout_is_unavailable(crl_http: CrlHttpServer) -> None:
    url = crl_http.serve("/slow.crl", b"x", mode="slow")
    with pytest.raises(RevocationUnavailable) as exc:
        HttpCrlFetcher(read_timeout=0.2).fetch(url)
    assert _code(exc) == "revocation_unavailable"


def test_fetch_http_error_and_refused_connection(crl_http: CrlHttpServer) -> None:
    with pytest.raises(RevocationUnavailable):
        HttpCrlFetcher().fetch(crl_http.base + "/missing.crl")
    with pytest.raises(RevocationUnavailable):
        HttpCrlFetcher(connect_timeout=0.5).fetch("http://127.0.0.1:9/x.crl")


# --- refresher ------------------------------------------------------------------------


@pytest.fixture
def refresher(crl_http: CrlHttpServer, pki: TestPKI, request) -> Iterator[CrlRefresher]:
    path = f"/refresh/{request.node.name}.crl"
    url = crl_http.serve(path, b"")
    yield CrlRefresher(
        fetcher=HttpCrlFetcher(read_timeout=2),
        store=MemoryIndexStore(),
        issuers=[*pki.intermediates, *pki.anchors],
        urls=[url],
        clock=lambda: pki.now,
    )


def _publish(crl_http: CrlHttpServer, url: str, body: bytes, **kw) -> None:
    crl_http.serve(url.removeprefix(crl_http.base), body, **kw)


def test_refresh_installs_then_keeps_last_good(
    refresher: CrlRefresher, crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    url = refresher.urls[0]
    good = der(pki.make_crl(issuer=pki.moica_g3, number=100, revoked=[(1, pki.now, None)]))
    _publish(crl_http, url, good)
    assert refresher.refresh(url).outcome == "installed"
    kid = key_id(pki.moica_g3.certificate)

    bad_downloads = {
        "truncated": (good, {"mode": "truncate"}),
        "garbage": (b"<html>maintenance</html>", {}),
        "wrong signature": (
            der(pki.make_crl(issuer=pki.moica_g3, number=101, signing_key=pki.key("crl-x"))),
            {},
        ),
        "older": (der(pki.make_crl(issuer=pki.moica_g3, number=99)), {}),
    }
    for label, (body, kw) in bad_downloads.items():
        _publish(crl_http, url, body, **kw)
        outcome = refresher.refresh(url)
        assert outcome.outcome in ("failed", "kept"), label
        assert outcome.error_code == "crl_invalid", label
        info = refresher.store.info(kid, COMPLETE_SCOPE)
        assert info is not None
        assert info.number == 100, label
        assert info.last_error is not None, label
        assert refresher.store.lookup(kid, COMPLETE_SCOPE, 1) is not None

    _publish(crl_http, url, good)
    assert refresher.refresh(url).outcome == "unchanged"
    assert refresher.store.last_error(url) is None
    assert refresher.failures() == {}
    [info] = refresher.status()
    assert (info.number, info.entries, info.url) == (100, 1, url)


def test_refresh_uses_conditional_get(
    refresher: CrlRefresher, crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    url = refresher.urls[0]
    _publish(crl_http, url, der(pki.make_crl(issuer=pki.moica_g2)), etag='"a"')
    assert refresher.refresh(url).outcome == "installed"
    assert refresher.refresh(url).outcome == "not_modified"


def test_refresh_network_failure_is_recorded(
    refresher: CrlRefresher, crl_http: CrlHttpServer
) -> None:
    url = refresher.urls[0]
    _publish(crl_http, url, b"", status=503)
    outcome = refresher.refresh(url)
    assert (outcome.outcome, outcome.error_code) == ("failed", "revocation_unavailable")
    assert url in refresher.failures()


def test_refresh_not_due_is_skipped_and_busy_lock(
    refresher: CrlRefresher, crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    url = refresher.urls[0]
    _publish(crl_http, url, der(pki.make_crl(issuer=pki.moica_g3, next_update=pki.now + 7 * DAY)))
    assert refresher.refresh_all(force=False)[0].outcome == "installed"
    assert refresher.refresh_all(force=False)[0].outcome == "fresh"
    with refresher.store.lock(f"refresh:{url}", 30) as held:
        assert held
        assert refresher.refresh(url).outcome == "busy"


def test_background_refresher_runs_off_the_request_path(
    refresher: CrlRefresher, crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    url = refresher.urls[0]
    _publish(crl_http, url, der(pki.make_crl(issuer=pki.moica_g3)))
    worker = refresher.start_background(interval=0.05)
    try:
        assert worker.alive
        for _ in range(200):
            if refresher.store.info_for_url(url) is not None:
                break
            worker._stop.wait(0.05)
    finally:
        worker.stop()
    assert refresher.store.info_for_url(url) is not None
    assert not worker.alive


def test_fetch_on_miss_downloads_the_certificates_crl(
    crl_http: CrlHttpServer, pki: TestPKI, cards
) -> None:
    card = cards["g2_a"]
    complete = pki.default_crl_urls("G2")[1]
    served = crl_http.serve("/onmiss/MOICA-G2-complete.crl", der(pki.make_crl(issuer=pki.moica_g2)))
    # The card's CRLDP points at the PKI's default host: re-point it at our server.
    store = MemoryIndexStore()

    class Redirecting(HttpCrlFetcher):
        def fetch(self, url, **kw):
            if url != complete:  # the partition: not served, so a 404
                url = url.replace(pki.crl_base_url, crl_http.base + "/none")
            return super().fetch(served if url == complete else url, **kw)

    refresher = CrlRefresher(
        fetcher=Redirecting(connect_timeout=0.5),
        store=store,
        issuers=pki.intermediates,
        clock=lambda: pki.now,
    )
    source = CrlSource(store=store, refresher=refresher, fetch_on_miss=True)
    status = source.status(
        certificate=card.signing.certificate, issuer=card.issuer.certificate, at=pki.now
    )
    assert status.status == "good"
    with pytest.raises(RevocationUnavailable):
        CrlSource(store=MemoryIndexStore()).status(
            certificate=card.signing.certificate, issuer=card.issuer.certificate, at=pki.now
        )


def test_refresher_from_settings(tmp_path, pki: TestPKI) -> None:
    from moica_auth.revocation.settings import parse_revocation_settings
    from moica_auth.services import crl_refresher

    pem = tmp_path / "cas.pem"
    pem.write_bytes(b"".join(c.cert_pem() for c in (pki.moica_g2, pki.moica_g3, pki.grca_g3)))
    config = parse_revocation_settings(
        {
            "crl_urls": ["http://127.0.0.1:9/a.crl"],
            "issuer_certificates": [str(pem)],
            "max_bytes": 1234,
            "redis_prefix": "t:refresher-from-settings",
        }
    )
    trust = TrustStore.from_certificates(pki.anchors, pki.intermediates)
    refresher = crl_refresher(settings=config, trust=trust)
    assert refresher.urls[0] == "http://127.0.0.1:9/a.crl"
    # The MOICA CA certificates' CRLDPs (the GRCA CRL) are added to the list.
    assert any("GRCA" in u for u in refresher.urls)
    assert len(refresher.issuers) == 3
    assert isinstance(refresher.fetcher, HttpCrlFetcher)
    assert refresher.fetcher.max_bytes == 1234
    # A rebuild (e.g. a trust anchor added) keeps the process's index.
    assert crl_refresher(settings=config, trust=trust).store is refresher.store


def test_refresher_from_settings_requires_issuers(pki: TestPKI) -> None:
    from moica_auth.revocation.settings import parse_revocation_settings
    from moica_auth.services import crl_refresher

    config = parse_revocation_settings({"crl_urls": [], "issuer_certificates": []})
    trust = TrustStore.from_certificates(pki.anchors)
    with pytest.raises(MoicaAuthError) as exc:
        crl_refresher(settings=config, trust=trust)
    assert _code(exc) == "configuration_error"


def test_rsa_key_helper_sanity(pki: TestPKI) -> None:
    assert isinstance(pki.moica_g3.private_key, rsa.RSAPrivateKey)


def test_decode_entry_time_forms_and_pem_input(pki: TestPKI) -> None:
    from datetime import UTC, datetime

    # RFC 5280 §4.1.2.5.1: UTCTime YY >= 50 is 19YY; GeneralizedTime from 2050 on.
    assert decode_entry(b"991231235959Z").revoked_at == datetime(
        1999, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert decode_entry(b"20510102030405Z").revoked_at == datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(CrlInvalid):
        decode_entry(b"99123123595xZ")
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = pki.make_crl(issuer=pki.moica_g3, revoked=[(3, pki.now, None)]).public_bytes(Encoding.PEM)
    assert 3 in parse_crl(pem, issuers=pki.intermediates, at=pki.now).entries


class _Mirror(HttpCrlFetcher):
    """Fetch the PKI's CRL URLs from the test server (same paths under ``/mirror``)."""

    def __init__(self, pki: TestPKI, server: CrlHttpServer) -> None:
        super().__init__(connect_timeout=1, read_timeout=5)
        self.pki, self.server = pki, server

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None):
        mirrored = url.replace(self.pki.crl_base_url, self.server.base + "/mirror")
        return super().fetch(mirrored, etag=etag, last_modified=last_modified)


def test_fetch_on_miss_burst_downloads_once_and_nobody_queues(
    crl_http: CrlHttpServer, pki: TestPKI, cards
) -> None:
    import threading

    card = cards["g3_b"]
    partition = pki.default_crl_urls("G3")[0]
    path = "/mirror" + partition.removeprefix(pki.crl_base_url)
    crl_http.serve(path, der(pki.make_crl(issuer=pki.moica_g3, scope_url=partition)))
    store = MemoryIndexStore()
    refresher = CrlRefresher(
        fetcher=_Mirror(pki, crl_http),
        store=store,
        issuers=pki.intermediates,
        clock=lambda: pki.now,
    )
    source = CrlSource(store=store, refresher=refresher, fetch_on_miss=True)
    start = threading.Barrier(6)
    answers: list[str] = []

    def login() -> None:
        start.wait()
        try:
            status = source.status(
                certificate=card.signing.certificate, issuer=card.issuer.certificate, at=pki.now
            )
        except RevocationUnavailable:
            # Another login held the lock: answered at once from the index, fail closed.
            answers.append("unavailable")
            return
        answers.append(status.status)

    threads = [threading.Thread(target=login) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 6
    assert "good" in answers
    assert set(answers) <= {"good", "unavailable"}
    assert crl_http.route(path).hits == 1
    # Once installed, every login reads it from the index.
    assert (
        source.status(
            certificate=card.signing.certificate, issuer=card.issuer.certificate, at=pki.now
        ).status
        == "good"
    )


def test_source_over_redis_index(redis_url: str, pki: TestPKI, cards) -> None:
    from moica_auth.revocation.store import RedisIndexStore

    store = RedisIndexStore.from_url(redis_url, prefix="t:crl-source")
    a = cards["g3_a"].signing.certificate
    x_url = pki.default_crl_urls("G3")[0]
    assert store.replace(_parse(pki, pki.make_crl(issuer=pki.moica_g3, scope_url=x_url)))
    with pytest.raises(RevocationUnavailable):
        _status(store, cards["g3_y"], pki.now)  # another partition
    assert _status(store, cards["g3_a"], pki.now).status == "good"
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        scope_url=x_url,
        number=2026010101,
        revoked=[(a.serial_number, pki.now, R.certificate_hold)],
    )
    assert store.replace(_parse(pki, crl))
    assert _status(store, cards["g3_a"], pki.now).status == "hold"
    with pytest.raises(RevocationStale):
        _status(store, cards["g3_a"], pki.now + 2 * DAY)


def test_due_checks_back_off_and_identical_bytes_skip_the_parse(
    crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    now = [pki.now]
    path = "/backoff/complete.crl"
    url = crl_http.serve(path, b"", status=503)
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(read_timeout=2),
        store=MemoryIndexStore(),
        issuers=pki.intermediates,
        urls=[url],
        clock=lambda: now[0],
    )
    assert refresher.refresh(url, force=False).outcome == "failed"
    # An outage is retried only after retry_interval (30 s), not on every call.
    assert refresher.refresh(url, force=False).outcome == "fresh"
    assert crl_http.route(path).hits == 1
    now[0] += timedelta(seconds=31)
    # A CRL due in 90 minutes (inside the 2 h margin), served without ETag.
    body = der(pki.make_crl(issuer=pki.moica_g3, next_update=pki.now + timedelta(minutes=90)))
    crl_http.serve(path, body)
    assert refresher.refresh(url, force=False).outcome == "installed"
    now[0] += timedelta(minutes=5)
    assert refresher.refresh(url, force=False).outcome == "fresh"  # min_interval (15 min)
    now[0] += timedelta(minutes=15)
    # Same bytes again: recognised by hash, not parsed again.
    assert refresher.refresh(url, force=False).outcome == "unchanged"
    assert crl_http.route(path).hits == 2


# --- adversarial review: the hand-written entry reader --------------------------------

_REASON_EXT = bytes.fromhex("300c300a0603551d1504030a01")  # + one reason byte


def _signed_with_entries(pki: TestPKI, entries: bytes | None) -> bytes:
    from tests.crl_fixtures import with_revoked

    base = der(pki.make_crl(issuer=pki.moica_g3, revoked=[(1, pki.now, None)]))
    return with_revoked(base, pki.moica_g3.private_key, entries)


def _crypto_view(data: bytes) -> dict[int, str | None]:
    """What cryptography's own parser says: serial -> reason name."""
    crl = x509.load_der_x509_crl(data)
    out: dict[int, str | None] = {}
    for revoked in crl:
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
            out[revoked.serial_number] = reason.name
        except x509.ExtensionNotFound:
            out[revoked.serial_number] = None
    return out


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        (b"\x05", 5),
        (b"\x00\x80", 128),  # leading 0x00 that DER requires: positive 128
        (b"\xff", -1),  # negative: RFC 5280 §4.1.2.2 forbids, but both parsers read -1
        (b"\x80" + b"\x00" * 20, -(2**167)),
        (b"\x01" * 21, int.from_bytes(b"\x01" * 21, "big")),  # past the 20-octet limit
        (b"\x7f" * 127, int.from_bytes(b"\x7f" * 127, "big")),
    ],
    ids=["small", "0080", "negative", "negative-21", "21-octets", "127-octets"],
)
def test_entry_serials_agree_with_cryptography(pki: TestPKI, serial: bytes, expected: int) -> None:
    from tests.crl_fixtures import revoked_entry

    data = _signed_with_entries(pki, revoked_entry(serial))
    parsed = parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert set(parsed.entries) == {expected} == set(_crypto_view(data))


@pytest.mark.parametrize(
    "entries",
    [
        "nonminimal-serial",
        "long-form-entry-length",
        "serial-128-octets",
        "empty-serial",
        "explicit-critical-false",
        "fractional-generalizedtime",
        "local-time",
        "reason-7",
        "reason-as-integer",
        "reason-two-bytes",
        "invalidity-date-garbage",
        "invalidity-date-utctime",
        "certificate-issuer-noncritical",
        "duplicate-extension",
        "unknown-critical-extension",
        "duplicate-serial",
        "entry-with-trailing-field",
    ],
)
def test_reader_refuses_malformed_entries(pki: TestPKI, entries: str) -> None:
    from tests.crl_fixtures import revoked_entry, tlv

    def ext(oid: str, value: bytes, critical: bool = False) -> bytes:
        flag = b"\x01\x01\xff" if critical else b""
        return tlv(0x30, tlv(0x06, bytes.fromhex(oid)) + flag + tlv(0x04, value))

    reason_ext = ext("551d15", tlv(0x0A, b"\x01"))
    cases = {
        "nonminimal-serial": revoked_entry(b"\x00\x05"),
        "long-form-entry-length": b"\x30\x81\x12" + revoked_entry(b"\x05")[2:],
        "serial-128-octets": revoked_entry(b"\x01" * 128),
        "empty-serial": revoked_entry(b""),
        "explicit-critical-false": revoked_entry(
            b"\x05",
            tlv(
                0x30,
                tlv(
                    0x30,
                    tlv(0x06, bytes.fromhex("551d15"))
                    + b"\x01\x01\x00"
                    + tlv(0x04, tlv(0x0A, b"\x01")),
                ),
            ),
        ),
        "fractional-generalizedtime": revoked_entry(b"\x05", when=tlv(0x18, b"20260101000000.5Z")),
        "local-time": revoked_entry(b"\x05", when=tlv(0x17, b"260101000000+0800")),
        "reason-7": revoked_entry(b"\x05", _REASON_EXT[:-1] + b"\x01\x07"),
        "reason-as-integer": revoked_entry(b"\x05", tlv(0x30, ext("551d15", tlv(0x02, b"\x01")))),
        "reason-two-bytes": revoked_entry(
            b"\x05", tlv(0x30, ext("551d15", tlv(0x0A, b"\x00\x01")))
        ),
        "invalidity-date-garbage": revoked_entry(
            b"\x05", tlv(0x30, ext("551d18", tlv(0x0A, b"\x01")))
        ),
        "invalidity-date-utctime": revoked_entry(
            b"\x05", tlv(0x30, ext("551d18", tlv(0x17, b"260101000000Z")))
        ),
        "certificate-issuer-noncritical": revoked_entry(
            b"\x05", tlv(0x30, ext("551d1d", tlv(0x30, tlv(0x86, b"http://x.test/"))))
        ),
        "duplicate-extension": revoked_entry(b"\x05", tlv(0x30, reason_ext + reason_ext)),
        "unknown-critical-extension": revoked_entry(
            b"\x05", tlv(0x30, ext("2a030405", b"\x05\x00", critical=True))
        ),
        "duplicate-serial": revoked_entry(b"\x05") + revoked_entry(b"\x05", tlv(0x30, reason_ext)),
        "entry-with-trailing-field": tlv(
            0x30,
            tlv(0x02, b"\x05") + tlv(0x17, b"260101000000Z") + tlv(0x30, reason_ext) + b"\x05\x00",
        ),
    }
    data = _signed_with_entries(pki, cases[entries])
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"


def test_empty_or_absent_revoked_list_lists_nothing(pki: TestPKI) -> None:
    # RFC 5280 §5.1.2.6 says omit an empty list; present-but-empty means the same.
    for entries in (b"", None):
        data = _signed_with_entries(pki, entries)
        assert parse_crl(data, issuers=pki.intermediates, at=pki.now).entries == {}
        assert _crypto_view(data) == {}


def test_entry_with_valid_invalidity_date_and_reason(pki: TestPKI) -> None:
    from tests.crl_fixtures import revoked_entry, tlv

    invalidity = tlv(
        0x30, tlv(0x06, bytes.fromhex("551d18")) + tlv(0x04, tlv(0x18, b"20251231000000Z"))
    )
    extensions = tlv(0x30, invalidity + _REASON_EXT[2:] + b"\x01")
    data = _signed_with_entries(pki, revoked_entry(b"\x05", extensions))
    parsed = parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert decode_entry(parsed.entries[5]).reason == "key_compromise"
    assert _crypto_view(data) == {5: "key_compromise"}


# --- adversarial review: signature and issuer -----------------------------------------


def test_rejects_unknown_signature_algorithm_as_crl_invalid(pki: TestPKI) -> None:
    # An OID cryptography does not know made it raise UnsupportedAlgorithm, which is no
    # MoicaAuthError: the refresher crashed instead of recording crl_invalid.
    from tests.crl_fixtures import sign_tbs, tbs_fields

    unknown = bytes.fromhex("300706032a03040500")  # 1.2.3.4, NULL
    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    fields[1] = unknown
    data = sign_tbs(pki.moica_g3.private_key, fields, outer_algorithm=unknown)
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"


def test_rejects_outer_signature_algorithm_differing_from_inner(pki: TestPKI) -> None:
    from tests.crl_fixtures import SHA256_RSA, sign_tbs, tbs_fields

    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    for outer in (
        bytes.fromhex("300d06092a864886f70d01010c0500"),  # sha384WithRSA
        SHA256_RSA[:-2].replace(b"\x30\x0d", b"\x30\x0b", 1),  # same OID, NULL omitted
    ):
        data = sign_tbs(pki.moica_g3.private_key, fields, outer_algorithm=outer)
        with pytest.raises(CrlInvalid) as exc:
            parse_crl(data, issuers=pki.intermediates, at=pki.now)
        assert _code(exc) == "crl_invalid"
        assert "differs" in exc.value.detail


@pytest.mark.parametrize("weak", ["sha1", "md5"])
def test_rejects_crls_signed_with_weak_hashes(pki: TestPKI, weak: str) -> None:
    from cryptography.hazmat.primitives import hashes

    algorithm = hashes.SHA1() if weak == "sha1" else hashes.MD5()  # noqa: S303 (refused)
    crl = pki.make_crl(issuer=pki.moica_g3, hash_algorithm=algorithm)
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"
    assert weak in exc.value.detail
    if weak == "sha1":
        # An explicit opt-in, for a legacy CA a deployment chooses to accept.
        allowed = frozenset({"sha1", "sha256"})
        assert _parse(pki, crl, allowed_hashes=allowed).number == 2026010100


def test_rejects_crl_issuer_without_crl_sign(pki: TestPKI) -> None:
    key = pki.key("crl-test/no-crl-sign")
    ca = pki.issue_leaf(
        issuer=pki.grca_g3,
        subject=x509.Name.from_rfc4514_string("CN=No cRLSign CA,O=Test,C=TW"),
        label="crl-test/no-crl-sign",
        private_key=key,
        extensions=[
            (x509.KeyUsage(False, False, False, False, False, True, False, False, False), True),
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )
    crl = pki.make_crl(issuer=ca)
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl, issuers=[ca.certificate])
    assert _code(exc) == "crl_invalid"
    assert "cRLSign" in exc.value.detail


def _crl_with_aki(pki: TestPKI, signer, aki: x509.AuthorityKeyIdentifier | None):
    from cryptography.hazmat.primitives import hashes

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.certificate.subject)
        .last_update(pki.now)
        .next_update(pki.now + DAY)
        .add_extension(x509.CRLNumber(3), critical=False)
    )
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(signer.private_key, hashes.SHA256())


def test_g2_and_g3_share_a_dn_the_signature_decides(pki: TestPKI) -> None:
    g2, g3 = pki.moica_g2, pki.moica_g3
    assert g2.certificate.subject == g3.certificate.subject
    # No AKI: chosen by signature, never by name or list order.
    for issuers in ([g2.certificate, g3.certificate], [g3.certificate, g2.certificate]):
        parsed = _parse(pki, _crl_with_aki(pki, g2, None), issuers=issuers)
        assert parsed.issuer_key_id == key_id(g2.certificate)
    # An AKI naming G3 on a CRL signed by G2's key: refused, not "G2 after all".
    g3_aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        g3.certificate.public_key()  # type: ignore[arg-type]
    )
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, _crl_with_aki(pki, g2, g3_aki))
    assert _code(exc) == "crl_invalid"
    assert "signature" in exc.value.detail


# --- adversarial review: the source's decision ----------------------------------------


def _hold_scenario(pki: TestPKI, serial: int, *, partition_next: timedelta):
    """A partition that put ``serial`` on hold 1 h ago, and a complete CRL issued 3 days
    ago (before the hold) that is still current and does not list it."""
    store = MemoryIndexStore()
    x_url = pki.default_crl_urls("G3")[0]
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3,
            number=10,
            this_update=pki.now - 3 * DAY,
            next_update=pki.now + DAY,
        ),
    )
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3,
            scope_url=x_url,
            number=20,
            revoked=[(serial, pki.now - timedelta(hours=1), R.certificate_hold)],
            this_update=pki.now - timedelta(hours=1),
            next_update=pki.now + partition_next,
        ),
    )
    return store


def test_hold_in_a_stale_newer_crl_is_not_lifted_by_an_older_fresh_one(pki: TestPKI, cards) -> None:
    # The older complete CRL predates the hold: its silence does not lift it. The
    # partition that knows of the hold is past nextUpdate, so nothing current answers.
    serial = cards["g3_b"].signing.certificate.serial_number
    store = _hold_scenario(pki, serial, partition_next=-timedelta(minutes=1))
    with pytest.raises(RevocationStale) as exc:
        _status(store, cards["g3_b"], pki.now)
    assert _code(exc) == "revocation_stale"
    # While the partition is current, it answers "hold".
    store = _hold_scenario(pki, serial, partition_next=DAY)
    assert _status(store, cards["g3_b"], pki.now).status == "hold"
    # A complete CRL issued after the hold that no longer lists it: reactivated (復用).
    _install(
        store,
        pki,
        pki.make_crl(issuer=pki.moica_g3, number=30, this_update=pki.now - timedelta(minutes=5)),
    )
    assert _status(store, cards["g3_b"], pki.now).status == "good"


def test_hold_wins_a_tie_between_crls_of_the_same_time(pki: TestPKI, cards) -> None:
    serial = cards["g3_b"].signing.certificate.serial_number
    x_url = pki.default_crl_urls("G3")[0]
    store = MemoryIndexStore()
    # Installed first, so a plain max() over (thisUpdate, number) would pick it.
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3, number=10))
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3,
            scope_url=x_url,
            number=10,
            revoked=[(serial, pki.now, R.certificate_hold)],
        ),
    )
    assert _status(store, cards["g3_b"], pki.now).status == "hold"


def _idp_crl(pki: TestPKI, *, names, only_user=False, only_ca=False, issuer=None, number=1):
    from cryptography.hazmat.primitives import hashes

    ca = issuer or pki.moica_g3
    idp = x509.IssuingDistributionPoint(
        full_name=names,
        relative_name=None,
        only_contains_user_certs=only_user,
        only_contains_ca_certs=only_ca,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(pki.now)
        .next_update(pki.now + DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(idp, critical=True)
    )
    return builder.sign(ca.private_key, hashes.SHA256())


@pytest.mark.parametrize(
    "variant",
    ["trailing-slash", "upper-scheme", "path-case", "https", "percent-encoded", "query"],
)
def test_partition_name_must_match_the_crldp_exactly(pki: TestPKI, cards, variant: str) -> None:
    # RFC 5280 §6.3.3 (b)(2)(i): one of the IDP names must match a name of the
    # certificate's distribution point. We compare exactly: a near-miss never lets a
    # partition speak for a certificate that names another CRL (fail closed — the
    # complete CRL still answers).
    url = pki.default_crl_urls("G3")[0]
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    near = {
        "trailing-slash": url + "/",
        "upper-scheme": scheme.upper() + "://" + rest,
        "path-case": f"{scheme}://{host}/{path.lower()}",
        "https": "https://" + rest,
        "percent-encoded": url.replace("-", "%2D"),
        "query": url + "?",
    }[variant]
    store = MemoryIndexStore()
    crl = _idp_crl(pki, names=[x509.UniformResourceIdentifier(near)])
    _install(store, pki, crl)
    with pytest.raises(RevocationUnavailable) as exc:
        _status(store, cards["g3_a"], pki.now)
    assert _code(exc) == "revocation_unavailable"
    _install(store, pki, _idp_crl(pki, names=[x509.UniformResourceIdentifier(url)], number=2))
    assert _status(store, cards["g3_a"], pki.now).status == "good"


def test_cert_kind_flags_limit_the_scope(pki: TestPKI, cards) -> None:
    store = MemoryIndexStore()
    # A CRL "for CA certificates only" (no distribution point name) must not answer
    # for a citizen certificate, and one "for user certificates only" not for a CA.
    _install(store, pki, _idp_crl(pki, names=None, only_ca=True))
    with pytest.raises(RevocationUnavailable):
        _status(store, cards["g3_a"], pki.now)
    _install(store, pki, _idp_crl(pki, names=None, only_user=True, number=2))
    assert _status(store, cards["g3_a"], pki.now).status == "good"

    root = MemoryIndexStore()
    crl = _idp_crl(pki, names=None, only_user=True, issuer=pki.grca_g3)
    assert root.replace(parse_crl(der(crl), issuers=pki.anchors, at=pki.now))
    with pytest.raises(RevocationUnavailable):
        CrlSource(store=root).status(
            certificate=pki.moica_g3.certificate, issuer=pki.grca_g3.certificate, at=pki.now
        )


def test_partition_served_from_another_url_covers_only_its_own_scope(
    crl_http: CrlHttpServer, pki: TestPKI, cards
) -> None:
    # The index is keyed by what the CRL says (its signed IDP), never by where it was
    # downloaded: partition 10-31 served at the 11-01 URL still covers only 10-31.
    y_url = crl_http.serve("/swap/MOICA-G3-11-01.crl", b"")
    x_partition = pki.default_crl_urls("G3")[0]
    y_serial = cards["g3_y"].signing.certificate.serial_number
    _publish(
        crl_http,
        y_url,
        der(
            pki.make_crl(
                issuer=pki.moica_g3,
                scope_url=x_partition,
                revoked=[(y_serial, pki.now, R.key_compromise)],
            )
        ),
    )
    store = MemoryIndexStore()
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(read_timeout=2),
        store=store,
        issuers=pki.intermediates,
        urls=[y_url],
        clock=lambda: pki.now,
    )
    assert refresher.refresh(y_url).outcome == "installed"
    with pytest.raises(RevocationUnavailable):
        _status(store, cards["g3_y"], pki.now)
    assert _status(store, cards["g3_a"], pki.now).status == "good"


# --- adversarial review: the download -------------------------------------------------


def test_fetch_deadline_cuts_off_a_slowloris_body(crl_http: CrlHttpServer) -> None:
    # Each byte arrives well inside the read timeout, so only the overall deadline can
    # stop it. Reading 64 KiB chunks blocked until a whole chunk (or EOF) had arrived:
    # the deadline was checked only after the server had sent everything.
    body = b"\x30" * 3000  # 30 s at one byte per 10 ms
    url = crl_http.serve("/drip.crl", body, mode="drip")
    with pytest.raises(RevocationUnavailable) as exc:
        HttpCrlFetcher(read_timeout=5, total_timeout=0.3).fetch(url)
    assert _code(exc) == "revocation_unavailable"
    assert "too long" in exc.value.detail
    route = crl_http.route("/drip.crl")
    assert route.done.wait(60)
    assert route.sent < len(body)


def test_fetch_deadline_cuts_off_slowloris_headers(crl_http: CrlHttpServer) -> None:
    # http.client reads the header lines itself: only a watchdog that shuts the socket
    # down at the deadline stops a server that drips them.
    url = crl_http.serve("/drip-headers.crl", mode="drip_headers")
    with pytest.raises(RevocationUnavailable) as exc:
        HttpCrlFetcher(read_timeout=5, total_timeout=0.3).fetch(url)
    assert _code(exc) == "revocation_unavailable"
    assert "too long" in exc.value.detail
    route = crl_http.route("/drip-headers.crl")
    assert route.done.wait(60)
    assert route.sent < 3000


def test_fetch_size_limit_counts_decompressed_bytes(crl_http: CrlHttpServer, pki: TestPKI) -> None:
    # We ask for identity; a server may compress anyway. ``requests`` decompresses, so
    # the limit must apply to what is decompressed (a gzip bomb), not to the wire.
    bomb = crl_http.serve("/bomb.crl", b"\x00" * (32 * 1024 * 1024), mode="gzip")
    with pytest.raises(CrlInvalid) as exc:
        HttpCrlFetcher(max_bytes=1024 * 1024).fetch(bomb)
    assert _code(exc) == "crl_invalid"
    assert "limit" in exc.value.detail
    body = der(pki.make_crl(issuer=pki.moica_g3))
    honest = crl_http.serve("/gzipped.crl", body, mode="gzip")
    assert HttpCrlFetcher().fetch(honest).content == body


def test_fetch_follows_a_few_http_redirects_only(crl_http: CrlHttpServer, pki: TestPKI) -> None:
    # Redirects are followed (at most 3, http/https only): the CRL is authenticated by
    # its signature, not by where it came from (docs/revocation.md).
    body = der(pki.make_crl(issuer=pki.moica_g3))
    target = crl_http.serve("/redir/target.crl", body)
    one = crl_http.serve("/redir/one.crl", mode="redirect", location=target)
    assert HttpCrlFetcher().fetch(one).content == body
    to_file = crl_http.serve("/redir/file.crl", mode="redirect", location="file:///etc/passwd")
    with pytest.raises(RevocationUnavailable) as exc:
        HttpCrlFetcher().fetch(to_file)
    assert _code(exc) == "revocation_unavailable"
    loop = crl_http.serve(
        "/redir/loop.crl", mode="redirect", location=crl_http.base + "/redir/loop.crl"
    )
    with pytest.raises(RevocationUnavailable):
        HttpCrlFetcher().fetch(loop)
    assert crl_http.route("/redir/loop.crl").hits == 4  # the request and 3 redirects


def test_304_without_a_conditional_request_is_not_success(
    crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    # A 304 answers a conditional GET; with no validators sent (nothing installed) it
    # carries no CRL, so the refresh must fail rather than report "not_modified".
    url = crl_http.serve("/always304.crl", b"", conditional=True)
    with pytest.raises(RevocationUnavailable) as exc:
        HttpCrlFetcher().fetch(url)
    assert _code(exc) == "revocation_unavailable"
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(read_timeout=2),
        store=MemoryIndexStore(),
        issuers=pki.intermediates,
        urls=[url],
        clock=lambda: pki.now,
    )
    outcome = refresher.refresh(url)
    assert (outcome.outcome, outcome.error_code) == ("failed", "revocation_unavailable")
    assert not outcome.ok


def test_refresher_records_crl_invalid_for_an_unsupported_algorithm(
    refresher: CrlRefresher, crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    from tests.crl_fixtures import sign_tbs, tbs_fields

    unknown = bytes.fromhex("300706032a03040500")
    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    fields[1] = unknown
    url = refresher.urls[0]
    _publish(crl_http, url, sign_tbs(pki.moica_g3.private_key, fields, outer_algorithm=unknown))
    outcome = refresher.refresh(url)
    assert (outcome.outcome, outcome.error_code) == ("failed", "crl_invalid")


def test_refresher_refuses_not_modified_when_nothing_is_installed(pki: TestPKI) -> None:
    from moica_auth.revocation.crl import FetchResult

    class AlwaysNotModified:
        def fetch(self, url: str, *, etag=None, last_modified=None) -> FetchResult:
            return FetchResult(url=url, status="not_modified")

    url = "http://crl.test/nothing-yet.crl"
    refresher = CrlRefresher(
        fetcher=AlwaysNotModified(),
        store=MemoryIndexStore(),
        issuers=pki.intermediates,
        urls=[url],
        clock=lambda: pki.now,
    )
    outcome = refresher.refresh(url)
    assert (outcome.outcome, outcome.error_code) == ("failed", "revocation_unavailable")


# --- adversarial review: dates and deltas ---------------------------------------------


def test_rejects_crl_without_next_update(pki: TestPKI) -> None:
    # RFC 5280 §5.1.2.5: conforming CAs include nextUpdate; without it, staleness cannot
    # be judged, so the CRL is refused (cryptography's builder cannot make one).
    from tests.crl_fixtures import sign_tbs, tbs_fields

    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    assert fields[4][0] == 0x17  # nextUpdate (UTCTime)
    data = sign_tbs(pki.moica_g3.private_key, fields[:4] + fields[5:])
    assert x509.load_der_x509_crl(data).next_update_utc is None
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"
    assert "nextUpdate" in exc.value.detail


def test_rejects_next_update_before_this_update(pki: TestPKI) -> None:
    from tests.crl_fixtures import sign_tbs, tbs_fields, tlv

    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    earlier = pki.now - timedelta(seconds=1)
    fields[4] = tlv(0x17, earlier.strftime("%y%m%d%H%M%SZ").encode())
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(sign_tbs(pki.moica_g3.private_key, fields), issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"
    assert "precedes" in exc.value.detail


def test_this_update_skew_is_tolerated_up_to_the_limit(pki: TestPKI) -> None:
    at_limit = pki.make_crl(issuer=pki.moica_g3, this_update=pki.now + timedelta(minutes=5))
    assert _parse(pki, at_limit).number == 2026010100
    beyond = pki.make_crl(
        issuer=pki.moica_g3, this_update=pki.now + timedelta(minutes=5, seconds=1)
    )
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, beyond)
    assert _code(exc) == "crl_invalid"


def test_rejects_delta_crl_even_without_the_critical_flag(pki: TestPKI) -> None:
    # RFC 5280 §5.2.4 makes deltaCRLIndicator critical; a non-critical one still marks a
    # delta, whose removeFromCRL entries would otherwise "unrevoke" nothing but whose
    # silence would read as "good" for everything it does not list.
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[(5, pki.now, R.remove_from_crl)],
        extra_extensions=[(x509.DeltaCRLIndicator(1), False)],
    )
    with pytest.raises(CrlInvalid) as exc:
        _parse(pki, crl)
    assert _code(exc) == "crl_invalid"
    assert "delta" in exc.value.detail


@pytest.mark.parametrize(
    "shape",
    [
        "trailing-null-in-tbs",
        "second-revoked-list",
        "revoked-list-after-extensions",
        "indefinite-length-list",
        "padded-long-form-list-length",
        "list-length-past-tbs",
        "indefinite-length-outer",
    ],
)
def test_refuses_malformed_tbs_structure(pki: TestPKI, shape: str) -> None:
    from tests.crl_fixtures import revoked_entry, sign_tbs, tbs_fields, tlv

    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3, revoked=[(1, pki.now, None)])))
    head, revoked, extensions = fields[:5], fields[5], fields[6]
    entries = revoked_entry(b"\x05")
    key = pki.moica_g3.private_key
    if shape == "indefinite-length-outer":
        good = sign_tbs(key, fields)
        data = b"\x30\x80" + good[4:] + b"\x00\x00"  # 0x30 0x82 LL LL -> 0x30 0x80 ... EOC
    else:
        layouts = {
            "trailing-null-in-tbs": [*head, revoked, extensions, b"\x05\x00"],
            "second-revoked-list": [*head, revoked, tlv(0x30, entries), extensions],
            "revoked-list-after-extensions": [*head, extensions, revoked],
            "indefinite-length-list": [*head, b"\x30\x80" + entries + b"\x00\x00", extensions],
            "padded-long-form-list-length": [
                *head,
                b"\x30\x82\x00" + bytes([len(entries)]) + entries,
                extensions,
            ],
            "list-length-past-tbs": [*head, b"\x30\x7f" + entries, extensions],
        }
        data = sign_tbs(key, layouts[shape])
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"


@pytest.mark.parametrize("field", ["version-5", "issuer-bad-attribute"])
def test_lazily_decoded_fields_are_crl_invalid(pki: TestPKI, field: str) -> None:
    # cryptography raises InvalidVersion (not a ValueError) for an unknown version and
    # decodes the issuer name lazily: both escaped parse_crl as non-library errors.
    from moica_auth.revocation.cli_support import read_crl
    from tests.crl_fixtures import sign_tbs, tbs_fields, tlv

    fields = tbs_fields(der(pki.make_crl(issuer=pki.moica_g3)))
    if field == "version-5":
        fields[0] = tlv(0x02, b"\x05")
    else:
        fields[2] = tlv(
            0x30, tlv(0x31, tlv(0x30, tlv(0x06, bytes.fromhex("550403")) + b"\x00\x00"))
        )
    data = sign_tbs(pki.moica_g3.private_key, fields)
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(data, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"
    if field == "version-5":
        with pytest.raises(CrlInvalid):
            read_crl(data)


def test_scope_keys_of_different_partitions_never_collide(pki: TestPKI) -> None:
    # The scope key joins names with "|" and appends "#user" / "#ca": names containing
    # those characters must not make two different partitions share one index slot
    # (one would silently replace the other).
    def install(store: MemoryIndexStore, names: list[str], number: int, **flags) -> str:
        crl = _idp_crl(
            pki, names=[x509.UniformResourceIdentifier(n) for n in names], number=number, **flags
        )
        parsed = _parse(pki, crl)
        assert store.replace(parsed, fetched_at=pki.now)
        return parsed.scope

    store = MemoryIndexStore()
    scopes = {
        install(store, ["http://x.test/a|uri:http://x.test/b"], 1),
        install(store, ["http://x.test/a", "http://x.test/b"], 1),
        install(store, ["http://x.test/c#user"], 1),
        install(store, ["http://x.test/c"], 1, only_user=True),
    }
    assert len(scopes) == 4
    assert len(store.all_info()) == 4
    # Ordinary names keep their plain keys (existing Redis indexes stay valid).
    assert install(MemoryIndexStore(), ["http://x.test/p.crl"], 1) == "uri:http://x.test/p.crl"


def test_same_serial_in_two_scopes(pki: TestPKI, cards) -> None:
    # Revoked in the partition, absent from a newer complete CRL: still revoked
    # (revocation is permanent). On hold in the complete CRL, absent from an older
    # partition: hold (the older partition cannot lift it).
    serial = cards["g3_a"].signing.certificate.serial_number
    x_url = pki.default_crl_urls("G3")[0]
    store = MemoryIndexStore()
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3,
            scope_url=x_url,
            number=5,
            this_update=pki.now - DAY,
            revoked=[(serial, pki.now - DAY, R.key_compromise)],
        ),
    )
    _install(store, pki, pki.make_crl(issuer=pki.moica_g3, number=9))
    assert _status(store, cards["g3_a"], pki.now).status == "revoked"

    store = MemoryIndexStore()
    _install(
        store,
        pki,
        pki.make_crl(issuer=pki.moica_g3, scope_url=x_url, number=5, this_update=pki.now - DAY),
    )
    _install(
        store,
        pki,
        pki.make_crl(
            issuer=pki.moica_g3, number=9, revoked=[(serial, pki.now, R.certificate_hold)]
        ),
    )
    assert _status(store, cards["g3_a"], pki.now).status == "hold"


def test_pem_input_must_hold_exactly_one_crl(pki: TestPKI) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    old = pki.make_crl(issuer=pki.moica_g3, number=1, revoked=[(3, pki.now, None)])
    new = pki.make_crl(issuer=pki.moica_g3, number=2)
    # Two CRLs in one PEM file: which one is meant is unknowable (only the first was read).
    bundle = old.public_bytes(Encoding.PEM) + new.public_bytes(Encoding.PEM)
    with pytest.raises(CrlInvalid) as exc:
        parse_crl(bundle, issuers=pki.intermediates, at=pki.now)
    assert _code(exc) == "crl_invalid"
    assert (
        parse_crl(new.public_bytes(Encoding.PEM), issuers=pki.intermediates, at=pki.now).number == 2
    )


def test_back_off_after_a_failed_download_is_shared_by_every_worker(
    crl_http: CrlHttpServer, pki: TestPKI
) -> None:
    # Two refreshers over one index store: two workers of a fleet.
    path = "/shared-backoff/complete.crl"
    url = crl_http.serve(path, b"", status=503)
    store = MemoryIndexStore()
    now = [pki.now]

    def worker() -> CrlRefresher:
        return CrlRefresher(
            fetcher=HttpCrlFetcher(read_timeout=2),
            store=store,
            issuers=pki.intermediates,
            urls=[url],
            clock=lambda: now[0],
        )

    first, second = worker(), worker()
    assert first.refresh(url, force=False).outcome == "failed"
    assert second.refresh(url, force=False).outcome == "fresh"
    assert crl_http.route(path).hits == 1
    now[0] += timedelta(seconds=31)
    assert second.refresh(url, force=False).outcome == "failed"
    assert crl_http.route(path).hits == 2


def test_login_fetcher_is_bounded_by_the_login_deadline(pki: TestPKI) -> None:
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(connect_timeout=5, read_timeout=30, total_timeout=120),
        store=MemoryIndexStore(),
        issuers=pki.intermediates,
        login_deadline=1.5,
    )
    bounded = refresher.login_fetcher
    assert isinstance(bounded, HttpCrlFetcher)
    assert (bounded.connect_timeout, bounded.read_timeout, bounded.total_timeout) == (
        1.5,
        1.5,
        1.5,
    )
    assert refresher.fetcher.total_timeout == 120  # the background keeps its own
    with pytest.raises(ConfigurationError):
        CrlRefresher(
            fetcher=HttpCrlFetcher(),
            store=MemoryIndexStore(),
            issuers=pki.intermediates,
            login_deadline=0,
        )
