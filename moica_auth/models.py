"""Database models: identity binding, login audit, and administrator-managed trust anchors.

No model stores a full national ID number: :class:`CitizenIdentity` keeps only an HMAC
of it (keyed with ``MOICA_AUTH_HASH_KEY``), which is enough to recognise the same person
on a renewed card (a renewal has a new certificate and a new card serial).
"""

from __future__ import annotations

from datetime import UTC

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class CitizenIdentity(models.Model):
    """Binds a citizen to a Django user.

    The key is ``id_hash`` (HMAC-SHA256 of the verified ID number) when the ID number was
    verified at least once; before that, the signing certificate's SHA-256 fingerprint.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="moica_identities",
        verbose_name=_("user"),
    )
    id_hash = models.CharField(
        _("ID number hash"), max_length=64, unique=True, null=True, blank=True
    )
    cert_fingerprint = models.CharField(_("certificate fingerprint"), max_length=64, db_index=True)
    name = models.CharField(_("name"), max_length=200, blank=True)
    card_serial = models.CharField(_("card serial"), max_length=32, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_login = models.DateTimeField(_("last login"), null=True, blank=True)

    class Meta:
        verbose_name = _("citizen identity")
        verbose_name_plural = _("citizen identities")

    def __str__(self) -> str:
        return f"{self.name or '?'} ({self.card_serial or self.cert_fingerprint[:16]})"


class LoginAttempt(models.Model):
    """One login attempt, successful or not (audit trail).

    Successful attempts keep the evidence: the challenge text the citizen signed, the
    signature and the certificate (all base64/text). Evidence is never logged.
    """

    OK = "ok"

    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    outcome = models.CharField(_("outcome"), max_length=64, db_index=True)
    cert_fingerprint = models.CharField(_("certificate fingerprint"), max_length=64, blank=True)
    cert_serial = models.CharField(_("certificate serial"), max_length=64, blank=True)
    issuer = models.CharField(_("issuer"), max_length=500, blank=True)
    revocation_source = models.CharField(_("revocation source"), max_length=16, blank=True)
    revocation_checked_at = models.DateTimeField(_("revocation checked"), null=True, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    signed_content = models.TextField(_("signed content"), blank=True)
    signature = models.TextField(_("signature (base64)"), blank=True)
    certificate = models.TextField(_("certificate (base64 DER)"), blank=True)

    class Meta:
        verbose_name = _("login attempt")
        verbose_name_plural = _("login attempts")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.outcome}"

    @property
    def succeeded(self) -> bool:
        return self.outcome == self.OK


class TrustAnchor(models.Model):
    """A CA certificate an administrator added to the trust store.

    Roots (``is_root``) become trust anchors (RFC 5280 §6.1.1 (d)); other CA certificates
    are offered as intermediates for path building.
    """

    SOURCE_UPLOAD = "upload"
    SOURCE_COMMAND = "command"
    SOURCE_OFFICIAL = "official"
    SOURCES = (
        (SOURCE_UPLOAD, _("uploaded")),
        (SOURCE_COMMAND, _("management command")),
        (SOURCE_OFFICIAL, _("official (fingerprint pinned)")),
    )

    der = models.BinaryField(_("certificate (DER)"))
    subject = models.CharField(_("subject"), max_length=500)
    subject_key_id = models.CharField(_("subject key identifier"), max_length=128, blank=True)
    not_before = models.DateTimeField(_("valid from"))
    not_after = models.DateTimeField(_("valid until"))
    sha256 = models.CharField(_("SHA-256 fingerprint"), max_length=64, unique=True)
    is_root = models.BooleanField(_("self-signed root"), default=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    added_at = models.DateTimeField(_("added"), auto_now_add=True)
    source = models.CharField(_("source"), max_length=16, choices=SOURCES, default=SOURCE_UPLOAD)

    class Meta:
        verbose_name = _("trust anchor")
        verbose_name_plural = _("trust anchors")
        ordering = ("subject", "not_before")

    def __str__(self) -> str:
        return f"{self.subject} [{self.subject_key_id[:16] or self.sha256[:16]}]"

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(bytes(self.der))

    @classmethod
    def fields_from_certificate(cls, cert: x509.Certificate) -> dict[str, object]:
        """The model fields describing ``cert`` (subject, key id, validity, fingerprint)."""
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            ski_hex = ski.value.digest.hex().upper()
        except x509.ExtensionNotFound:
            ski_hex = ""
        return {
            "der": cert.public_bytes(serialization.Encoding.DER),
            "subject": cert.subject.rfc4514_string()[:500],
            "subject_key_id": ski_hex,
            "not_before": cert.not_valid_before_utc.astimezone(UTC),
            "not_after": cert.not_valid_after_utc.astimezone(UTC),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "is_root": cert.subject == cert.issuer,
        }


class SignatureRequest(models.Model):
    """One request to sign (``moica_auth.signing``); single use, bounded lifetime.

    ``text`` is exactly what the page showed and the card signs. It names the signer by a
    masked name and a keyed hash of the login certificate: no ID number is stored. The
    row is also the audit entry of the attempt: ``outcome`` is ``"pending"``, ``"ok"``
    or the refusal's error code, with ``decided_at`` and ``client_ip``.
    """

    PENDING = "pending"
    OK = "ok"

    token = models.CharField(_("request id"), max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("user"),
    )
    session_hash = models.CharField(_("session binding"), max_length=64)
    portal = models.CharField(_("portal"), max_length=200)
    service = models.CharField(_("service"), max_length=200)
    application_id = models.CharField(_("application id"), max_length=200)
    signature_type = models.CharField(_("signature type"), max_length=8)
    text = models.TextField(_("text to sign"))
    nonce = models.CharField(_("nonce"), max_length=64)
    signer_key = models.CharField(_("signer key (keyed hash)"), max_length=32)
    created_at = models.DateTimeField(_("created"))
    expires_at = models.DateTimeField(_("expires"))
    outcome = models.CharField(_("outcome"), max_length=64, default=PENDING, db_index=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)

    class Meta:
        verbose_name = _("signature request")
        verbose_name_plural = _("signature requests")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.service} {self.application_id} ({self.outcome})"


class SignedApplication(models.Model):
    """An application the citizen signed, with its evidence record (``moica-auth-evidence/1``)."""

    request = models.OneToOneField(
        SignatureRequest,
        on_delete=models.PROTECT,
        related_name="signed",
        verbose_name=_("signature request"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("user"),
    )
    service = models.CharField(_("service"), max_length=200, db_index=True)
    application_id = models.CharField(_("application id"), max_length=200, db_index=True)
    signer_name = models.CharField(_("signer name"), max_length=200, blank=True)
    cert_fingerprint = models.CharField(_("certificate fingerprint"), max_length=64)
    signed_at = models.DateTimeField(_("decided"))
    timestamp_time = models.DateTimeField(_("time-stamp time"), null=True, blank=True)
    evidence = models.TextField(_("evidence (JSON)"))

    class Meta:
        verbose_name = _("signed application")
        verbose_name_plural = _("signed applications")
        ordering = ("-signed_at",)

    def __str__(self) -> str:
        return f"{self.service} {self.application_id}"
