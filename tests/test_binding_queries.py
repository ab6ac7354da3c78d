"""What binding an already-known citizen costs the database (``MoicaBackend``)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from moica_auth.backends import MoicaBackend, MoicaToken
from moica_auth.certificate import CitizenCertificate
from moica_auth.models import CitizenIdentity

pytestmark = pytest.mark.django_db


def _statements(sql_log: list[dict[str, str]], verb: str, table: str) -> int:
    """Statements of ``verb`` whose target (FROM, UPDATE, INSERT INTO) is ``table``."""
    target = {"SELECT": "FROM", "UPDATE": "UPDATE", "INSERT": "INTO"}[verb]
    return sum(
        1
        for q in sql_log
        if q["sql"].lstrip().upper().startswith(verb) and f'{target} "{table}"' in q["sql"]
    )


def test_known_citizen_is_bound_with_one_read_and_one_write(moica_settings, cards) -> None:
    citizen = CitizenCertificate.from_certificate(cards.alice.signing.certificate)
    token = MoicaToken.create(citizen=citizen, fields=frozenset(), id_hash=None, verified=None)
    backend = MoicaBackend()
    first = backend.authenticate(None, moica_token=token)
    assert first is not None
    with CaptureQueriesContext(connection) as captured:
        user = backend.authenticate(None, moica_token=token)
        assert user is not None and user.pk == first.pk and user.is_active
    log = captured.captured_queries
    # The user comes with the identity row, not from a second query.
    assert _statements(log, "SELECT", "moica_auth_citizenidentity") == 1
    assert _statements(log, "SELECT", "auth_user") == 0
    assert _statements(log, "UPDATE", "moica_auth_citizenidentity") == 1
    assert CitizenIdentity.objects.count() == 1
