"""Django admin: trust anchors (upload, enable/disable), read-only audit and identities."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from moica_auth.anchors import AnchorRefused, check_anchor, read_certificates
from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError
from moica_auth.identity.relink import RelinkRefused, relink_identity
from moica_auth.models import (
    CitizenIdentity,
    LoginAttempt,
    SignatureRequest,
    SignedApplication,
    TrustAnchor,
)
from moica_auth.signing.renewal import (
    ADMIN_RENEWAL_HORIZON,
    ADMIN_RENEWAL_MAX_ROWS,
    RENEWAL_AUDIT_OUTCOME,
    renew_due,
)
from moica_auth.signing.validation_crls import ValidationCrlFetcher

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


# --- signing: inspect and export evidence ---------------------------------------------


def _evidence_filename(application: SignedApplication) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in application.application_id)
    return f"evidence-{safe[:80]}.json"


@admin.register(SignatureRequest)
class SignatureRequestAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "service", "application_id", "outcome", "decided_at", "user")
    list_filter = ("outcome", "service")
    search_fields = ("application_id", "token")
    date_hierarchy = "created_at"
    exclude = ("session_hash",)


@admin.register(SignedApplication)
class SignedApplicationAdmin(_ReadOnlyAdmin):
    list_display = ("signed_at", "service", "application_id", "signer_name", "timestamp_time")
    list_filter = ("service",)
    search_fields = ("application_id", "cert_fingerprint")
    date_hierarchy = "signed_at"
    readonly_fields = (
        "service",
        "application_id",
        "signer_name",
        "cert_fingerprint",
        "signed_at",
        "timestamp_time",
        "signed_text",
        "export_link",
    )
    fields = readonly_fields
    actions = ("export_evidence", "renew_evidence_timestamps")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Viewing needs "view"; nothing here can be edited.
        return False

    def has_renew_permission(self, request: HttpRequest) -> bool:
        # Renewing writes to the evidence: Django's own "change" permission of the model
        # (created with it, so no migration), although the admin never edits a row.
        return bool(request.user.has_perm("moica_auth.change_signedapplication"))

    @admin.action(
        permissions=["renew"],
        description=_("Renew the evidence time-stamps of the selected applications"),
    )
    def renew_evidence_timestamps(
        self, request: HttpRequest, queryset: QuerySet[SignedApplication]
    ) -> None:
        selected = queryset.order_by("pk").values_list("pk", flat=True)
        pks = list(selected[: ADMIN_RENEWAL_MAX_ROWS + 1])
        if len(pks) > ADMIN_RENEWAL_MAX_ROWS:
            self.message_user(
                request,
                _(
                    "Select at most %(max)d applications at a time; the scheduled "
                    "moica_retimestamp job renews in bulk."
                )
                % {"max": ADMIN_RENEWAL_MAX_ROWS},
                messages.ERROR,
            )
            return
        now = app_settings.now()
        fetcher = ValidationCrlFetcher()
        try:
            summary = renew_due(now + ADMIN_RENEWAL_HORIZON, pks=pks, now=now, fetch_crls=fetcher)
        except ConfigurationError:
            self.message_user(
                request,
                _("No time-stamp authority is configured (MOICA_AUTH_SIGNING TSA_URL)."),
                messages.ERROR,
            )
            return
        LoginAttempt.objects.create(
            outcome=RENEWAL_AUDIT_OUTCOME,
            user=request.user if request.user.is_authenticated else None,
            # No migration for this: the free-text column holds the record, by primary
            # key and the field at fault only (never evidence content).
            signed_content=(
                f"evidence renewal by admin:{request.user.get_username()[:100]}: "
                f"renewed {summary.renewed}, not due {summary.fresh}, "
                f"without time-stamp {summary.unstamped}, failed "
                f"{ {pk: why[:200] for pk, why in list(summary.failed.items())[:20]} }"
            )[:4000],
        )
        level = messages.WARNING if summary.failed else messages.SUCCESS
        self.message_user(
            request,
            _(
                "Evidence time-stamps renewed: %(renewed)d; not yet due: %(fresh)d; "
                "failed: %(failed)d."
            )
            % {
                "renewed": len(summary.renewed),
                "fresh": summary.fresh,
                "failed": len(summary.failed),
            },
            level,
        )
        for pk, why in list(summary.failed.items())[:10]:
            self.message_user(
                request,
                _("Application %(pk)s was not renewed: %(why)s") % {"pk": pk, "why": why},
                messages.ERROR,
            )
        if fetcher.without_cdp:
            self.message_user(
                request,
                _(
                    "No CRL to fetch (no http CRL distribution point) for: %(names)s. "
                    "Their revocation status is not recorded."
                )
                % {"names": ", ".join(sorted(fetcher.without_cdp))},
                messages.INFO,
            )

    @admin.display(description=_("signed text"))
    def signed_text(self, obj: SignedApplication) -> str:
        return obj.request.text

    @admin.display(description=_("evidence"))
    def export_link(self, obj: SignedApplication) -> str:
        url = reverse("admin:moica_auth_signedapplication_evidence", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download evidence (JSON)"))

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<int:pk>/evidence/",
                self.admin_site.admin_view(self.evidence_view),
                name="moica_auth_signedapplication_evidence",
            )
        ]
        return own + super().get_urls()

    def evidence_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        application = SignedApplication.objects.filter(pk=pk).first()
        if application is None or not self.has_view_permission(request, application):
            raise Http404
        return self._download(
            application.evidence.encode("utf-8"),
            _evidence_filename(application),
            "application/json",
        )

    @admin.action(description=_("Export evidence of the selected applications"))
    def export_evidence(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        rows = list(queryset[:1000])
        if len(rows) == 1:
            return self._download(
                rows[0].evidence.encode("utf-8"), _evidence_filename(rows[0]), "application/json"
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for row in rows:
                archive.writestr(f"{row.pk}-{_evidence_filename(row)}", row.evidence)
        return self._download(buffer.getvalue(), "evidence.zip", "application/zip")

    @staticmethod
    def _download(body: bytes, filename: str, content_type: str) -> HttpResponse:
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
