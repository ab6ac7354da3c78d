"""Shared helpers for the certificate, chain and verifier tests.

Plain cached functions (not fixtures), so test modules can call them from their own
module-scoped fixtures without pytest's fixture-import dance. Everything is built from the
deterministic test PKI and pinned to its clock.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from moica_auth.testing.pki import FIXED_TIME, CitizenCard, TestPKI, default_pki
from moica_auth.validation.trust import TrustStore

AT: datetime = FIXED_TIME


def pki() -> TestPKI:
    return default_pki()


@functools.cache
def trust() -> TrustStore:
    """Both GRCA roots as anchors and both MOICA CAs as intermediates."""
    p = pki()
    return TrustStore.from_certificates(p.anchors, p.intermediates)


@functools.cache
def card(generation: str = "G3", form: str = "card", email: str | None = None) -> CitizenCard:
    return pki().issue_card(
        generation=generation,
        form=form,
        email=email,
        name="測試一",
        id_number="A123456789",
        label=f"validation/{generation}/{form}/{email}",
    )


# --- real reference data (../shared/data) ---------------------------------------------


def load_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def real_anchor(shared: Path, name: str) -> x509.Certificate:
    return load_pem(shared / "anchors" / f"{name}.pem")


def real_vectors(shared: Path) -> list[dict[str, Any]]:
    data = json.loads((shared / "vectors" / "sign-vectors.json").read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors
