"""Fixtures shared by the whole suite.

* ``shared_data``: the reference data in ``../shared/data`` (real CA certificates, real
  signature vectors, the PKITS manifest). Tests that need it skip, with the reason, when
  the folder is absent. Nothing from it is ever copied into the repository.
* ``redis_url``: a real redis-server started once per session.
* ``store_kind``: the store the Django app runs on, ``"memory"`` (in-process) and
  ``"redis"`` (the session's real redis-server, marked ``redis``); every test that uses
  ``moica_settings`` runs on both.

The fixture modules below are plugins, so a test names a fixture and pytest finds it; a
module that defines a fixture of the same name overrides it for its own tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.redis_server import redis_server

pytest_plugins = [
    "tests.confirmation_fixtures",
    "tests.django_fixtures",
    "tests.ocsp_fixtures",
    "tests.stores_fixtures",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MOICA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# A validation time inside the validity of both real signer certificates in
# ../shared/data/vectors (they expire in 2027), so those tests keep passing.
REAL_VECTORS_AT = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "anchors").is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (real MOICA/GRCA data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
