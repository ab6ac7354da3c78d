"""Every way a MOICA login can fail, as one exception hierarchy.

Each failure is a subclass of :class:`MoicaAuthError` with

* ``code``: a stable, machine-readable string that clients and logs may rely on;
* ``message``: a user-facing message, translated through Django i18n (the msgid is
  English, the zh-Hant catalogue in ``moica_auth/locale`` is the primary language);
* ``http_status``: the 4xx a view answers with.

Library errors are translated at the boundary (``raise SignatureInvalid() from exc``) so
callers never have to catch ``cryptography`` or ``asn1crypto`` exceptions. Errors that
carry data (revocation reason and time, tries left) keep it as attributes and in
:meth:`MoicaAuthError.as_dict`.

Messages never contain a PIN, a whole signature or a full ID number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import override

__all__ = [
    "AccountUnavailable",
    "BirthDateInvalid",
    "BirthDateMismatch",
    "CardNumberMismatch",
    "CertificateExpired",
    "CertificateMismatch",
    "CertificateNotYetValid",
    "CertificateRevoked",
    "CertificateSuspended",
    "ChainInvalid",
    "ChainTooComplex",
    "ChallengeExpired",
    "ChallengeReused",
    "ChallengeUnknown",
    "ConfigurationError",
    "ContentMismatch",
    "CrlInvalid",
    "CsrfFailed",
    "EvidenceInvalid",
    "FieldRequired",
    "IdNumberInvalid",
    "IdNumberMismatch",
    "LoginUnavailable",
    "MalformedCertificate",
    "MalformedRequest",
    "MalformedSignature",
    "MoicaAuthError",
    "NonceMismatch",
    "NotCitizenCertificate",
    "OcspInvalid",
    "OriginMismatch",
    "PersonalDataUnverified",
    "PolicyNotAllowed",
    "RequestTooLarge",
    "RevocationError",
    "RevocationStale",
    "RevocationUnavailable",
    "SessionMismatch",
    "SignatureInvalid",
    "SignerMismatch",
    "SigningRequestExpired",
    "SigningRequestInvalid",
    "SigningRequestReused",
    "SigningRequestUnknown",
    "StoreUnavailable",
    "TimestampError",
    "TimestampUntrusted",
    "TooManyAttempts",
    "UnsupportedKey",
    "UntrustedIssuer",
    "WeakHash",
    "WeakKey",
    "WrongKeyUsage",
    "error_codes",
]


class MoicaAuthError(Exception):
    """Base of every failure this library reports."""

    code: ClassVar[str] = "moica_error"
    default_message: ClassVar[str | Promise] = _("The citizen certificate login failed.")
    http_status: ClassVar[int] = 400

    def __init__(self, detail: str | None = None, **data: Any) -> None:
        # ``detail`` is for logs and developers (English, never personal data);
        # ``message`` is what a citizen sees.
        self.detail = detail or ""
        self.data = data
        super().__init__(f"{self.code}: {detail}" if detail else self.code)

    @property
    def message(self) -> str:
        """The user-facing message in the active language."""
        return str(self.default_message)

    def message_in(self, language: str) -> str:
        with override(language):
            return str(self.default_message)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of a refusal: ``{"ok": false, "code", "message", …}``."""
        out: dict[str, Any] = {"ok": False, "code": self.code, "message": self.message}
        for key, value in self.data.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


# --- input ----------------------------------------------------------------------------


class MalformedRequest(MoicaAuthError):
    code = "malformed_request"
    default_message = _("The request is malformed.")


class RequestTooLarge(MoicaAuthError):
    code = "request_too_large"
    default_message = _("The request is too large.")
    http_status = 413


class FieldRequired(MoicaAuthError):
    code = "field_required"
    default_message = _("A required field is missing.")


class CsrfFailed(MoicaAuthError):
    """Django's CSRF check refused the request: no or a stale CSRF cookie/token, or an
    ``Origin``/``Referer`` of another site. Reloading the page gets a fresh token."""

    code = "csrf_failed"
    default_message = _("The login request has expired. Please try again.")
    http_status = 403


class ConfigurationError(MoicaAuthError):
    """Raised when settings are inconsistent; system checks report these at start-up."""

    code = "configuration_error"
    default_message = _("The citizen certificate login is not configured correctly.")
    http_status = 500


# --- challenge ------------------------------------------------------------------------


