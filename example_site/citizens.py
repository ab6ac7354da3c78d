"""The demo citizens and their virtual cards: TEST DATA ONLY.

Every name, ID number, birth date, PIN and key here is invented test data (the ID
numbers only have valid check digits). The demo prints the PINs and the home page shows
them, because a demo that hides its test PINs cannot be tried.

``status`` is what the demo's revocation responders say about the signing certificate:

* ``valid``: good on OCSP, absent from the CRLs;
* ``suspended``: 停用, certificateHold on the CRL and on OCSP (RFC 5280 §5.3.1);
* ``revoked``: 廢止, keyCompromise on the CRL and on OCSP;
* ``expired``: the certificate's notAfter is in the past (RFC 5280 §4.1.2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["DEMO_CITIZENS", "DemoCitizen", "citizen"]


@dataclass(frozen=True)
class DemoCitizen:
    """One demo citizen and their card (all values are public test data)."""

    slug: str
    name: str
    generation: str  # "G2" | "G3"
    form: str  # "card" | "mobile"
    id_number: str
    birth_date: date
    pin: str
    user_code: str
    subject_serial: str
    status: str  # "valid" | "suspended" | "revoked" | "expired"

    @property
    def birth_date_roc(self) -> str:
        """The birth date as services ask for it: 7-digit ROC ``YYYMMDD``."""
        d = self.birth_date
        return f"{d.year - 1911:03d}{d.month:02d}{d.day:02d}"

    @property
    def can_log_in(self) -> bool:
        return self.status == "valid"

    def __repr__(self) -> str:  # keep PINs and full ID numbers out of tracebacks and logs
        return f"DemoCitizen(slug={self.slug!r}, status={self.status!r})"


DEMO_CITIZENS: tuple[DemoCitizen, ...] = (
    DemoCitizen(
        slug="g3-card",
        name="王小明",
        generation="G3",
        form="card",
        id_number="A123456789",
        birth_date=date(1971, 1, 1),
        pin="135790",
        user_code="12345678",
        subject_serial="0000000000000031",
        status="valid",
    ),
    DemoCitizen(
        slug="g2-card",
        name="林大同",
        generation="G2",
        form="card",
        id_number="F153513265",
        birth_date=date(1965, 3, 15),
        pin="246802",
        user_code="23456789",
        subject_serial="0000000000000022",
        status="valid",
    ),
    DemoCitizen(
        slug="g3-mobile",
        name="陳美麗",
        generation="G3",
        form="mobile",
        id_number="B201283114",
        birth_date=date(1990, 12, 24),
        pin="975310",
        user_code="34567890",
        subject_serial="0000000000000033",
        status="valid",
    ),
    DemoCitizen(
        slug="g3-spare",
        name="吳佩君",
        generation="G3",
        form="card",
        id_number="D284996927",
        birth_date=date(1982, 6, 30),
        pin="864200",
        user_code="78901234",
        subject_serial="0000000000000037",
        status="valid",
    ),
    DemoCitizen(
        slug="suspended",
        name="張志明",
        generation="G3",
        form="card",
        id_number="E132908816",
        birth_date=date(1978, 8, 8),
        pin="192837",
        user_code="45678901",
        subject_serial="0000000000000034",
        status="suspended",
    ),
    DemoCitizen(
        slug="revoked",
        name="李淑芬",
        generation="G2",
        form="card",
        id_number="H270848547",
        birth_date=date(1969, 11, 11),
        pin="564738",
        user_code="56789012",
        subject_serial="0000000000000025",
        status="revoked",
    ),
    DemoCitizen(
        slug="expired",
        name="黃建國",
        generation="G3",
        form="card",
        id_number="K114398068",
        birth_date=date(1958, 5, 20),
        pin="918273",
        user_code="67890123",
        subject_serial="0000000000000036",
        status="expired",
    ),
    DemoCitizen(
        # A mobile citizen certificate revoked on the demo CRLs and OCSP: the virtual
        # phone still holds it and signs with it (the revoked-mobile browser test).
        slug="revoked-mobile",
        name="周怡君",
        generation="G3",
        form="mobile",
        id_number="J220715932",
        birth_date=date(1985, 4, 2),
        pin="271828",
        user_code="89012345",
        subject_serial="0000000000000038",
        status="revoked",
    ),
)


def citizen(slug: str) -> DemoCitizen:
    """The demo citizen ``slug``; ``KeyError`` when there is none."""
    for candidate in DEMO_CITIZENS:
        if candidate.slug == slug:
            return candidate
    raise KeyError(slug)
