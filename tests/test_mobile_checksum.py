"""The SP API checksum (AES-256-GCM over the SHA-256 of each interface's payload) and the
mapping of MOI's error codes."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from moica_auth.exceptions import error_codes
from moica_auth.mobile import errors
from moica_auth.mobile.checksum import SP_FIELDS, make_checksum, payload_of, verify_checksum
from moica_auth.mobile.errors import MobileChecksumInvalid, error_for_upstream, is_pending

KEY = bytes(range(32))


def test_checksum_is_iv_then_gcm_of_the_lower_hex_digest() -> None:
    payload = "tid" + "svc" + "A123456789" + "SIGN" + "I-SCAN" + "登入" + "data"
    checksum = make_checksum(KEY, payload)
    raw = bytes.fromhex(checksum)
    iv, sealed = raw[:12], raw[12:]
    plain = AESGCM(KEY).decrypt(iv, sealed, None)
    assert plain == hashlib.sha256(payload.encode("utf-8")).hexdigest().encode("ascii")
    verify_checksum(KEY, payload, checksum)
    verify_checksum(KEY, payload, checksum.upper())


def test_every_checksum_gets_a_fresh_iv() -> None:
    ivs = {make_checksum(KEY, "same payload")[:24] for _ in range(50)}
    assert len(ivs) == 50
    assert "0" * 24 not in ivs


def test_payload_follows_the_documented_field_order() -> None:
    values = {
        "transaction_id": "T",
        "sp_service_id": "S",
        "id_num": "I",
        "op_code": "O",
        "op_mode": "M",
        "hint": "H",
        "sign_data": "D",
        "device_user_def_desc": "V",
    }
    assert payload_of(SP_FIELDS["ATH-01"], values) == "TSIOMHD"
    assert payload_of(SP_FIELDS["ATH-03"], values) == "TSIVOHD"
    assert payload_of(SP_FIELDS["ATH-04"], values) == "TSIOMH"
    assert payload_of(SP_FIELDS["LF-01"], values) == "TSI"
    assert payload_of(SP_FIELDS["WEB-01"], values) == "TSOHD"
    assert payload_of(SP_FIELDS["ATH-03"], {**values, "device_user_def_desc": None}) == "TSIOHD"


@pytest.mark.parametrize("position", [0, 5, 23, 24, 100, 150, 183])
def test_rejects_a_checksum_with_any_changed_digit(position: int) -> None:
    checksum = make_checksum(KEY, "payload")
    flipped = "1" if checksum[position] != "1" else "2"
    with pytest.raises(MobileChecksumInvalid):
        verify_checksum(KEY, "payload", checksum[:position] + flipped + checksum[position + 1 :])


@pytest.mark.parametrize("bad", [None, "", "zz" * 92, "00" * 91, "00" * 93, 12345])
def test_rejects_missing_or_malformed_checksum(bad: object) -> None:
    with pytest.raises(MobileChecksumInvalid):
        verify_checksum(KEY, "payload", bad)


def test_rejects_other_payload_and_other_key() -> None:
    checksum = make_checksum(KEY, "payload")
    with pytest.raises(MobileChecksumInvalid):
        verify_checksum(KEY, "payload2", checksum)
    with pytest.raises(MobileChecksumInvalid):
        verify_checksum(bytes(32), "payload", checksum)


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("SP-API-ATH-01-INV_SP_CHECKSUM", errors.MobileServiceMisconfigured),
        ("SP-API-ATH-01-SPSVCID_NF", errors.MobileServiceMisconfigured),
        ("SP-API-ATH-01-PM_IDN_FT_ERR", errors.MobileIdNumberRejected),
        ("SP-API-ATH-01-IDNUM_USERPROF_NF", errors.MobileNoDevice),
        ("SP-API-ATH-03-IDNUM_DEVPROF_NF", errors.MobileNoDevice),
        ("SP-API-ATH-03-DEV_DESC_MISMATCH", errors.MobileDeviceMismatch),
        ("SP-API-ATH-02-SPTKT_OVD", errors.MobileTicketExpired),
        ("SP-API-ATH-02-SPTKTID_SPTKT_RDM", errors.MobileTicketUsed),
        ("SP-API-ATH-01-SIGNDATA_LEN_LIMIT", errors.MobileRequestRejected),
        ("SP-API-ATH-04-BATSIGN_CNT_LIMIT", errors.MobileRequestRejected),
        ("SP-API-ATH-01-SPTKT_TIME_ORV", errors.MobileRequestRejected),
        ("SP-API-ATH-01-TXNLOG_INS_ERR", errors.MobileTransactionReused),
        ("SP-API-ATH-02-APP_USER_CANCEL", errors.MobileUserCancelled),
        ("SP-API-ATH-02-APP_SIGN_FAILURE", errors.MobileSignFailed),
        ("SP-API-ATH-02-PM_INV_SG", errors.MobileSignFailed),
        ("SP-API-ATH-03-PS_FCM_NOT_FOUND", errors.MobileAppNotReachable),
        ("SP-API-ATH-01-DB_CONN_ERR", errors.MobileApiUnavailable),
        ("SP-API-ATH-03-PS_SEND_ERR", errors.MobileApiUnavailable),
        ("SP-API-ATH-01-SOMETHING_NEW", errors.MobileUpstreamError),
        ("LF-01-IDNUM_USERPROF_NF", errors.MobileNoDevice),
    ],
)
def test_every_documented_error_code_has_a_stable_refusal(
    upstream: str, expected: type[errors.MobileError]
) -> None:
    error = error_for_upstream(upstream)
    assert type(error) is expected
    assert error.data["upstream"] in upstream
    assert error.message_in("zh-hant") != error.message_in("en")


def test_upstream_text_never_reaches_the_refusal() -> None:
    error = error_for_upstream("SP-API-ATH-01-<script>A123456789</script>")
    assert "A123456789" not in str(error.as_dict())


@pytest.mark.parametrize("code", ["20002", "20003", "SP-API-ATH-02-SPTKTID_TXNLOG_NF"])
def test_pending_codes(code: str) -> None:
    assert is_pending(code)


@pytest.mark.parametrize("code", ["0", "20001", "SP-API-ATH-02-SPTKT_OVD"])
def test_not_pending_codes(code: str) -> None:
    assert not is_pending(code)


def test_mobile_codes_are_registered_and_unique() -> None:
    codes = error_codes()
    mobile = [cls for cls in codes.values() if cls.__module__ == errors.__name__]
    assert len(mobile) >= 20
    assert all(cls.code.startswith("mobile_") for cls in mobile)
