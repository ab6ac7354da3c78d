"""The SP API client against the virtual SP API over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moica_auth.mobile import errors
from moica_auth.mobile.checksum import make_checksum
from moica_auth.mobile.client import Pending, SignInfo, SignResult, SpApiClient, decode_ticket
from moica_auth.testing.virtual_sp import VirtualSpApi, hashed_id_num
from tests.mobile_fixtures import (
    CITIZEN,
    NO_PHONE,
    _reset_faults,
    client_fixture,
    mobile_settings,
    vsp_fixture,
)

__all__ = ["_reset_faults", "client_fixture", "vsp_fixture"]

SIGN = SignInfo(sign_data="moica-auth/1 test data")


def _approve_and_poll(vsp: VirtualSpApi, client: SpApiClient, ticket: Any) -> SignResult:
    assert isinstance(client.poll(ticket), Pending)
    vsp.approve(ticket.sp_ticket_id)
    result = client.poll(ticket)
    assert isinstance(result, SignResult)
    return result


class TestInterfaces:
    def test_push_then_poll_returns_a_verifiable_signature(
        self, vsp: VirtualSpApi, client: SpApiClient
    ) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        assert ticket.op_mode == "PUSH" and ticket.hashed_id_num == hashed_id_num(CITIZEN)
        assert [r.ticket_id for r in vsp.pending(CITIZEN)][-1] == ticket.sp_ticket_id
        result = _approve_and_poll(vsp, client, ticket)
        cert = x509.load_der_x509_certificate(base64.b64decode(result.cert or ""))
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(
            base64.b64decode(result.signed_response or ""),
            SIGN.sign_data.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )

    @pytest.mark.parametrize("op_mode", ["I-SCAN", "APP2APP", "MWEB2APP"])
    def test_ticket_modes(self, vsp: VirtualSpApi, client: SpApiClient, op_mode: str) -> None:
        ticket = client.get_ticket(id_num=CITIZEN, op_mode=op_mode, sign_info=SIGN)
        claims = decode_ticket(ticket.sp_ticket)
        assert claims["transaction_id"] == ticket.transaction_id
        assert uuid.UUID(ticket.transaction_id).version == 4
        assert ticket.expires_at is not None
        _approve_and_poll(vsp, client, ticket)

    def test_each_request_has_its_own_transaction_id(self, client: SpApiClient) -> None:
        ids = {
            client.get_ticket(id_num=CITIZEN, op_mode="I-SCAN", sign_info=SIGN).transaction_id
            for _ in range(3)
        }
        assert len(ids) == 3

    def test_batch_signing(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        ticket = client.batch_sign(id_num=CITIZEN, documents=["one", "two"])
        result = _approve_and_poll(vsp, client, ticket)
        assert len(result.signed_response_set) == 2

    def test_device_status(self, client: SpApiClient) -> None:
        assert client.device_status(id_num=CITIZEN).has_device
        status = client.device_status(id_num=NO_PHONE)
        assert not status.has_device and not status.can_sign

    def test_web_redirect_fields_carry_a_valid_sp_checksum(
        self, vsp: VirtualSpApi, client: SpApiClient
    ) -> None:
        redirect = client.web_redirect(sign_info=SIGN)
        assert redirect.url.endswith("/fidoRedirect/web")
        from moica_auth.mobile.checksum import SP_FIELDS, payload_of, verify_checksum

        verify_checksum(
            vsp.aes_key,
            payload_of(SP_FIELDS["WEB-01"], {**redirect.fields, "sign_data": SIGN.sign_data}),
            redirect.fields["sp_checksum"],
        )

    def test_web_callback_is_verified(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        tid = str(uuid.uuid4())
        form = {
            "transaction_id": tid,
            "error_code": "0",
            "id_num": CITIZEN,
            "signed_response": "c2ln",
            "cert": "Y2VydA==",
        }
        form["idp_checksum"] = vsp.idp_checksum("WEB-01", form)
        assert client.verify_web_callback(form, transaction_id=tid).signed_response == "c2ln"
        with pytest.raises(errors.MobileChecksumInvalid):
            client.verify_web_callback({**form, "signed_response": "b3RoZXI="}, transaction_id=tid)
        with pytest.raises(errors.MobileResultMismatch):
            client.verify_web_callback(form, transaction_id=str(uuid.uuid4()))

    def test_app_link(self, client: SpApiClient) -> None:
        ticket = client.get_ticket(id_num=CITIZEN, op_mode="APP2APP", sign_info=SIGN)
        link = client.app_link(ticket, kind="a2a", rtn_url="https://portal.example/x")
        assert link.url.startswith("mobilemoica://moica.moi.gov.tw/a2a/verifySign?sp_ticket=")

    def test_poll_interval_is_honoured(self, client: SpApiClient) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        began = time.monotonic()
        for _ in range(3):
            client.poll(ticket)
        assert time.monotonic() - began >= 2 * client.settings.poll_interval


class TestRefusals:
    def test_virtual_api_rejects_a_bad_sp_checksum(self, vsp: VirtualSpApi) -> None:
        tid = str(uuid.uuid4())
        body = {
            "transaction_id": tid,
            "sp_service_id": vsp.service_id,
            "id_num": CITIZEN,
            "sp_checksum": make_checksum(bytes(32), tid + vsp.service_id + CITIZEN),
        }
        answer = requests.post(f"{vsp.url}/moise/sp/checkDeviceStatus", json=body, timeout=5).json()
        assert answer["error_code"] == "SP-API-LF-01-INV_SP_CHECKSUM"

    def test_wrong_key_is_refused_as_unauthenticated(self, vsp: VirtualSpApi) -> None:
        settings = mobile_settings(vsp, aes_key=base64.b64encode(bytes(32)).decode())
        with pytest.raises(errors.MobileChecksumInvalid):
            SpApiClient(settings).device_status(id_num=CITIZEN)

    def test_wrong_service_id(self, vsp: VirtualSpApi) -> None:
        with pytest.raises(errors.MobileServiceMisconfigured):
            SpApiClient(mobile_settings(vsp, service_id="NOT-REGISTERED")).push(
                id_num=CITIZEN, sign_info=SIGN
            )

    @pytest.mark.parametrize("interface", ["push", "ticket", "poll", "status"])
    def test_wrong_idp_checksum_is_refused_on_every_answer(
        self, vsp: VirtualSpApi, client: SpApiClient, interface: str
    ) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        vsp.approve(ticket.sp_ticket_id)
        vsp.fault = "bad_checksum"
        with pytest.raises(errors.MobileChecksumInvalid):
            if interface == "push":
                client.push(id_num=CITIZEN, sign_info=SIGN)
            elif interface == "ticket":
                client.get_ticket(id_num=CITIZEN, op_mode="I-SCAN", sign_info=SIGN)
            elif interface == "poll":
                client.poll(ticket)
            else:
                client.device_status(id_num=CITIZEN)

    def test_no_bound_phone(self, client: SpApiClient) -> None:
        with pytest.raises(errors.MobileNoDevice) as info:
            client.push(id_num=NO_PHONE, sign_info=SIGN)
        assert "fido.moi.gov.tw" in info.value.message_in("zh-hant")

    def test_cancelled(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        vsp.cancel(ticket.sp_ticket_id)
        with pytest.raises(errors.MobileUserCancelled):
            client.poll(ticket)

    def test_expired_ticket(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN, time_limit=30)
        real = vsp.clock
        vsp.clock = lambda: real() + 31
        try:
            with pytest.raises(errors.MobileTicketExpired):
                client.poll(ticket)
        finally:
            vsp.clock = real

    def test_reused_ticket(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        _approve_and_poll(vsp, client, ticket)
        with pytest.raises(errors.MobileTicketUsed):
            client.poll(ticket)

    def test_reused_transaction_id(self, vsp: VirtualSpApi) -> None:
        class FixedIds(SpApiClient):
            @staticmethod
            def new_transaction_id() -> str:
                return "fixed-transaction-id-for-reuse-test"

        client = FixedIds(mobile_settings(vsp))
        client.push(id_num=CITIZEN, sign_info=SIGN)
        with pytest.raises(errors.MobileTransactionReused):
            client.push(id_num=CITIZEN, sign_info=SIGN)

    def test_sign_data_over_1024_characters_is_refused_before_sending(self) -> None:
        with pytest.raises(errors.MobileRequestRejected):
            SignInfo(sign_data="x" * 1025)

    def test_5xx(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        vsp.fault = "5xx"
        with pytest.raises(errors.MobileApiUnavailable):
            client.push(id_num=CITIZEN, sign_info=SIGN)

    def test_garbage_json(self, vsp: VirtualSpApi, client: SpApiClient) -> None:
        vsp.fault = "garbage"
        with pytest.raises(errors.MobileMalformedAnswer):
            client.device_status(id_num=CITIZEN)

    def test_slow_api_times_out_with_bounded_retries(self, vsp: VirtualSpApi) -> None:
        client = SpApiClient(mobile_settings(vsp, read_timeout=0.3, retries=2))
        ticket = client.push(id_num=CITIZEN, sign_info=SIGN)
        vsp.fault, vsp.slow_seconds = "slow", 1.0
        before = dict(vsp.calls)
        with pytest.raises(errors.MobileApiUnavailable):
            client.poll(ticket)  # read-only: retried
        with pytest.raises(errors.MobileApiUnavailable):
            client.push(id_num=CITIZEN, sign_info=SIGN)  # may have rung: never repeated
        time.sleep(1.2)
        assert vsp.calls["ATH-02"] - before["ATH-02"] == 3
        assert vsp.calls["ATH-03"] - before["ATH-03"] == 1

    def test_connection_refused_is_retried_then_refused(self) -> None:
        from moica_auth.mobile.settings import parse_mobile_settings
        from tests.redis_server import free_port

        settings = parse_mobile_settings(
            {
                "api_url": f"http://127.0.0.1:{free_port()}",
                "service_id": "S",
                "aes_key": bytes(32),
                "retries": 2,
            }
        )
        slept: list[float] = []
        with pytest.raises(errors.MobileApiUnavailable):
            SpApiClient(settings, sleep=slept.append).push(id_num=CITIZEN, sign_info=SIGN)
        assert len(slept) == 2
