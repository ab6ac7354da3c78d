"""Pluggable checks of the personal data a citizen types in at login.

A MOICA certificate proves who holds the card, but it carries only the last four
characters of the ID number and no birth date. A service that needs the full ID number
(or the birth date, as the labor-insurance portal does) asks for them and has them
confirmed by one or more :class:`PersonalDataVerifier` objects, which are configured by
dotted path and loaded with :func:`load_verifiers`.

Strength of the shipped verifiers, weakest first:

* :class:`CertificateLast4Verifier`: the number is well-formed and ends with the
  certificate's last four. That only shows the number is *consistent* with the
  certificate: anyone who knows the last four can type some other person's number with
  the same ending (about one in 10⁵ numbers share them). Use it as a cheap first check.
* :class:`RegistryVerifier` subclasses: the service's own records (for example the
  insured persons of a labor-insurance registry) confirm the pair (ID number, birth date).
* :class:`MoicaConfirmationVerifier`: the MOICA ID confirmation service confirms that
  the ID number (and birth date) belongs to the holder of this very certificate. This is
  the strong check.

:func:`verify_personal_data` runs them and fails closed: any mismatch stops the login,
and every required field must be confirmed by at least one verifier.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from moica_auth.exceptions import (
    BirthDateMismatch,
    CertificateExpired,
    CertificateRevoked,
    ConfigurationError,
    FieldRequired,
    IdNumberMismatch,
    MalformedRequest,
    MoicaAuthError,
    PersonalDataUnverified,
)
from moica_auth.identity.id_number import IdNumber, check_last4

if TYPE_CHECKING:
    from moica_auth.identity.confirmation import ConfirmationClient

__all__ = [
    "FIELDS",
    "CertificateLast4Verifier",
    "CitizenIdentity",
    "MoicaConfirmationVerifier",
    "PairProof",
    "PersonalData",
    "PersonalDataVerifier",
    "PersonalEvidence",
    "RegistryVerifier",
    "load_verifiers",
    "verify_personal_data",
    "verify_personal_evidence",
]

logger = logging.getLogger(__name__)

#: The personal fields a service may require.
FIELDS: frozenset[str] = frozenset({"id_number", "birth_date"})


class CitizenIdentity(Protocol):
    """What the verifiers read from the certificate.

    :class:`moica_auth.certificate.CitizenCertificate` satisfies it (``id_last4`` is SDA
    2.16.886.1.100.2.51, ``card_serial`` the subject serialNumber, X.520 2.5.4.5).
    """

    @property
    def id_last4(self) -> str | None: ...

    @property
    def card_serial(self) -> str | None: ...


@dataclass(frozen=True, repr=False)
class PersonalData:
    """What the citizen typed in, already parsed (:func:`parse_id_number`,
    :func:`parse_birth_date`). ``repr()`` masks both fields."""

    id_number: IdNumber | None = None
    birth_date: date | None = None

    def present(self) -> frozenset[str]:
        """The names of the fields that have a value."""
        return frozenset(name for name in FIELDS if getattr(self, name) is not None)

    def __repr__(self) -> str:
        birth = "<set>" if self.birth_date is not None else None
        return f"PersonalData(id_number={self.id_number!r}, birth_date={birth})"


@runtime_checkable
class PersonalDataVerifier(Protocol):
    """A check of personal data against some source of truth.

    ``provides`` names the fields it can confirm. ``verify`` returns the fields it did
    confirm (a subset of ``provides`` and of the fields present; a verifier may confirm
    nothing when its input is absent) and raises :class:`IdNumberMismatch`,
    :class:`BirthDateMismatch` or another :class:`MoicaAuthError` when the data is wrong,
    and :class:`PersonalDataUnverified` when it cannot tell. It must never answer "not
    verified" by returning normally for data it found wrong.
    """

    provides: frozenset[str]

    def verify(self, *, citizen: CitizenIdentity, data: PersonalData) -> frozenset[str]: ...


class PairProof(frozenset[str]):
    """What a verifier returns when it proved that the fields belong to the holder of
    *this* certificate (the MOICA confirmation service answers for the pair (card
    serialNumber, ID number)), not merely that they exist or are consistent with it.

    Only this evidence, obtained in the current login, may key an account by ID number
    (:func:`verify_personal_evidence`, ``docs/security.md``). A plain ``frozenset``
    confirms the values and proves nothing about whose they are.
    """

    __slots__ = ()


@dataclass(frozen=True)
class PersonalEvidence:
    """What the verifiers established in one login: the fields confirmed, and the subset
    of them proven to belong to this certificate's holder (:class:`PairProof`)."""

    fields: frozenset[str]
    pair_proven: frozenset[str]


class CertificateLast4Verifier:
    """Provides ``id_number``: the number ends with the certificate's last four.

    The number was already checked for form and check digit when it was parsed. This
    is the weak check (see the module docstring): prefer a registry or the MOICA
    confirmation service where the ID number matters. A certificate without last four
    fails closed (:func:`check_last4`).
    """

    provides: frozenset[str] = frozenset({"id_number"})

    def verify(self, *, citizen: CitizenIdentity, data: PersonalData) -> frozenset[str]:
        if data.id_number is None:
            return frozenset()
        check_last4(data.id_number, citizen.id_last4)
        return frozenset({"id_number"})