class ChallengeExpired(MoicaAuthError):
    code = "challenge_expired"
    default_message = _("The login request has expired. Please try again.")


class ChallengeReused(MoicaAuthError):
    code = "challenge_reused"
    default_message = _("This login request has already been used. Please try again.")


class ChallengeUnknown(MoicaAuthError):
    code = "challenge_unknown"
    default_message = _("The login request is unknown or has expired. Please try again.")


class OriginMismatch(MoicaAuthError):
    code = "origin_mismatch"
    default_message = _("The login request was made for another site.")


class SessionMismatch(MoicaAuthError):
    code = "session_mismatch"
    default_message = _("The login request belongs to another browser session.")


# --- signature ------------------------------------------------------------------------


class MalformedSignature(MoicaAuthError):
    code = "malformed_signature"
    default_message = _("The signature could not be read.")


class SignatureInvalid(MoicaAuthError):
    code = "signature_invalid"
    default_message = _("The signature is not valid.")


class ContentMismatch(MoicaAuthError):
    code = "content_mismatch"
    default_message = _("The signed content is not the login request that was issued.")


class WeakHash(MoicaAuthError):
    code = "weak_hash"
    default_message = _("The signature uses a hash algorithm that is not accepted.")


class CertificateMismatch(MoicaAuthError):
    code = "certificate_mismatch"
    default_message = _("The certificate does not match the one that signed.")


class NonceMismatch(MoicaAuthError):
    code = "nonce_mismatch"
    default_message = _("The signed nonce does not match the login request.")


class CardNumberMismatch(MoicaAuthError):
    code = "card_number_mismatch"
    default_message = _("The signed card number does not match the card.")


# --- certificate and chain ------------------------------------------------------------


class MalformedCertificate(MoicaAuthError):
    code = "malformed_certificate"
    default_message = _("The certificate could not be read.")


class NotCitizenCertificate(MoicaAuthError):
    code = "not_citizen_certificate"
    default_message = _("This is not a citizen digital certificate.")


class CertificateExpired(MoicaAuthError):
    code = "certificate_expired"
    default_message = _("The certificate has expired.")
    http_status = 403


class CertificateNotYetValid(MoicaAuthError):
    code = "certificate_not_yet_valid"
    default_message = _("The certificate is not yet valid.")
    http_status = 403


class UntrustedIssuer(MoicaAuthError):
    code = "untrusted_issuer"
    default_message = _("The certificate was not issued by a trusted authority.")
    http_status = 403


class ChainInvalid(MoicaAuthError):
    code = "chain_invalid"
    default_message = _("The certificate chain is not valid.")
    http_status = 403


class WrongKeyUsage(MoicaAuthError):
    code = "wrong_key_usage"
    default_message = _(
        "This certificate cannot be used to log in. Use the card's signing certificate."
    )
    http_status = 403


class PolicyNotAllowed(MoicaAuthError):
    code = "policy_not_allowed"
    default_message = _("The certificate policy is not accepted by this service.")
    http_status = 403


class WeakKey(MoicaAuthError):
    code = "weak_key"
    default_message = _("The certificate key is too weak.")
    http_status = 403


class ChainTooComplex(MoicaAuthError):
    """The token asks for more path-building work than a login may cost: it carries
    more certificates than ``max_carried_certificates``, or finding its issuer would take
    more than ``max_signature_checks`` signature verifications. Refused before the work."""

    code = "chain_too_complex"
    default_message = _("The signature carries too many certificates.")
    http_status = 400


class UnsupportedKey(MoicaAuthError):
    """A public key no MOICA certificate has (an RSA exponent or modulus size, or a key
    type, outside the profile), refused before anything is verified with it."""

    code = "unsupported_key"
    default_message = _("The certificate key is not one this service accepts.")
    http_status = 403


# --- revocation -----------------------------------------------------------------------


class RevocationError(MoicaAuthError):
    """Base of revocation failures; ``data`` may carry ``reason`` and ``revoked_at``."""

    code = "revocation_error"
    default_message = _("The certificate status could not be established.")
    http_status = 403


class CertificateRevoked(RevocationError):
    code = "certificate_revoked"
    default_message = _("The certificate has been revoked.")


class CertificateSuspended(RevocationError):
    code = "certificate_suspended"
    default_message = _(
        "The certificate is suspended. Reactivate it with the certificate authority "
        "before logging in."
    )


