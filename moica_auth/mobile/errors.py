"""Every way the mobile citizen certificate path can fail.

Each class is a :class:`~moica_auth.exceptions.MoicaAuthError` with a stable ``code``
(prefixed ``mobile_``), a message a citizen can act on (English msgid, zh-Hant in the
catalogue) and an HTTP status. MOI's error codes (``SP-API-ATH-01-SPTKT_OVD`` …) are
mapped by :func:`error_for_upstream`; the upstream suffix travels in ``data["upstream"]``
(it names no person), never the ``error_message`` text MOI sent.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _

from moica_auth.exceptions import MoicaAuthError, TooManyAttempts

__all__ = [
    "PENDING_CODES",
    "MobileApiUnavailable",
    "MobileAppNotReachable",
    "MobileBatchTooLarge",
    "MobileCertificateRequired",
    "MobileChecksumInvalid",
    "MobileDeviceMismatch",
    "MobileError",
    "MobileIdNumberRejected",
    "MobileMalformedAnswer",
    "MobileNoDevice",
    "MobileNoSigningCertificate",
    "MobileNotConfigured",
    "MobileRequestRejected",
    "MobileResultMismatch",
    "MobileServiceMisconfigured",
    "MobileSignFailed",
    "MobileSigningLoginRequired",
    "MobileTicketExpired",
    "MobileTicketUsed",
    "MobileTooManyPending",
    "MobileTooManyPushes",
    "MobileTransactionReused",
    "MobileTransactionUnknown",
    "MobileUpstreamError",
    "MobileUserCancelled",
    "error_for_upstream",
    "is_pending",
    "upstream_suffix",
]


class MobileError(MoicaAuthError):
    """Base of the mobile path's failures."""

    code = "mobile_error"
    default_message = _("The mobile citizen certificate login failed.")


class MobileNotConfigured(MobileError):
    code = "mobile_not_configured"
    default_message = _("The mobile citizen certificate login is not available on this site.")
    http_status = 503


class MobileChecksumInvalid(MobileError):
    """An answer's ``idp_checksum`` is missing or does not verify under our key: it did
    not come from MOI (or was altered), so nothing in it is used."""

    code = "mobile_checksum_invalid"
    default_message = _("The answer of the mobile certificate service could not be authenticated.")
    http_status = 403


class MobileMalformedAnswer(MobileError):
    code = "mobile_malformed_answer"
    default_message = _(
        "The mobile certificate service gave an unreadable answer. Please try again later."
    )
    http_status = 503


class MobileApiUnavailable(MobileError):
    """Transport failure, a 5xx, or MOI's own outage codes (``DB_*``, ``PS_*``)."""

    code = "mobile_api_unavailable"
    default_message = _(
        "The mobile certificate service is temporarily unavailable. Please try again later."
    )
    http_status = 503


class MobileServiceMisconfigured(MobileError):
    """MOI does not know this site (``SPSVCID_NF``) or refused our checksum
    (``INV_SP_CHECKSUM``): the service ID or key is wrong. An admin must fix it."""

    code = "mobile_service_misconfigured"
    default_message = _(
        "The mobile citizen certificate login is not set up correctly on this site."
    )
    http_status = 503


class MobileIdNumberRejected(MobileError):
    code = "mobile_id_number_rejected"
    default_message = _("The mobile certificate service did not accept this ID number.")


class MobileNoDevice(MobileError):
    code = "mobile_no_device"
    default_message = _(
        "No phone is registered for this ID number. Install the mobile citizen certificate "
        "app (行動自然人憑證) and register at https://fido.moi.gov.tw first."
    )
    http_status = 403


class MobileNoSigningCertificate(MobileError):
    code = "mobile_no_certificate"
    default_message = _(
        "This ID number has no mobile citizen certificate for signing. Apply for one in "
        "the mobile citizen certificate app first."
    )
    http_status = 403


class MobileDeviceMismatch(MobileError):
    code = "mobile_device_mismatch"
    default_message = _("The chosen phone is not registered for this ID number.")
    http_status = 403


class MobileAppNotReachable(MobileError):
    code = "mobile_open_app"
    default_message = _(
        "Your phone could not be reached. Open the mobile citizen certificate app first, "
        "then try again."
    )
    http_status = 409


class MobileTicketExpired(MobileError):
    code = "mobile_ticket_expired"
    default_message = _("The request to your phone has expired. Please start again.")
    http_status = 410


class MobileTicketUsed(MobileError):
    code = "mobile_ticket_used"
    default_message = _("This request to your phone has already been used. Please start again.")
    http_status = 409


class MobileRequestRejected(MobileError):
    """MOI refused the shape of our request (sign data too long, too many documents,
    time limit out of range): a bug or a setting of this site."""

    code = "mobile_request_rejected"
    default_message = _("The mobile certificate service refused the request.")
    http_status = 503


class MobileTransactionReused(MobileError):
    code = "mobile_transaction_reused"
    default_message = _("The request to your phone could not be created. Please try again.")
    http_status = 409


class MobileUserCancelled(MobileError):
    code = "mobile_cancelled"
    default_message = _("You cancelled the request in the mobile citizen certificate app.")
    http_status = 403