class RegistryVerifier:
    """Base for a service's own registry: subclasses implement :meth:`lookup`.

    Provides ``id_number`` and ``birth_date``. For a number consistent with the
    certificate (last four), the registry's birth date must equal the typed one. A
    number the registry does not know is refused with :class:`BirthDateMismatch`, the
    same error as a wrong date, so the login form cannot be used to find out who is
    registered. Without a typed birth date only ``id_number`` is confirmed (registered
    and consistent with the certificate).
    """

    provides: frozenset[str] = frozenset({"id_number", "birth_date"})

    def lookup(self, id_number: IdNumber) -> date | None:
        """The registered birth date for ``id_number``, or ``None`` if it is not registered.

        Raise :class:`PersonalDataUnverified` when the registry cannot be reached.
        """
        raise NotImplementedError

    def verify(self, *, citizen: CitizenIdentity, data: PersonalData) -> frozenset[str]:
        if data.id_number is None:
            return frozenset()
        check_last4(data.id_number, citizen.id_last4)
        registered = self.lookup(data.id_number)
        if registered is None:
            raise BirthDateMismatch("the ID number is not in the registry")
        if isinstance(registered, datetime) or not isinstance(registered, date):
            raise PersonalDataUnverified("the registry lookup did not return a date")
        if data.birth_date is None:
            return frozenset({"id_number"})
        if registered != data.birth_date:
            raise BirthDateMismatch("the birth date differs from the registry")
        return frozenset({"id_number", "birth_date"})


class MoicaConfirmationVerifier:
    """Provides ``id_number`` and ``birth_date`` through the MOICA ID confirmation service.

    Sends (certificate serialNumber, ID number, birth date if typed) to the service with
    ``client`` (a :class:`~moica_auth.identity.confirmation.ConfirmationClient`) and maps
    the result code: 0 confirms; 1 (no such pair) is :class:`BirthDateMismatch` when a
    birth date was sent (the service does not say which field was wrong) and
    :class:`IdNumberMismatch` otherwise; 2 (the ID has no certificate) is
    :class:`IdNumberMismatch`; 4 and 5 are :class:`CertificateExpired` and
    :class:`CertificateRevoked`; 3 (not activated) is :class:`PersonalDataUnverified`.
    The last four are checked locally first, which spares a round trip for typos.

    Give either a ready ``confirmation_client`` or the ``confirmation`` settings mapping
    that :func:`~moica_auth.identity.confirmation.client_from_config` reads.
    """

    provides: frozenset[str] = frozenset({"id_number", "birth_date"})

    def __init__(
        self,
        *,
        confirmation_client: ConfirmationClient | None = None,
        confirmation: Mapping[str, object] | None = None,
    ) -> None:
        self.client: ConfirmationClient
        if confirmation_client is not None and confirmation is None:
            self.client = confirmation_client
        elif confirmation is not None and confirmation_client is None:
            from moica_auth.identity.confirmation import client_from_config

            self.client = client_from_config(confirmation)
        else:
            raise ConfigurationError(
                "MoicaConfirmationVerifier needs either confirmation_client or confirmation"
            )

    def verify(self, *, citizen: CitizenIdentity, data: PersonalData) -> frozenset[str]:
        # Imported here so that the optional XML dependencies (signxml, lxml) are only
        # needed by services that use the confirmation service.
        from moica_auth.identity.confirmation import ConfirmationRecord, ConfirmationStatus

        if data.id_number is None:
            return frozenset()
        check_last4(data.id_number, citizen.id_last4)
        if citizen.card_serial is None:
            raise PersonalDataUnverified("the certificate has no subject serialNumber")
        try:
            record = ConfirmationRecord(
                card_serial=citizen.card_serial,
                id_number=data.id_number,
                birth_date=data.birth_date,
            )
        except MalformedRequest as exc:
            raise PersonalDataUnverified("the certificate serialNumber cannot be sent") from exc
        status = self.client.confirm_one(record).status
        if status is ConfirmationStatus.MATCH:
            # The service confirmed the pair for this card's serialNumber: the one proof
            # that the number is this certificate holder's own.
            return PairProof(data.present() & self.provides)
        if status is ConfirmationStatus.NO_SUCH_PAIR:
            if data.birth_date is not None:
                raise BirthDateMismatch("the confirmation service found no such pair")
            raise IdNumberMismatch("the confirmation service found no such pair")
        if status is ConfirmationStatus.NO_CERTIFICATE:
            raise IdNumberMismatch("the ID number has no certificate")
        if status is ConfirmationStatus.EXPIRED:
            raise CertificateExpired("the confirmation service says the certificate expired")
        if status is ConfirmationStatus.REVOKED:
            raise CertificateRevoked("the confirmation service says the certificate is revoked")
        raise PersonalDataUnverified(f"the certificate is not usable ({status.name.lower()})")


