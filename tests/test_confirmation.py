"""The ID confirmation service client, end to end against the local test service."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, date, datetime

import pytest
import requests
from lxml import etree

from moica_auth.exceptions import ConfigurationError, MalformedRequest, PersonalDataUnverified
from moica_auth.identity.confirmation import (
    MAX_RECORDS,
    NAMESPACE,
    REQUEST_TAG,
    ConfirmationClient,
    ConfirmationRecord,
    ConfirmationStatus,
    client_from_config,
    client_id_for,
    sign_document,
)
from moica_auth.identity.id_number import parse_id_number
from tests.confirmation_fixtures import (
    AT,
    BIRTH_MATCH,
    ID_EXPIRED,
    ID_MATCH,
    ID_NOT_ACTIVATED,
    ID_OTHER_CARD,
    ID_REVOKED,
    ID_UNKNOWN,
    SERIAL_EXPIRED,
    SERIAL_MATCH,
    SERIAL_NOT_ACTIVATED,
    SERIAL_OTHER,
    SERIAL_REVOKED,
    SERIAL_UNKNOWN,
    make_id,
)

DS = "{http://www.w3.org/2000/09/xmldsig#}"
NS = f"{{{NAMESPACE}}}"


def record(serial, id_number, birth=None):
    return ConfirmationRecord(
        card_serial=serial, id_number=parse_id_number(id_number), birth_date=birth
    )


def expect_unverified(call, *args, **kwargs):
    with pytest.raises(PersonalDataUnverified) as info:
        call(*args, **kwargs)
    assert info.value.code == "personal_data_unverified"
    return info.value


# --- every result code -------------------------------------------------------------------


def test_maps_every_result_code_in_one_request(confirmation_client, confirmation_server):
    records = [
        record(SERIAL_MATCH, ID_MATCH, BIRTH_MATCH),
        record(SERIAL_MATCH, ID_MATCH),  # birth date is optional
        record(SERIAL_MATCH, ID_MATCH, date(1971, 1, 2)),  # wrong birth date
        record(SERIAL_OTHER, ID_MATCH),  # the ID holds another card
        record(SERIAL_UNKNOWN, ID_UNKNOWN),
        record(SERIAL_NOT_ACTIVATED, ID_NOT_ACTIVATED),
        record(SERIAL_EXPIRED, ID_EXPIRED),
        record(SERIAL_REVOKED, ID_REVOKED),
    ]
    results = confirmation_client.confirm(records, at=AT)
    assert [r.status for r in results] == [
        ConfirmationStatus.MATCH,
        ConfirmationStatus.MATCH,
        ConfirmationStatus.NO_SUCH_PAIR,
        ConfirmationStatus.NO_SUCH_PAIR,
        ConfirmationStatus.NO_CERTIFICATE,
        ConfirmationStatus.NOT_ACTIVATED,
        ConfirmationStatus.EXPIRED,
        ConfirmationStatus.REVOKED,
    ]
    assert [r.record for r in results] == records
    assert [r.matched for r in results] == [True, True] + [False] * 6


def test_sends_serial_full_id_and_gregorian_birth_date(confirmation_client, confirmation_server):
    confirmation_client.confirm_one(record(SERIAL_MATCH, ID_MATCH, BIRTH_MATCH), at=AT)
    confirmation_client.confirm_one(record(SERIAL_OTHER, ID_OTHER_CARD), at=AT)
    first, second = (batch[0] for batch in confirmation_server.received)
    assert (first.card_serial, first.id_number, first.birth_date) == (
        SERIAL_MATCH,
        ID_MATCH,
        "19710101",
    )
    assert second.birth_date is None


def test_request_is_an_enveloped_signature_with_client_id_and_nonce(
    confirmation_client, confirmation_server, rp
):
    confirmation_client.confirm_one(record(SERIAL_MATCH, ID_MATCH), at=AT)
    root = etree.fromstring(confirmation_server.last_request)
    assert root.tag == REQUEST_TAG
    assert root.findtext(f"{NS}ClientID") == client_id_for(rp.cert) == confirmation_client.client_id
    assert len(confirmation_client.client_id) == 40
    assert len(root.findtext(f"{NS}Nonce")) >= 32
    signature = root.find(f"{DS}Signature")
    assert signature is not None
    assert signature.find(f"{DS}SignedInfo/{DS}Reference").get("URI") == ""
    method = signature.find(f"{DS}SignedInfo/{DS}CanonicalizationMethod").get("Algorithm")
    assert method == "http://www.w3.org/2001/10/xml-exc-c14n#"


def test_each_request_has_a_fresh_nonce(confirmation_client, confirmation_server):
    nonces = set()
    for _ in range(3):
        confirmation_client.confirm_one(record(SERIAL_MATCH, ID_MATCH), at=AT)
        nonces.add(etree.fromstring(confirmation_server.last_request).findtext(f"{NS}Nonce"))
    assert len(nonces) == 3


def test_a_full_batch_of_1000_records(confirmation_client, confirmation_server):
    records = [record(SERIAL_MATCH, ID_MATCH)] * (MAX_RECORDS - 1) + [
        record(SERIAL_UNKNOWN, ID_UNKNOWN)
    ]
    results = confirmation_client.confirm(records, at=AT)
    assert len(results) == MAX_RECORDS
    assert results[0].matched
    assert results[-1].status is ConfirmationStatus.NO_CERTIFICATE


# --- faults: every one fails closed -------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    ["http500", "bad_signature", "wrong_signer", "unsigned", "wrong_nonce", "missing_result"],
)
def test_faulty_answers_fail_closed(confirmation_client, confirmation_server, fault):
    confirmation_server.faults.add(fault)
    expect_unverified(confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT)


def test_server_error_code_fails_closed_with_the_code(confirmation_client, confirmation_server):
    confirmation_server.faults.add("server_error")
    error = expect_unverified(
        confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT
    )
    assert error.data["server_code"] == 1001


def test_http500_keeps_the_status(confirmation_client, confirmation_server):
    confirmation_server.faults.add("http500")
    error = expect_unverified(
        confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT
    )
    assert error.data["http_status"] == 500


def test_unregistered_client_is_refused_by_the_service(confirmation_server, stranger, service):
    confirmation_client = ConfirmationClient(
        confirmation_server.url,
        client_cert=stranger.cert,
        client_key=stranger.key,
        service_cert=service.cert,
    )
    error = expect_unverified(
        confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT
    )
    assert error.data["server_code"] == 1003
    assert confirmation_server.received == []


def test_tampered_request_is_refused_by_the_service(confirmation_client, confirmation_server):
    nonce = "bm9uY2Utbm9uY2Utbm9uY2U="
    records = [record(SERIAL_MATCH, ID_MATCH)]
    body = confirmation_client.build_request(records, nonce=nonce)
    tampered = body.replace(ID_MATCH.encode(), ID_OTHER_CARD.encode())
    answer = requests.post(confirmation_server.url, data=tampered, timeout=5)
    error = expect_unverified(
        confirmation_client.parse_response, answer.content, nonce=nonce, records=records
    )
    assert error.data["server_code"] == 1002
    assert confirmation_server.received == []


def test_response_from_a_service_certificate_we_do_not_pin(confirmation_server, rp, stranger):
    confirmation_client = ConfirmationClient(
        confirmation_server.url, client_cert=rp.cert, client_key=rp.key, service_cert=stranger.cert
    )
    expect_unverified(confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT)


def test_service_certificate_must_be_valid_at_the_pinned_time(
    confirmation_client, confirmation_server
):
    expect_unverified(
        confirmation_client.confirm_one,
        record(SERIAL_MATCH, ID_MATCH),
        at=datetime(2031, 1, 1, tzinfo=UTC),
    )


def test_a_signed_document_of_another_kind_is_not_a_response(confirmation_client, service):
    records = [record(SERIAL_MATCH, ID_MATCH)]
    other = etree.Element(f"{NS}IdConfirmationRequest", nsmap={None: NAMESPACE})
    etree.SubElement(other, f"{NS}Nonce").text = "abc"
    body = sign_document(other, key=service.key, cert=service.cert)
    expect_unverified(confirmation_client.parse_response, body, nonce="abc", records=records, at=AT)


def test_response_with_a_dtd_is_refused(confirmation_client):
    body = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]>'
        b'<IdConfirmationResponse xmlns="' + NAMESPACE.encode() + b'">&x;</IdConfirmationResponse>'
    )
    expect_unverified(
        confirmation_client.parse_response,
        body,
        nonce="n",
        records=[record(SERIAL_MATCH, ID_MATCH)],
        at=AT,
    )


def test_garbage_response_is_refused(confirmation_client):
    expect_unverified(
        confirmation_client.parse_response,
        b"not xml",
        nonce="n",
        records=[record(SERIAL_MATCH, ID_MATCH)],
        at=AT,
    )


def test_unreachable_service_fails_closed(rp, service):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    confirmation_client = ConfirmationClient(
        f"http://127.0.0.1:{port}/confirm",
        client_cert=rp.cert,
        client_key=rp.key,
        service_cert=service.cert,
        timeout=2,
    )
    expect_unverified(confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT)


# --- input validation ---------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, MAX_RECORDS + 1])
def test_record_count_is_bounded(confirmation_client, confirmation_server, count):
    with pytest.raises(MalformedRequest) as info:
        confirmation_client.confirm([record(SERIAL_MATCH, ID_MATCH)] * count, at=AT)
    assert info.value.code == "malformed_request"
    assert confirmation_server.received == []


def test_records_must_be_records(confirmation_client):
    with pytest.raises(MalformedRequest):
        confirmation_client.confirm(record(SERIAL_MATCH, ID_MATCH), at=AT)
    with pytest.raises(MalformedRequest):
        confirmation_client.confirm([(SERIAL_MATCH, ID_MATCH)], at=AT)


@pytest.mark.parametrize(
    "serial",
    ["", "123", "00000000000000001", "000000000000000-", "００００００００００００００００", 1],
)
def test_card_serial_must_be_16_alphanumerics(serial):
    with pytest.raises(MalformedRequest) as info:
        record(serial, ID_MATCH)
    assert info.value.code == "malformed_request"


def test_id_number_must_be_parsed_and_birth_date_a_date():
    with pytest.raises(MalformedRequest):
        ConfirmationRecord(card_serial=SERIAL_MATCH, id_number=ID_MATCH)
    with pytest.raises(MalformedRequest):
        record(SERIAL_MATCH, ID_MATCH, "19710101")
    with pytest.raises(MalformedRequest):
        record(SERIAL_MATCH, ID_MATCH, datetime(1971, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "url", ["http://example.org/confirm", "ftp://127.0.0.1/", "https://", "/confirm"]
)
def test_url_must_be_https_except_loopback(rp, service, url):
    with pytest.raises(ConfigurationError) as info:
        ConfirmationClient(url, client_cert=rp.cert, client_key=rp.key, service_cert=service.cert)
    assert info.value.code == "configuration_error"


def test_https_and_loopback_urls_are_accepted(rp, service):
    for url in ("https://confirm.example/api", "http://localhost:1/", "http://[::1]:1/"):
        ConfirmationClient(url, client_cert=rp.cert, client_key=rp.key, service_cert=service.cert)


def test_client_key_must_belong_to_client_certificate(rp, service, stranger):
    with pytest.raises(ConfigurationError):
        ConfirmationClient(
            "https://confirm.example/api",
            client_cert=rp.cert,
            client_key=stranger.key,
            service_cert=service.cert,
        )


# --- privacy -----------------------------------------------------------------------------


def test_records_and_results_print_masked():
    item = record(SERIAL_MATCH, ID_MATCH, BIRTH_MATCH)
    for text in (repr(item), str(item), repr([item])):
        assert ID_MATCH not in text
        assert "1971" not in text
    assert "A*****6789" in repr(item)


def test_nothing_logged_contains_an_id_number(confirmation_client, confirmation_server, caplog):
    other = make_id("G10000000")
    with caplog.at_level(logging.DEBUG):
        confirmation_client.confirm(
            [record(SERIAL_MATCH, ID_MATCH), record(SERIAL_UNKNOWN, other)], at=AT
        )
        confirmation_server.faults.add("bad_signature")
        expect_unverified(confirmation_client.confirm_one, record(SERIAL_MATCH, ID_MATCH), at=AT)
    assert caplog.records  # the client does log, just not personal data
    for number in (ID_MATCH, other, ID_MATCH[1:]):
        assert number not in caplog.text


# --- settings -----------------------------------------------------------------------------


def pem_files(tmp_path, rp, service, password=None):
    from cryptography.hazmat.primitives import serialization

    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    paths = {
        "client_cert": tmp_path / "rp.crt",
        "client_key": tmp_path / "rp.key",
        "service_cert": tmp_path / "service.crt",
    }
    paths["client_cert"].write_bytes(rp.cert.public_bytes(serialization.Encoding.PEM))
    paths["service_cert"].write_bytes(service.cert.public_bytes(serialization.Encoding.DER))
    paths["client_key"].write_bytes(
        rp.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return {name: str(path) for name, path in paths.items()}


def test_client_from_config_reads_files_and_works(tmp_path, confirmation_server, rp, service):
    config = {
        "url": confirmation_server.url,
        "timeout": 3,
        **pem_files(tmp_path, rp, service, b"secret"),
    }
    config["client_key_password"] = "secret"
    confirmation_client = client_from_config(config)
    assert confirmation_client.client_id == client_id_for(rp.cert)
    assert confirmation_client.timeout == 3.0
    assert confirmation_client.confirm_one(record(SERIAL_MATCH, ID_MATCH), at=AT).matched


def test_confirmation_verifier_builds_its_client_from_settings(
    tmp_path, confirmation_server, rp, service
):
    from moica_auth.identity.verifiers import load_verifiers

    config = {"url": confirmation_server.url, **pem_files(tmp_path, rp, service)}
    (verifier,) = load_verifiers(
        ["moica_auth.identity.verifiers.MoicaConfirmationVerifier"], confirmation=config
    )
    assert verifier.client.url == confirmation_server.url


@pytest.mark.parametrize(
    "change",
    [
        {"client_key_password": "wrong"},
        {"client_key_password": None},
        {"client_cert": "/nonexistent/rp.crt"},
        {"service_cert": b"not a certificate"},
        {"client_key": b"not a key"},
        {"url": "http://example.org/"},
        {"timeout": 0},
        {"timeout": "10"},
        {"unexpected": 1},
        {"url": None},
    ],
)
def test_client_from_config_refuses_bad_settings(tmp_path, rp, service, change):
    config = {
        "url": "https://confirm.example/api",
        "client_key_password": b"secret",
        **pem_files(tmp_path, rp, service, b"secret"),
    }
    config.update(change)
    if change.get("url", "") is None:
        del config["url"]
    with pytest.raises(ConfigurationError) as info:
        client_from_config(config)
    assert info.value.code == "configuration_error"
    assert "secret" not in str(info.value)