class MobileSignFailed(MobileError):
    code = "mobile_sign_failed"
    default_message = _(
        "The mobile citizen certificate app could not sign. Please try again, or check the app."
    )
    http_status = 403


class MobileUpstreamError(MobileError):
    """An error code MOI documents nowhere (or not for this interface)."""

    code = "mobile_upstream_error"
    default_message = _("The mobile certificate service reported an error. Please try again later.")
    http_status = 503


class MobileResultMismatch(MobileError):
    """A result that does not belong to the transaction, ticket, ID number or session it
    is offered for (a replayed or swapped result)."""

    code = "mobile_result_mismatch"
    default_message = _("The answer from your phone does not belong to this login.")
    http_status = 403


class MobileCertificateRequired(MobileError):
    """The certificate that signed is valid but is not a mobile certificate (SDA form
    ``"mobile"`` absent): a card certificate has no business on the mobile path."""

    code = "mobile_certificate_required"
    default_message = _("The signing certificate is not a mobile citizen certificate.")
    http_status = 403


class MobileTransactionUnknown(MobileError):
    code = "mobile_transaction_unknown"
    default_message = _("This mobile login is unknown or has expired. Please start again.")


class MobileBatchTooLarge(MobileError):
    """More documents than one BATSIGN (ATH-04) takes: refused before any upstream call."""

    code = "mobile_batch_too_large"
    default_message = _("At most 20 documents can be signed with the phone at once.")
    http_status = 400


class MobileSigningLoginRequired(MobileError):
    """Signing with the phone needs a login with the phone: the signature must come from
    the login certificate, which the signed text names."""

    code = "mobile_sign_login_required"
    default_message = _(
        "To sign with your phone, log in with the mobile citizen certificate first."
    )
    http_status = 403


class MobileTooManyPushes(TooManyAttempts):
    code = "mobile_push_limited"
    default_message = _(
        "Too many requests were sent to this phone or from this address. Please wait and "
        "try again later."
    )


class MobileTooManyPending(TooManyAttempts):
    code = "mobile_too_many_pending"
    default_message = _(
        "Too many mobile logins are waiting in this browser. Finish or cancel one first."
    )


# --- MOI's error codes ----------------------------------------------------------------

#: Answers of ATH-02 that mean "not finished yet" (DOMAIN.md: 20002, 20003, or a code
#: ending in SPTKTID_TXNLOG_NF).
PENDING_CODES = frozenset({"20002", "20003"})

_BY_SUFFIX: dict[str, type[MobileError]] = {
    "INV_SP_CHECKSUM": MobileServiceMisconfigured,
    "SPSVCID_NF": MobileServiceMisconfigured,
    "PM_IDN_FT_ERR": MobileIdNumberRejected,
    "IDNUM_USERPROF_NF": MobileNoDevice,
    "IDNUM_DEVPROF_NF": MobileNoDevice,
    "DEV_DESC_MISMATCH": MobileDeviceMismatch,
    "SPTKT_OVD": MobileTicketExpired,
    "SPTKTID_SPTKT_RDM": MobileTicketUsed,
    "SIGNDATA_LEN_LIMIT": MobileRequestRejected,
    "BATSIGN_CNT_LIMIT": MobileRequestRejected,
    "SPTKT_TIME_ORV": MobileRequestRejected,
    "TXNLOG_INS_ERR": MobileTransactionReused,
    "APP_USER_CANCEL": MobileUserCancelled,
    "APP_SIGN_FAILURE": MobileSignFailed,
    "PM_INV_SG": MobileSignFailed,
    "PS_FCM_NOT_FOUND": MobileAppNotReachable,
}
# "SP-API-ATH-01-" and friends: the interface prefix in front of the code proper.
_PREFIX_RE = re.compile(r"^(?:SP-API-)?(?:ATH|LF|WEB|APP)-[0-9]{2}-")
_SAFE_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def upstream_suffix(error_code: str) -> str:
    """The code proper of MOI's ``{interface}-{code}`` (``SPTKT_OVD``), or the whole
    code when it has no interface prefix (``20002``)."""
    return _PREFIX_RE.sub("", error_code, count=1)


def is_pending(error_code: str) -> bool:
    """Whether an ATH-02 ``error_code`` means "the citizen has not answered yet"."""
    return error_code in PENDING_CODES or error_code.endswith("SPTKTID_TXNLOG_NF")


def error_for_upstream(error_code: str, *, authenticated: bool = True) -> MobileError:
    """The typed refusal for MOI's non-zero, non-pending ``error_code``.

    ``authenticated`` says whether the answer's ``idp_checksum`` verified; an error
    answer without a checksum is still a refusal (nothing is granted on it), the flag
    only goes to the logs.
    """
    suffix = upstream_suffix(error_code)
    shown = suffix if _SAFE_RE.fullmatch(suffix) else "?"
    detail = f"MOI answered {shown}" + ("" if authenticated else " (unauthenticated)")
    cls = _BY_SUFFIX.get(suffix)
    if cls is None and (suffix.startswith("DB_") or suffix.startswith("PS_")):
        cls = MobileApiUnavailable
    if cls is None:
        cls = MobileUpstreamError
    return cls(detail, upstream=shown)
