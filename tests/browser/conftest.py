"""Fixtures of the real-browser tests: the demo portal in a subprocess, Debian's Chromium.

* ``demo`` (session): ``python -m example_site.demo`` on free ports with a pinned clock,
  in a subprocess (pytest-django already configured ``tests.settings`` in this process,
  and Django can hold one project per process). Its first stdout line is JSON with the
  URLs; the process is terminated at the end of the session.
* ``browser`` (module): one headless ``/usr/bin/chromium`` through Playwright. It is
  module-scoped on purpose: Playwright's sync API runs an event loop, and Django refuses
  ORM calls while one runs, so it must not outlive the browser test modules.
* ``page`` (function): a new context and page per test; every request to the site is
  recorded, and the test fails if one carries a PIN that was typed (URL, headers or
  body). A failing test leaves a screenshot in ``test-results/``.

Never downloads a browser: without ``/usr/bin/chromium`` the tests skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from moica_auth.testing.keys import key_cache_dir
from tests.browser.traffic import SiteTraffic

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
RESULTS = REPO_ROOT / "test-results"
#: The demo clock's starting point: a fixed date inside every demo certificate's validity.
DEMO_NOW = "2026-01-15T00:00:00+00:00"
#: The test suite's TestPKI seed (``moica_auth.testing.pki.default_pki``).
TEST_SEED = "moica-auth-test"
STARTUP_TIMEOUT = 240.0  # the very first start generates the demo's RSA keys

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Demo:
    """The running demo subprocess."""

    url: str
    card_url: str
    responder_url: str
    cards: dict[str, dict[str, Any]]
    process: subprocess.Popen[str]
    #: The demo's state folder: its anchors, intermediates and TSA root as PEM files.
    state_dir: Path | None = None

    def insert(self, slug: str) -> None:
        """Put a demo card in the virtual reader (its HTTP test control)."""
        answer = requests.post(f"{self.card_url}/_virtual/insert", json={"card": slug}, timeout=5)
        answer.raise_for_status()

    def unlock(self, slug: str, user_code: str, new_pin: str) -> None:
        """Unlock a locked card with its 用戶代碼, as the citizen would online."""
        answer = requests.post(
            f"{self.card_url}/unlock",
            json={"card": slug, "user_code": user_code, "new_pin": new_pin},
            timeout=5,
        )
        answer.raise_for_status()


def _read_first_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        assert process.stdout is not None
        lines.put(process.stdout.readline())

    threading.Thread(target=reader, daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@contextlib.contextmanager
def run_demo(state: Path, *extra_args: str) -> Iterator[Demo]:
    """Run ``python -m example_site.demo`` on free ports in a subprocess; yield its URLs.

    The environment is cleaned of ``MOICA_AUTH_*``/``MOICA_DEMO_*``/``DJANGO_*`` so the
    test process's settings never leak in; the demo's log goes to ``state/demo.log``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOICA_AUTH_", "MOICA_DEMO_", "DJANGO_"))
    }
    # The suite's seed and key cache: the demo then reuses the CA keys (RSA-4096, slow to
    # derive) that the other tests already cached, and only derives its card keys.
    env["MOICA_AUTH_TEST_KEY_CACHE"] = str(key_cache_dir())
    log = (state / "demo.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "example_site.demo",
            "--port=0",
            "--card-port=0",
            "--responder-port=0",
            "--json",
            f"--now={DEMO_NOW}",
            f"--state-dir={state}",
            f"--seed={TEST_SEED}",
            *extra_args,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        line = _read_first_line(process, STARTUP_TIMEOUT)
        if not line:
            process.kill()
            log.close()
            tail = (state / "demo.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the demo did not start:\n{tail}")
        info = json.loads(line)
        yield Demo(
            url=info["url"],
            card_url=info["card_url"],
            responder_url=info["responder_url"],
            cards={c["slug"]: c for c in info["cards"]},
            process=process,
            state_dir=state,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with run_demo(tmp_path_factory.mktemp("demo-state")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt install chromium); no browser is downloaded")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so ``page`` knows whether the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def traffic(demo: Demo) -> SiteTraffic:
    return SiteTraffic(origin=demo.url)


@pytest.fixture
def page(
    browser: Any, demo: Demo, traffic: SiteTraffic, request: pytest.FixtureRequest
) -> Iterator[Any]:
    context = browser.new_context(base_url=demo.url, locale="zh-TW", accept_downloads=True)
    context.set_default_timeout(15_000)
    context.on("request", traffic.record)
    the_page = context.new_page()
    try:
        yield the_page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            RESULTS.mkdir(exist_ok=True)
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
            for index, open_page in enumerate(context.pages):
                # A popup that already closed cannot be captured.
                with contextlib.suppress(Exception):
                    open_page.screenshot(path=str(RESULTS / f"{name}-{index}.png"), full_page=True)
        context.close()
    leaks = traffic.leaks()
    assert not leaks, f"a PIN reached the site: {leaks}"
