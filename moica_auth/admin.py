"""Django admin: trust anchors (upload, enable/disable), read-only audit and identities."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from moica_auth.anchors import AnchorRefused, check_anchor, read_certificates
from moica_auth.identity.relink import RelinkRefused, relink_identity
from moica_auth.models import CitizenIdentity, LoginAttempt, TrustAnchor

_MAX_UPLOAD = 256 * 1024


class TrustAnchorForm(forms.ModelForm):  # type: ignore[type-arg]
    """Upload a CA certificate (PEM or DER); everything else is read from it."""

    upload = forms.FileField(
        label=_("certificate file (PEM or DER)"),
        required=False,
        help_text=_(
            "A CA certificate. Its subject, key id, validity and fingerprint are shown "
            "after saving; compare the fingerprint with the published one."
        ),
    )

    class Meta:
        model = TrustAnchor
        fields = ("enabled",)

    def clean_upload(self) -> Any:
        upload = self.cleaned_data.get("upload")
        if upload is None:
            if self.instance.pk is None:
                raise forms.ValidationError(_("Choose a certificate file."))
            return None
        if upload.size > _MAX_UPLOAD:
            raise forms.ValidationError(_("The file is too large for a certificate."))
        try:
            certs = read_certificates(upload.read())
            if len(certs) != 1:
                raise AnchorRefused(str(_("Upload exactly one certificate per file.")))
            check_anchor(certs[0])
        except AnchorRefused as exc:
            raise forms.ValidationError(exc.detail) from exc
        fields = TrustAnchor.fields_from_certificate(certs[0])
        if (
            TrustAnchor.objects.filter(sha256=fields["sha256"])
            .exclude(pk=self.instance.pk)
            .exists()
        ):
            raise forms.ValidationError(_("This certificate is already a trust anchor."))
        return fields

    def save(self, commit: bool = True) -> Any:
        fields = self.cleaned_data.get("upload")
        if fields:
            for name, value in fields.items():
                setattr(self.instance, name, value)
            self.instance.source = TrustAnchor.SOURCE_UPLOAD
        return super().save(commit=commit)


@admin.register(TrustAnchor)
class TrustAnchorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = TrustAnchorForm
    list_display = ("subject", "subject_key_id", "not_after", "is_root", "enabled", "source")
    list_filter = ("enabled", "is_root", "source")
    readonly_fields = (
        "subject",
        "subject_key_id",
        "not_before",
        "not_after",
        "sha256",
        "is_root",
        "source",
        "added_at",
    )
    fields = ("upload", "enabled", *readonly_fields)


class _ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(LoginAttempt)
class LoginAttemptAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "outcome", "cert_serial", "client_ip", "user")
    list_filter = ("outcome",)
    search_fields = ("cert_fingerprint", "cert_serial", "client_ip")
    date_hierarchy = "created_at"


@admin.register(CitizenIdentity)
class CitizenIdentityAdmin(_ReadOnlyAdmin):
    list_display = ("name", "card_serial", "user", "last_login")
    search_fields = ("card_serial", "cert_fingerprint")
    # The HMAC of the ID number is not shown: it serves no purpose to an operator.
    exclude = ("id_hash",)
    actions = ("relink_newer_to_older",)

    def has_relink_permission(self, request: HttpRequest) -> bool:
        # Moving a card to another account hands that account to the card's holder:
        # superusers only.
        return bool(getattr(request.user, "is_superuser", False))

    @admin.action(
        permissions=["relink"],
        description=_("Re-link the newer selected card to the older card's user (audited)"),
    )
    def relink_newer_to_older(
        self, request: HttpRequest, queryset: QuerySet[CitizenIdentity]
    ) -> None:
        rows = list(queryset.order_by("created_at", "pk")[:3])
        if len(rows) != 2:
            self.message_user(
                request,
                _("Select exactly two identities: the old card and the new one."),
                messages.ERROR,
            )
            return
        older, newer = rows
        try:
            relink_identity(
                newer,
                older.user,
                actor=f"admin:{request.user.get_username()}",
                reason="admin action: newer card re-linked to the older card's user",
            )
        except RelinkRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _("The newer card now belongs to the older card's user."))
