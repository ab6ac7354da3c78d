"""A fresh clone: ``python example_site/manage.py migrate`` and ``runserver`` work.

The repository's files (what ``git ls-files`` lists, so no ``example_site/var/``, no
``.venv`` and nothing ignored) are copied to a temporary folder, as a ``git clone`` of the
working tree would have them, and Django's commands run there in subprocesses, with a
clean environment (no ``DJANGO_*``/``MOICA_*`` of this test run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
GIT = shutil.which("git")


def _fresh_copy(dest: Path) -> Path:
    if GIT is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files a clone would have")
    listed = subprocess.run(
        [GIT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        name = raw.decode("utf-8")
        source = REPO_ROOT / name
        if source.is_file():  # a file deleted in the working tree is not in a clone
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (dest / "example_site" / "var").exists()
    return dest


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "MOICA_AUTH_", "MOICA_DEMO_", "PYTHONPATH"))
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fresh_copy(tmp_path_factory.mktemp("fresh-clone"))


@pytest.fixture(scope="module")
def migrated(clone: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "example_site/manage.py", "migrate", "--no-input"],
        cwd=clone,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_migrate_works_in_a_fresh_clone(
    clone: Path, migrated: subprocess.CompletedProcess[str]
) -> None:
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "Applying moica_auth.0001_initial... OK" in migrated.stdout
    assert (clone / "example_site" / "var" / "db.sqlite3").is_file()


def test_runserver_serves_the_portal_in_a_fresh_clone(
    clone: Path, migrated: subprocess.CompletedProcess[str]
) -> None:
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    port = _free_port()
    log = clone / "runserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "example_site/manage.py",
                "runserver",
                "--noreload",
                f"127.0.0.1:{port}",
            ],
            cwd=clone,
            env=_clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            status = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status = requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code
                    break
                except requests.ConnectionError:
                    time.sleep(0.5)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    text = log.read_text(errors="replace")
    assert status == 200, text[-3000:]
    # Without the demo state the portal says why card logins will be refused.
    assert "example_site.W001" in text


def test_no_tracked_symlink_leaves_the_repository() -> None:
    # A merge once committed `.venv` as a symlink into another checkout: a clone then
    # ran (or failed) with a virtualenv it did not build. Any tracked link must stay inside.
    if GIT is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files are tracked")
    staged = subprocess.run(
        [GIT, "ls-files", "-s", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    escaping = []
    for entry in filter(None, staged):
        meta, _, name = entry.decode("utf-8").partition("\t")
        if meta.startswith("120000 "):
            target = (REPO_ROOT / name).resolve()
            if not target.is_relative_to(REPO_ROOT):
                escaping.append(name)
    assert escaping == [], f"tracked symlinks pointing outside the repository: {escaping}"
