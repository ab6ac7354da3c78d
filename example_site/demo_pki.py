"""The demo's test PKI: GRCA/MOICA look-alikes, the demo cards, CRLs and a household
office certificate. **Every key is a public test key** (:mod:`moica_auth.testing.keys`).

The PKI is a pure function of the seed, the month of the demo clock and the responder
URL: keys come from the seed (and are cached on disk, see :func:`use_key_cache`), so a
restart rebuilds byte-identical certificates in well under a second once the keys exist.
Citizen certificates point their cRLDistributionPoints and AIA OCSP at the demo's own
responder (RFC 5280 §4.2.1.13, §4.2.2.1), so revocation is checked exactly as in
production, over HTTP.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from example_site.citizens import DEMO_CITIZENS, DemoCitizen
from moica_auth.testing.pki import CertifiedKey, CitizenCard, TestPKI

__all__ = [
    "DEFAULT_SEED",
    "VAR_DIR",
    "DemoPKI",
    "build_demo_pki",
    "pki_epoch",
    "use_key_cache",
    "write_state",
]

DEFAULT_SEED = "moica-auth-demo"
VAR_DIR = Path(__file__).resolve().parent / "var"

#: When the demo says a suspended or revoked certificate was put on the CRL, relative to
#: the PKI's epoch (before any demo clock in that month).
_REVOKED_BEFORE_EPOCH = timedelta(days=1)
#: Demo CRLs are valid for a week so a demo left running does not go stale overnight.
CRL_VALIDITY = timedelta(days=7)

OFFICE_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "內政部"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "戶政司"),
        x509.NameAttribute(NameOID.COMMON_NAME, "範例戶政事務所 Demo Household Office (TEST)"),
    ]
)


def use_key_cache(var_dir: Path = VAR_DIR) -> None:
    """Cache the deterministic test keys under ``var_dir/keys`` (git-ignored) unless the
    caller chose a cache with ``$MOICA_AUTH_TEST_KEY_CACHE``."""
    os.environ.setdefault("MOICA_AUTH_TEST_KEY_CACHE", str(var_dir / "keys"))


def pki_epoch(now: datetime) -> datetime:
    """The PKI clock for a demo running at ``now``: the first day of that month (UTC).

    Certificates then stay byte-identical for a month of restarts, and every default
    validity period (cards from ``epoch - 30 days``) covers the whole month.
    """
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class DemoPKI:
    """The demo hierarchy, one :class:`CitizenCard` per demo citizen, and the office."""

    pki: TestPKI
    cards: dict[str, CitizenCard]
    office: CertifiedKey
    epoch: datetime

    def citizen_card(self, person: DemoCitizen) -> CitizenCard:
        return self.cards[person.slug]

    def revoked_entries(
        self, generation: str
    ) -> list[tuple[int, datetime, x509.ReasonFlags | None]]:
        """CRL entries (RFC 5280 §5.3.1 reasons) for the demo cards of ``generation``."""
        reasons = {
            "suspended": x509.ReasonFlags.certificate_hold,
            "revoked": x509.ReasonFlags.key_compromise,
        }
        out: list[tuple[int, datetime, x509.ReasonFlags | None]] = []
        for person in DEMO_CITIZENS:
            if person.generation == generation and person.status in reasons:
                serial = self.cards[person.slug].signing.certificate.serial_number
                out.append((serial, self.epoch - _REVOKED_BEFORE_EPOCH, reasons[person.status]))
        return out

    def crls(self, *, now: datetime) -> dict[str, bytes]:
        """``{path: DER}``: for MOICA G2 and G3 the ``10-31`` partition (critical
        IssuingDistributionPoint, RFC 5280 §5.2.5) and the complete CRL, both listing the
        suspended/revoked demo cards; and the empty GRCA CRLs covering the MOICA CAs."""
        out: dict[str, bytes] = {}
        this_update = now.astimezone(UTC).replace(microsecond=0) - timedelta(minutes=5)
        number = int(this_update.strftime("%Y%m%d%H%M"))
        for generation in ("G2", "G3"):
            moica = self.pki.moica(generation)
            entries = self.revoked_entries(generation)
            partition, complete = self.pki.default_crl_urls(generation)
            for url, scope in ((partition, partition), (complete, None)):
                crl = self.pki.make_crl(
                    issuer=moica,
                    revoked=entries,
                    number=number,
                    this_update=this_update,
                    next_update=this_update + CRL_VALIDITY,
                    scope_url=scope,
                )
                out[urllib.parse.urlsplit(url).path] = crl.public_bytes(serialization.Encoding.DER)
            root = self.pki.root(generation)
            grca = self.pki.make_crl(
                issuer=root,
                number=number,
                this_update=this_update,
                next_update=this_update + CRL_VALIDITY,
            )
            path = urllib.parse.urlsplit(f"{self.pki.grca_crl_base_url}/GRCA-{generation}.crl")
            out[path.path] = grca.public_bytes(serialization.Encoding.DER)
        return out


def _issue(pki: TestPKI, person: DemoCitizen, epoch: datetime) -> CitizenCard:
    not_before: datetime | None = None
    not_after: datetime | None = None
    if person.status == "expired":
        # Issued five years ago, expired last month (RFC 5280 §4.1.2.5).
        not_after = epoch - timedelta(days=35)
        not_before = not_after - timedelta(days=5 * 365)
    return pki.issue_card(
        generation=person.generation,
        name=person.name,
        id_number=person.id_number,
        subject_serial=person.subject_serial,
        form=person.form,
        pin=person.pin,
        user_code=person.user_code,
        not_before=not_before,
        not_after=not_after,
        label=f"demo/{person.slug}",
    )


def _office(pki: TestPKI) -> CertifiedKey:
    """The household office's document-signing certificate, directly under GRCA G3:
    keyUsage critical digitalSignature + nonRepudiation (RFC 5280 §4.2.1.3)."""
    root = pki.grca_g3
    key = pki.key("household-office", 2048)
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski.value), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.BasicConstraints(ca=False, path_length=None), True),
    ]
    return pki.issue_leaf(
        issuer=root,
        subject=OFFICE_SUBJECT,
        private_key=key,
        extensions=extensions,
        label="household-office",
    )


def build_demo_pki(*, responder_url: str, now: datetime, seed: str = DEFAULT_SEED) -> DemoPKI:
    """Build the demo PKI whose certificates name ``responder_url`` for CRLs and OCSP."""
    base = responder_url.rstrip("/")
    epoch = pki_epoch(now)
    pki = TestPKI(seed=seed, now=epoch, crl_base_url=f"{base}/crl", ocsp_url=f"{base}/ocsp")
    cards = {person.slug: _issue(pki, person, epoch) for person in DEMO_CITIZENS}
    return DemoPKI(pki=pki, cards=cards, office=_office(pki), epoch=epoch)


def write_state(demo: DemoPKI, folder: Path) -> dict[str, Path]:
    """Write what the Django site reads at start-up (PEM files) under ``folder``:
    the trust anchors, the intermediates, and the household office certificate and key.
    Returns the paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    paths = {
        "anchors": folder / "anchors.pem",
        "intermediates": folder / "intermediates.pem",
        "office_cert": folder / "household-office.pem",
        "office_key": folder / "household-office-key.pem",
    }
    paths["anchors"].write_bytes(b"".join(c.public_bytes(pem) for c in demo.pki.anchors))
    paths["intermediates"].write_bytes(
        b"".join(c.public_bytes(pem) for c in demo.pki.intermediates)
    )
    paths["office_cert"].write_bytes(demo.office.cert_pem())
    # A PUBLIC TEST KEY, written so the web process can sign transcripts.
    paths["office_key"].write_bytes(demo.office.key_pem())
    return paths
