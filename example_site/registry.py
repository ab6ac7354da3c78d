"""The labor-insurance demo registry (勞保局 被保險人) and its personal-data verifier.

The registry is a small in-code table keyed by an HMAC of the ID number: like a real
service, it never needs the plaintext number to answer "is this person insured, and what
is their birth date?". :class:`LaborInsuranceRegistryVerifier` plugs it into the login
through ``MOICA_AUTH_VERIFIERS`` (a :class:`~moica_auth.identity.verifiers.RegistryVerifier`).

It confirms ``birth_date`` only; the ID number itself is confirmed by
:class:`~moica_auth.identity.verifiers.CertificateLast4Verifier`, so a service that asks
only for the ID number (the exit-restriction lookup) does not depend on this registry.

A step-up that asks only for the birth date (the ID number was verified earlier in the
session) has no typed ID number: the registry then finds the insured person by the
certificate's subject serialNumber (X.520 2.5.4.5), the certificate the insured person
registered with the service, as portals that keep a "registered certificate" do.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

from moica_auth.exceptions import BirthDateMismatch
from moica_auth.identity.id_number import IdNumber, check_last4
from moica_auth.identity.verifiers import CitizenIdentity, PersonalData, RegistryVerifier

__all__ = [
    "INSURED",
    "InsuredRecord",
    "LaborInsuranceRegistryVerifier",
    "insured_record",
    "record_for_certificate",
    "registry_key",
]

# The registry's own pseudonymisation key. Demo data: a real registry keeps its key in a
# secret store, never in code.
_REGISTRY_KEY = b"example-site/labor-insurance-registry/demo-key/v1"


@dataclass(frozen=True)
class InsuredRecord:
    """One insured person (demo data; no name, no plaintext ID number)."""

    birth_date: date
    card_serial: str  # the registered certificate's subject serialNumber
    employer: str
    insured_since: date
    monthly_salary_grade: int


def registry_key(id_number: str) -> str:
    """HMAC-SHA256 (RFC 2104) of the normalised ID number, lower-case hex."""
    normalised = id_number.strip().upper().encode("ascii")
    return hmac.new(_REGISTRY_KEY, normalised, hashlib.sha256).hexdigest()


#: The insured persons, keyed by :func:`registry_key` of their ID number.
INSURED: dict[str, InsuredRecord] = {
    "f82af406f99c78770128d519f3a6c52dd904c4942bdec6b20d5a0eb6662d975c": InsuredRecord(
        date(1971, 1, 1), "0000000000000031", "臺灣範例股份有限公司", date(1995, 7, 1), 45800
    ),
    "522563d05aa50aa8200ac41f3875be391f1a91f6756e8133c3f791d390a0dd19": InsuredRecord(
        date(1965, 3, 15), "0000000000000022", "大同範例工業社", date(1988, 9, 1), 38200
    ),
    "f9ac935941cb135af8a38c47e09f3b9c06f51e54d96aa6a468e8087fe243e05f": InsuredRecord(
        date(1990, 12, 24), "0000000000000033", "美麗範例設計工作室", date(2014, 2, 1), 33300
    ),
    "d592954d494dd6e2c09ac23c1c03a861000c981a6eefdaf72708c8cf3c6e1da0": InsuredRecord(
        date(1982, 6, 30), "0000000000000037", "佩君範例顧問有限公司", date(2006, 10, 1), 50600
    ),
    "290d5ee7c20a5b7d7e7da279081fd5c0cdfcd2455d3aa17ecfca8599e5bfc417": InsuredRecord(
        date(1978, 8, 8), "0000000000000034", "志明範例貿易行", date(2001, 4, 1), 28800
    ),
    "0f7d2440abd5aeecdcac0fdb7e60d4da2f11bf8728dffb248df9d0d3eae934c9": InsuredRecord(
        date(1969, 11, 11), "0000000000000025", "淑芬範例商店", date(1992, 1, 1), 31800
    ),
    "a6ffc5d7971b0b74383c2f431da2ab0c274e4fd42fae0ece9e5eb2fe45b284f6": InsuredRecord(
        date(1958, 5, 20), "0000000000000036", "建國範例營造", date(1980, 3, 1), 42000
    ),
    "a35e6df482471cdd7fa715d6f8ee0e0d061f41beb21d5e8b388a9a672b0d30d3": InsuredRecord(
        date(1985, 4, 2), "0000000000000038", "怡君範例餐飲有限公司", date(2009, 5, 1), 36300
    ),
}


def insured_record(id_number: str) -> InsuredRecord | None:
    """The insured record for ``id_number``, or ``None``."""
    return INSURED.get(registry_key(id_number))


def record_for_certificate(card_serial: str | None) -> InsuredRecord | None:
    """The insured person who registered the certificate with this subject serialNumber."""
    if not card_serial:
        return None
    for record in INSURED.values():
        if hmac.compare_digest(record.card_serial, card_serial):
            return record
    return None


class LaborInsuranceRegistryVerifier(RegistryVerifier):
    """Confirms ``birth_date`` against the labor-insurance registry.

    With a typed ID number: the number must end with the certificate's last four and be
    registered, and the registered birth date must equal the typed one. Without one (a
    birth-date-only step-up): the certificate must be the one registered. Any miss is
    :class:`BirthDateMismatch`, the same error as a wrong date, so the form cannot be
    used to learn who is insured.
    """

    provides: frozenset[str] = frozenset({"birth_date"})

    def lookup(self, id_number: IdNumber) -> date | None:
        record = insured_record(id_number.value)
        return record.birth_date if record is not None else None

    def verify(self, *, citizen: CitizenIdentity, data: PersonalData) -> frozenset[str]:
        if data.birth_date is None:
            return frozenset()
        if data.id_number is not None:
            check_last4(data.id_number, citizen.id_last4)
            registered = self.lookup(data.id_number)
        else:
            record = record_for_certificate(citizen.card_serial)
            registered = record.birth_date if record is not None else None
        if registered is None:
            raise BirthDateMismatch("not an insured person of the registry")
        if registered != data.birth_date:
            raise BirthDateMismatch("the birth date differs from the registry")
        return frozenset({"birth_date"})