class RevocationUnavailable(RevocationError):
    code = "revocation_unavailable"
    default_message = _(
        "The certificate status could not be checked right now. Please try again later."
    )
    http_status = 503


class RevocationStale(RevocationError):
    code = "revocation_stale"
    default_message = _("The revocation information is out of date.")
    http_status = 503


class CrlInvalid(RevocationError):
    code = "crl_invalid"
    default_message = _("The certificate revocation list is not valid.")
    http_status = 503


class OcspInvalid(RevocationError):
    code = "ocsp_invalid"
    default_message = _("The certificate status response is not valid.")
    http_status = 503


# --- personal data --------------------------------------------------------------------


class IdNumberInvalid(MoicaAuthError):
    code = "id_number_invalid"
    default_message = _("The ID number is not valid.")


class IdNumberMismatch(MoicaAuthError):
    code = "id_number_mismatch"
    default_message = _("The ID number does not match the certificate.")
    http_status = 403


class BirthDateInvalid(MoicaAuthError):
    code = "birth_date_invalid"
    default_message = _("The birth date is not valid.")


class BirthDateMismatch(MoicaAuthError):
    code = "birth_date_mismatch"
    default_message = _("The personal data could not be confirmed.")
    http_status = 403


class PersonalDataUnverified(MoicaAuthError):
    code = "personal_data_unverified"
    default_message = _("The personal data could not be confirmed right now.")
    http_status = 503


class AccountUnavailable(MoicaAuthError):
    """No active user may log in with this citizen (disabled, or creation turned off)."""

    code = "account_unavailable"
    default_message = _("No account can be used with this certificate.")
    http_status = 403


class StoreUnavailable(MoicaAuthError):
    """The shared store (Redis) cannot be reached; logins fail closed."""

    code = "store_unavailable"
    default_message = _("The login service is temporarily unavailable. Please try again later.")
    http_status = 503


class LoginUnavailable(MoicaAuthError):
    """Something unexpected failed on the server (a bug, a database error); the login is
    refused rather than answered with an HTML 500. Logs name only the exception type."""

    code = "login_unavailable"
    default_message = _("The login service is temporarily unavailable. Please try again later.")
    http_status = 503


class TooManyAttempts(MoicaAuthError):
    code = "too_many_attempts"
    default_message = _("Too many failed attempts. Please wait and try again later.")
    http_status = 429


# --- signing (sign what you see) ------------------------------------------------------


class SigningRequestInvalid(MoicaAuthError):
    """A form or document cannot be turned into a signature request (too large, a
    control or bidirectional-override character, an empty label, …)."""

    code = "signing_request_invalid"
    default_message = _("This application cannot be prepared for signing.")


class SigningRequestUnknown(MoicaAuthError):
    code = "signing_request_unknown"
    default_message = _("This signature request is unknown. Please start again.")
    http_status = 404


class SigningRequestExpired(MoicaAuthError):
    code = "signing_request_expired"
    default_message = _("This signature request has expired. Please start again.")


class SigningRequestReused(MoicaAuthError):
    code = "signing_request_reused"
    default_message = _("This signature request was already used. Please start again.")
    http_status = 409


class SignerMismatch(MoicaAuthError):
    """The signature was made with another certificate than the logged-in citizen's."""

    code = "signer_mismatch"
    default_message = _(
        "The signature was not made with the citizen certificate you logged in with."
    )
    http_status = 403


class TimestampError(MoicaAuthError):
    """The RFC 3161 time-stamp authority did not give a valid token."""

    code = "timestamp_error"
    default_message = _("The time-stamp service is unavailable. Please try again later.")
    http_status = 503


class TimestampUntrusted(TimestampError):
    code = "timestamp_untrusted"
    default_message = _("The time-stamp service is not trusted.")


class EvidenceInvalid(MoicaAuthError):
    """An evidence record does not verify; ``data["field"]`` names the field at fault."""

    code = "evidence_invalid"
    default_message = _("The evidence record does not verify.")


def error_codes() -> dict[str, type[MoicaAuthError]]:
    """Every stable error code, mapped to its exception class."""
    found: dict[str, type[MoicaAuthError]] = {}
    pending: list[type[MoicaAuthError]] = [MoicaAuthError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


# The mobile path's errors live beside their client; importing them here registers their
# codes with error_codes() (and its uniqueness test) wherever exceptions are imported.
from moica_auth.mobile import errors as _mobile_errors  # noqa: E402,F401