def _accepted_kwargs(factory: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(kwargs)
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return {name: value for name, value in kwargs.items() if name in names}


def _is_verifier(candidate: object) -> bool:
    provides = getattr(candidate, "provides", None)
    return (
        isinstance(candidate, PersonalDataVerifier)
        and isinstance(provides, frozenset)
        and bool(provides)
        and provides <= FIELDS
        and callable(getattr(candidate, "verify", None))
    )


def load_verifiers(paths: Sequence[str], **kwargs: Any) -> list[PersonalDataVerifier]:
    """Import each dotted path and return the verifiers, in order.

    A path may name a class (instantiated with those of ``kwargs`` its constructor
    accepts, e.g. ``confirmation_client=…``) or a ready verifier object. Raises
    :class:`ConfigurationError` for a path that does not import, a constructor that
    fails, or an object that does not satisfy :class:`PersonalDataVerifier` with
    ``provides`` a non-empty subset of :data:`FIELDS`.
    """
    if isinstance(paths, str):
        raise ConfigurationError("verifier paths must be a list of dotted paths, not a string")
    loaded: list[PersonalDataVerifier] = []
    for path in paths:
        if not isinstance(path, str) or "." not in path:
            raise ConfigurationError(f"{path!r} is not a dotted path")
        module_name, _, attribute = path.rpartition(".")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot import verifier {path!r}") from exc
        if inspect.isclass(target):
            try:
                target = target(**_accepted_kwargs(target, kwargs))
            except MoicaAuthError:
                raise
            except Exception as exc:
                raise ConfigurationError(f"cannot instantiate verifier {path!r}: {exc}") from exc
        if not _is_verifier(target):
            raise ConfigurationError(
                f"{path!r} is not a personal-data verifier (needs 'provides', a non-empty "
                f"subset of {sorted(FIELDS)}, and 'verify')"
            )
        loaded.append(target)
    return loaded


def verify_personal_data(
    *,
    citizen: CitizenIdentity,
    data: PersonalData,
    required: Collection[str],
    verifiers: Sequence[PersonalDataVerifier],
) -> frozenset[str]:
    """Run ``verifiers`` on ``data`` and return the union of the confirmed fields
    (:func:`verify_personal_evidence` without the proof of ownership)."""
    return verify_personal_evidence(
        citizen=citizen, data=data, required=required, verifiers=verifiers
    ).fields


def verify_personal_evidence(
    *,
    citizen: CitizenIdentity,
    data: PersonalData,
    required: Collection[str],
    verifiers: Sequence[PersonalDataVerifier],
) -> PersonalEvidence:
    """Run ``verifiers`` on ``data``: the union of the confirmed fields, and of those a
    verifier proved to be this certificate holder's (returned as :class:`PairProof`).

    In order: an unknown name in ``required`` is a :class:`ConfigurationError`; a
    required field without a value is :class:`FieldRequired` (``data["field"]`` names
    it); a required field no verifier provides is :class:`PersonalDataUnverified`. Then
    every verifier that provides a field present in ``data`` runs, and the first error
    stops the login (fail closed, no partial login). An unexpected exception from a
    verifier is reported as :class:`PersonalDataUnverified`. Finally every required field
    must have been confirmed, else :class:`PersonalDataUnverified`.
    """
    wanted = frozenset(required)
    if unknown := wanted - FIELDS:
        raise ConfigurationError(f"unknown personal-data fields {sorted(unknown)}")
    present = data.present()
    if absent := sorted(wanted - present):
        raise FieldRequired(f"{absent[0]} is required", field=absent[0])
    offered = frozenset().union(*(verifier.provides for verifier in verifiers))
    if uncovered := wanted - offered:
        raise PersonalDataUnverified(f"no configured verifier confirms {sorted(uncovered)}")
    verified: set[str] = set()
    proven: set[str] = set()
    for verifier in verifiers:
        if not verifier.provides & present:
            continue
        try:
            confirmed = verifier.verify(citizen=citizen, data=data)
        except MoicaAuthError:
            raise
        except Exception as exc:
            # A crashing verifier must not turn into a successful login. Its message and
            # traceback may quote the ID number, so only the exception type is kept.
            name, error = type(verifier).__name__, type(exc).__name__
            logger.error("personal-data verifier %s failed with %s", name, error)
            raise PersonalDataUnverified(f"{name} failed with {error}") from None
        if not isinstance(confirmed, frozenset | set):
            raise PersonalDataUnverified(f"{type(verifier).__name__} returned no field set")
        # A verifier can only vouch for what it provides and what was typed in.
        accepted = frozenset(confirmed) & verifier.provides & present
        verified |= accepted
        if isinstance(confirmed, PairProof):
            proven |= accepted
    if missing := wanted - verified:
        raise PersonalDataUnverified(f"{sorted(missing)} could not be confirmed")
    return PersonalEvidence(fields=frozenset(verified), pair_proven=frozenset(proven))
