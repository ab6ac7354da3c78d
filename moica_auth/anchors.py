"""Managing :class:`~moica_auth.models.TrustAnchor` rows: add, list, remove, add-official.

Shared by ``manage.py moica_trust`` and the admin upload form. A certificate is accepted
as a trust anchor or intermediate only if it is a CA (basicConstraints cA=TRUE, RFC 5280
§4.2.1.9) and currently valid (§4.1.2.5). ``add-official`` accepts only certificates
whose SHA-256 fingerprint is pinned in
:data:`~moica_auth.validation.trust.OFFICIAL_CA_FINGERPRINTS`, whatever their file names,
so a tampered download or a wrong file is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.utils.translation import gettext as _

from moica_auth._x509 import is_ca
from moica_auth.certificate import load_certificates
from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError, MoicaAuthError
from moica_auth.models import TrustAnchor
from moica_auth.validation.trust import (
    LEGACY_CA_NAMES,
    OFFICIAL_CA_FINGERPRINTS,
    OFFICIAL_CA_URLS,
)

__all__ = ["AnchorRefused", "OfficialResult", "add_anchor", "add_official", "check_anchor"]

_MAX_DOWNLOAD = 1024 * 1024


#: Raised when a certificate cannot be a trust anchor; ``.detail`` says why.
AnchorRefused = ConfigurationError


def check_anchor(cert: x509.Certificate, *, at: datetime | None = None) -> None:
    """Raise :class:`AnchorRefused` unless ``cert`` is a CA valid at ``at``."""
    when = at or app_settings.now()
    subject = cert.subject.rfc4514_string()
    if not is_ca(cert):
        raise AnchorRefused(
            _("%(subject)s is not a CA certificate (basicConstraints cA is not true).")
            % {"subject": subject}
        )
    if cert.not_valid_after_utc <= when:
        raise AnchorRefused(
            _("%(subject)s expired on %(date)s.")
            % {"subject": subject, "date": cert.not_valid_after_utc.date().isoformat()}
        )
    if cert.not_valid_before_utc > when:
        raise AnchorRefused(
            _("%(subject)s is not valid before %(date)s.")
            % {"subject": subject, "date": cert.not_valid_before_utc.date().isoformat()}
        )


def add_anchor(
    cert: x509.Certificate, *, source: str = TrustAnchor.SOURCE_COMMAND, at: datetime | None = None
) -> tuple[TrustAnchor, bool]:
    """Store ``cert`` (checked by :func:`check_anchor`); return (row, created)."""
    check_anchor(cert, at=at)
    fields = TrustAnchor.fields_from_certificate(cert)
    existing = TrustAnchor.objects.filter(sha256=fields["sha256"]).first()
    if existing is not None:
        return existing, False
    row = TrustAnchor(source=source, **fields)
    row.save()
    return row, True


def read_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM (bundle) or DER bytes → certificates; ``AnchorRefused`` if unreadable."""
    try:
        return load_certificates(data)
    except MoicaAuthError as exc:
        raise AnchorRefused(_("The file is not a PEM or DER certificate.")) from exc


@dataclass(frozen=True)
class OfficialResult:
    """What ``add-official`` did for one pinned CA."""

    name: str
    status: str  # "added" | "present" | "missing" | "refused"
    detail: str = ""


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _from_dir(directory: Path) -> dict[str, x509.Certificate]:
    found: dict[str, x509.Certificate] = {}
    pinned = {fp: name for name, fp in OFFICIAL_CA_FINGERPRINTS.items()}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.stat().st_size > _MAX_DOWNLOAD:
            continue
        try:
            certs = load_certificates(path.read_bytes())
        except (MoicaAuthError, OSError):
            continue  # README.md, JSON and other files are not certificates
        for cert in certs:
            name = pinned.get(_fingerprint(cert))
            if name is not None:
                found[name] = cert
    return found


def _download(name: str, url: str, get: Callable[..., object]) -> x509.Certificate | str:
    try:
        response = get(url, timeout=15)
        body = response.content  # type: ignore[attr-defined]
        response.raise_for_status()  # type: ignore[attr-defined]
    except Exception as exc:  # requests raises many types; report, never crash
        return f"download failed: {type(exc).__name__}"
    if not isinstance(body, bytes) or len(body) > _MAX_DOWNLOAD:
        return "download too large or empty"
    try:
        certs = load_certificates(body)
    except MoicaAuthError:
        return "downloaded file is not a certificate"
    for cert in certs:
        if _fingerprint(cert) == OFFICIAL_CA_FINGERPRINTS[name]:
            return cert
    return "fingerprint does not match the pinned value"


def add_official(
    *,
    from_dir: Path | None = None,
    names: Iterable[str] | None = None,
    include_legacy: bool = False,
    get: Callable[..., object] | None = None,
    at: datetime | None = None,
) -> list[OfficialResult]:
    """Add the official GRCA/MOICA CA certificates, fingerprint-pinned.

    From ``from_dir`` (files matched by fingerprint, any name, PEM or DER) or downloaded
    from :data:`OFFICIAL_CA_URLS` with ``get`` (``requests.get``). The legacy SHA-1 GRCA G1
    is skipped unless ``include_legacy``.
    """
    wanted = [
        n for n in (names or OFFICIAL_CA_FINGERPRINTS) if include_legacy or n not in LEGACY_CA_NAMES
    ]
    local = _from_dir(from_dir) if from_dir is not None else {}
    if from_dir is None and get is None:
        import requests

        get = requests.get
    results: list[OfficialResult] = []
    for name in wanted:
        if name not in OFFICIAL_CA_FINGERPRINTS:
            results.append(OfficialResult(name, "refused", "not an official CA name"))
            continue
        if from_dir is not None:
            cert: x509.Certificate | str = local.get(name) or "no file with the pinned fingerprint"
        else:
            assert get is not None  # noqa: S101 - set above
            cert = _download(name, OFFICIAL_CA_URLS[name], get)
        if isinstance(cert, str):
            results.append(OfficialResult(name, "missing", cert))
            continue
        try:
            _, created = add_anchor(cert, source=TrustAnchor.SOURCE_OFFICIAL, at=at)
        except AnchorRefused as exc:
            results.append(OfficialResult(name, "refused", exc.detail))
            continue
        results.append(OfficialResult(name, "added" if created else "present"))
    return results
