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
from moica_auth.revocation.refresh import CrlRefresher, refresher_from_settings
from moica_auth.revocation.store import MemoryIndexStore
from moica_auth.testing.pki import CitizenCard, TestPKI
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


def test_refresher_from_settings(settings, tmp_path, pki: TestPKI) -> None:
    pem = tmp_path / "cas.pem"
    pem.write_bytes(b"".join(c.cert_pem() for c in (pki.moica_g2, pki.moica_g3, pki.grca_g3)))
    settings.MOICA_AUTH_REVOCATION = {
        "crl_urls": ["http://127.0.0.1:9/a.crl"],
        "issuer_certificates": [str(pem)],
        "grace_seconds": 60,
        "max_bytes": 1234,
    }
    refresher = refresher_from_settings(settings.MOICA_AUTH_REVOCATION)
    assert refresher.urls[0] == "http://127.0.0.1:9/a.crl"
    # The MOICA CA certificates' CRLDPs (the GRCA CRL) are added to the list.
    assert any("GRCA" in u for u in refresher.urls)
    assert len(refresher.issuers) == 3
    assert isinstance(refresher.fetcher, HttpCrlFetcher)
    assert refresher.fetcher.max_bytes == 1234


def test_refresher_from_settings_requires_issuers(settings) -> None:
    settings.MOICA_AUTH_REVOCATION = {"crl_urls": []}
    with pytest.raises(MoicaAuthError) as exc:
        refresher_from_settings(settings.MOICA_AUTH_REVOCATION)
    assert _code(exc) == "configuration_error"


def test_rsa_key_helper_sanity(pki: TestPKI) -> None:
    assert isinstance(pki.moica_g3.private_key, rsa.RSAPrivateKey)


def test_management_command_refresh_and_status(
    settings, crl_http: CrlHttpServer, pki: TestPKI, tmp_path
) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    pem = tmp_path / "moica.pem"
    pem.write_bytes(pki.moica_g3.cert_pem())
    good = crl_http.serve("/cmd/good.crl", der(pki.make_crl(issuer=pki.moica_g3, number=5)))
    bad = crl_http.serve("/cmd/bad.crl", b"garbage")
    settings.MOICA_AUTH_REVOCATION = {
        "crl_urls": [good],
        "issuer_certificates": [str(pem)],
        "crl_urls_from_issuers": False,
    }
    out = StringIO()
    call_command("moica_revocation", "refresh", stdout=out)
    assert "installed" in out.getvalue()
    out = StringIO()
    call_command("moica_revocation", "status", stdout=out)
    assert "number=5" in out.getvalue()
    assert key_id(pki.moica_g3.certificate) in out.getvalue()

    settings.MOICA_AUTH_REVOCATION = {**settings.MOICA_AUTH_REVOCATION, "crl_urls": [bad]}
    with pytest.raises(CommandError):
        call_command("moica_revocation", "refresh", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("moica_revocation", "status", stdout=out)
    assert "failing" in out.getvalue()
    assert "crl_invalid" in out.getvalue()


def test_settings_refresher_and_source_share_one_index(pki: TestPKI) -> None:
    from moica_auth.revocation.refresh import crl_source_from_settings

    config = {
        "issuer_certificates": [pki.moica_g3.certificate],
        "crl_urls": [],
        "crl_urls_from_issuers": False,
        "grace_seconds": 90,
        "order": ["crl"],  # a policy key: ignored here
    }
    refresher = refresher_from_settings(config)
    assert refresher_from_settings({**config, "order": ["ocsp", "crl"]}) is refresher
    source = crl_source_from_settings(config)
    assert source.store is refresher.store
    assert source.grace == timedelta(seconds=90)
    assert not source.fetch_on_miss
    other = refresher_from_settings({**config, "grace_seconds": 1})
    assert other is not refresher


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


def test_fetch_on_miss_burst_downloads_once(crl_http: CrlHttpServer, pki: TestPKI, cards) -> None:
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
        status = source.status(
            certificate=card.signing.certificate, issuer=card.issuer.certificate, at=pki.now
        )
        answers.append(status.status)

    threads = [threading.Thread(target=login) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["good"] * 6
    assert crl_http.route(path).hits == 1


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
