"""``benchmarks/login.py``: a smoke run, and the stage table that classifies its profile.

No timing is asserted: the run only has to complete, log in every time (the script
asserts each answer) and print its sections.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from benchmarks.login import FRAMEWORK, StageClassifier

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.redis
@pytest.mark.slow
def test_quick_run_prints_every_section() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.login", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for heading in (
        "## Per login",
        "## Ratio ours / Django login()",
        "## Stage breakdown",
        "logins/s/core",
    ):
        assert heading in out
    for contender in ("ours, memory store", "ours, Redis", "Django login()"):
        assert contender in out
    for stage in ("parse", "challenge", "verify", "limits", "binding", "audit", "session"):
        assert f"\n{stage} " in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["ratios_cpu"]) == {"ours, memory store", "ours, Redis"}
    ours = summary["results"]["ours, Redis"]
    assert ours["redis_round_trips_per_login"] > 0 and ours["sql_writes_per_login"] > 0
    # The sampler saw the stages where most of the time goes, and its shares add up
    # to the CPU time measured around the requests.
    for name in ("ours, memory store", "Django login()"):
        stages = summary["stages_ms"][name]
        assert stages.get("session", 0) > 0
        assert sum(stages.values()) > 0.3 * summary["results"][name]["cpu_mean_ms"]


def _stack(*modules: tuple[str, str]) -> types.FrameType:
    """A real call stack whose frames run in the given (module, function) pairs, outermost
    first; returns the innermost frame."""
    captured: list[types.FrameType] = []
    inner: object = lambda: captured.append(sys._getframe(1))  # noqa: E731
    for module, function in reversed(modules):
        namespace: dict[str, object] = {"__name__": module, "_next": inner}
        exec(f"def {function}():\n    _next()\n", namespace)  # noqa: S102 - test stack
        inner = namespace[function]
    assert callable(inner)
    inner()
    return captured[0]


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        ((("moica_auth.views", "v"), ("moica_auth.forms", "parse_login")), "parse"),
        ((("moica_auth.views", "v"), ("json.decoder", "decode")), "parse"),
        # JSON inside an owner is the owner's work, not request parsing.
        ((("moica_auth.challenge", "issue"), ("json.encoder", "encode")), "challenge"),
        ((("moica_auth.login", "run"), ("moica_auth.signature_cms", "parse")), "verify"),
        ((("moica_auth.verifier", "v"), ("moica_auth.revocation.crl", "x")), "revocation lookup"),
        ((("moica_auth.login", "run"), ("moica_auth.ratelimit", "check")), "limits"),
        ((("moica_auth.login", "run"), ("django.contrib.sessions.backends.db", "save")), "session"),
        # A middleware's __call__ wraps the view: it must not claim what runs inside.
        ((("moica_auth.middleware", "__call__"), ("moica_auth.backends", "bind")), "binding"),
        # A module the table does not know shows up under its own name.
        ((("django.core.handlers.base", "h"), ("moica_auth.login", "run")), "moica_auth.login"),
        ((("django.core.handlers.base", "h"),), FRAMEWORK),
    ],
)
def test_stage_table(stack: tuple[tuple[str, str], ...], stage: str) -> None:
    assert StageClassifier().stage(_stack(*stack)) == stage
