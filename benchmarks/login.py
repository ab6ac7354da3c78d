"""End-to-end login benchmark: the card login against Django's own ``login()``.

Run: ``.venv/bin/python -m benchmarks.login`` (about a minute; ``--quick``: seconds).

Everything runs in one process through Django's ``WSGIHandler`` called in-process (no
sockets between client and server, so no network jitter), CSRF enforced as in
production, SQLite in memory, database sessions. Three contenders, one fresh visitor
(a new cookie jar) per login:

* **ours, memory store**: ``POST /moica/challenge/`` then ``POST /moica/login/`` with a
  PKCS#7 token the test PKI's soft card signed for that challenge (card-only login plus
  the ID number, checked against the certificate's last four characters);
* **ours, Redis**: the same against a real ``redis-server`` started on a free loopback
  port for the run;
* **Django login()**: ``POST /bench/django-login/`` of ``benchmarks/django_urls.py``,
  which fetches an existing user and calls ``django.contrib.auth.login``.

Signing the token, and the first ``GET`` that gives the visitor its CSRF cookie, are not
timed. Per login it reports the median wall time, the median CPU time of this process
(the server's work: redis-py included, redis-server not, which is given apart) and,
from the mean CPU time, the logins per second one core could serve; the ratio ours /
Django; SQL statements and Redis round trips per login.

The stage breakdown comes from a second, separate pass under a statistical profiler:
``SIGPROF`` at the kernel's CPU-time tick interrupts the request thread, each sample
counts for the stage of the interrupted stack, and the shares are scaled to the CPU time
measured around the requests (other load on the machine does not skew it; time spent
waiting for Redis is not in it). A stack's stage is decided
by :data:`STAGE_RULES`, a table of module prefixes and model labels, never by function
names, so that it keeps working when the code moves between modules: the innermost frame
matching a *owner* rule wins; failing that, the innermost *generic* rule (JSON, request
parsing, CSRF, response); failing that, the innermost ``moica_auth`` module not in the
table is shown under its own name, so new modules surface instead of vanishing.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from types import FrameType
from typing import Any

# --- stage table ------------------------------------------------------------------------

#: (kind, pattern, stage). ``owner`` and ``generic`` patterns are module names: a module
#: matches its own name and its submodules; a pattern ending in ``*`` is a bare prefix.
#: ``model`` patterns are Django model labels, matched on ORM frames (``django.db.*``)
#: whose ``self`` is that model, a queryset or manager of it: they tell an audit row
#: from an identity lookup wherever the calling code lives.
STAGE_RULES: tuple[tuple[str, str, str], ...] = (
    ("owner", "moica_auth.forms", "parse"),
    ("owner", "moica_auth.challenge", "challenge"),
    ("owner", "moica_auth.signature*", "verify"),
    ("owner", "moica_auth.cms*", "verify"),
    ("owner", "moica_auth.verifier", "verify"),
    ("owner", "moica_auth.validation", "verify"),
    ("owner", "moica_auth.certificate", "verify"),
    ("owner", "moica_auth._wire", "verify"),
    ("owner", "moica_auth.revocation", "revocation lookup"),
    ("owner", "moica_auth.ratelimit", "limits"),
    ("owner", "moica_auth.identity", "personal data"),
    ("owner", "moica_auth.backends", "binding"),
    ("model", "moica_auth.CitizenIdentity", "binding"),
    ("owner", "moica_auth.audit", "audit"),
    ("model", "moica_auth.LoginAttempt", "audit"),
    ("owner", "moica_auth.session", "session"),
    ("owner", "moica_auth.middleware", "session"),
    ("owner", "django.contrib.sessions", "session"),
    ("model", "sessions.Session", "session"),
    # login(), get_user(), update_last_login: Django's own session login.
    ("owner", "django.contrib.auth", "session"),
    ("owner", "moica_auth.services", "services lookup"),
    ("model", "moica_auth.TrustAnchor", "services lookup"),
    ("generic", "json", "parse"),
    ("generic", "django.http.request", "parse"),
    ("generic", "django.http.multipartparser", "parse"),
    ("generic", "django.middleware.csrf", "csrf"),
    ("generic", "django.http.response", "response"),
    ("generic", "django.dispatch", "signals"),
)
#: Wrapper frames that sit on the stack around everything inside them (middleware
#: ``__call__``): skipped, or every request would belong to the outermost middleware.
_WRAPPER_NAMES = frozenset({"__call__", "__acall__"})
#: Printing order; stages not listed (new ``moica_auth`` modules) follow.
STAGE_ORDER = (
    "parse",
    "challenge",
    "verify",
    "revocation lookup",
    "limits",
    "personal data",
    "binding",
    "audit",
    "session",
    "services lookup",
    "csrf",
    "signals",
    "response",
)
FRAMEWORK = "framework (handler, urls, middleware)"


def _module_matches(module: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return module.startswith(pattern[:-1])
    return module == pattern or module.startswith(pattern + ".")


def _frame_model(frame: FrameType) -> str | None:
    """The label of the model an ORM frame works on (``self`` a model instance, or a
    queryset, manager or query of one), else ``None``. Only those types are looked into,
    through their ``__dict__``: the frame belongs to a running thread, and an arbitrary
    object's ``__getattr__`` must not run from here."""
    from django.db.models import Model, QuerySet
    from django.db.models.manager import BaseManager
    from django.db.models.sql.query import Query

    obj = frame.f_locals.get("self")
    if isinstance(obj, Model):
        model: Any = type(obj)
    elif isinstance(obj, QuerySet | BaseManager | Query):
        model = vars(obj).get("model")
    else:
        return None
    meta = vars(model).get("_meta") if isinstance(model, type) else None
    return str(meta.label) if meta is not None else None


@dataclass
class StageClassifier:
    """Map a stack to its stage with :data:`STAGE_RULES`."""

    rules: tuple[tuple[str, str, str], ...] = STAGE_RULES
    _cache: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def _module_stage(self, kind: str, module: str) -> str | None:
        key = (kind, module)
        if key not in self._cache:
            # Longest pattern wins, so a specific module can override its package.
            found = [
                (len(p), stage)
                for k, p, stage in self.rules
                if k == kind and _module_matches(module, p)
            ]
            self._cache[key] = max(found)[1] if found else None
        return self._cache[key]

    def stage(self, frame: FrameType | None) -> str:
        generic: str | None = None
        unlisted: str | None = None
        models = {p: s for k, p, s in self.rules if k == "model"}
        while frame is not None:
            module = str(frame.f_globals.get("__name__", ""))
            if frame.f_code.co_name not in _WRAPPER_NAMES:
                owner = self._module_stage("owner", module)
                if owner is not None:
                    return owner
                if module.startswith("django.db."):
                    label = _frame_model(frame)
                    if label in models:
                        return models[label]
                if generic is None:
                    generic = self._module_stage("generic", module)
                if unlisted is None and module.startswith("moica_auth."):
                    unlisted = module
            frame = frame.f_back
        return generic or unlisted or FRAMEWORK


class StageSampler:
    """Statistical profile by stage of this (the main) thread while :attr:`active` is set.

    ``ITIMER_PROF`` sends ``SIGPROF`` as the process consumes CPU time (at the kernel's
    tick, so the instants are unrelated to what the request is doing); the handler runs
    in the main thread with the interrupted frame and counts one sample for that stack's
    stage. The share of samples is the share of CPU time; :meth:`per_stage` scales it to
    the CPU time measured around the requests. A long call into C delays the handler until
    it returns, into the frame that made the call: its time goes to the right stage.
    """

    def __init__(self, *, interval: float = 0.0005) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.active = False
        self.cpu = 0.0
        self._classifier = StageClassifier()
        self._previous: Any = None

    def __enter__(self) -> StageSampler:
        self._previous = signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, self._previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.active and frame is not None:
            stage = self._classifier.stage(frame)
            self.counts[stage] = self.counts.get(stage, 0) + 1

    def measure(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as sampled, measured request work."""
        start = time.thread_time()
        self.active = True
        try:
            return fn()
        finally:
            self.active = False
            self.cpu += time.thread_time() - start

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def per_stage(self, logins: int) -> dict[str, float]:
        """CPU seconds per login by stage."""
        total = self.samples
        if not total or not logins:
            return {}
        return {k: self.cpu / logins * n / total for k, n in self.counts.items()}


# --- in-process WSGI client ---------------------------------------------------------


@dataclass
class Visitor:
    """One browser: a cookie jar, requests through the WSGI handler in this process."""

    handler: Callable[..., Any]
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "HTTP_ACCEPT": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method == "POST":
            # What a browser's fetch() sends: the page origin and Django's CSRF header.
            environ["HTTP_ORIGIN"] = "http://testserver"
            if "csrftoken" in self.cookies:
                environ["HTTP_X_CSRFTOKEN"] = self.cookies["csrftoken"]
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(line: str, hdrs: list[tuple[str, str]], exc: Any = None) -> None:
            status.append(line)
            headers.extend(hdrs)

        result = self.handler(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        for name, value in headers:
            if name.lower() == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(morsel.key, None)
                    else:
                        self.cookies[morsel.key] = morsel.value
        return int(status[0].split(" ", 1)[0]), content


# --- Redis ---------------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def count_redis_round_trips() -> Iterator[list[int]]:
    """Count what redis-py writes to the server (one write per command, pipeline or
    script call: a round trip). Counted on the client, because the server's
    ``commandstats`` also counts the commands a Lua script runs inside one call."""
    from redis.connection import AbstractConnection

    count = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


# --- contenders ----------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float


@dataclass
class Contender:
    name: str
    redis_url: str | None
    samples: list[Sample] = field(default_factory=list)
    sql: int = 0
    sql_writes: int = 0
    redis_round_trips: int = 0
    redis_cpu: float = 0.0
    logins: int = 0


class Bench:
    def __init__(self) -> None:
        from django.core.handlers.wsgi import WSGIHandler

        from moica_auth.testing.pki import default_pki, make_id_number
        from moica_auth.testing.softcard import SoftCard

        self.handler = WSGIHandler()
        self.id_number = make_id_number("bench", letter="A", sex=2)
        pki = default_pki()
        card = pki.issue_card(
            generation="G3", name="測試基準", id_number=self.id_number, label="bench"
        )
        self.card = SoftCard(card)
        self.sql = [0, 0]

    def _count_sql(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sql[0] += 1
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.sql[1] += 1
        return execute(sql, params, many, context)

    @contextmanager
    def store(self, redis_url: str | None) -> Iterator[None]:
        from django.test.utils import override_settings

        with override_settings(MOICA_AUTH_REDIS_URL=redis_url):
            yield

    def ours(self, timed: Callable[[Callable[[], Any]], Any]) -> None:
        visitor = Visitor(self.handler)
        status, _ = visitor.request("GET", "/moica/session/")
        assert status == 200 and "csrftoken" in visitor.cookies
        status, body = timed(
            lambda: visitor.request("POST", "/moica/challenge/", b"", "application/json")
        )
        assert status == 200, body
        challenge = json.loads(body)
        nonce = base64.urlsafe_b64decode(challenge["nonce"] + "=")
        signed = self.card.sign(challenge["tbs"].encode(), signature_type="PKCS7", nonce=nonce)
        payload = {
            "signature": signed["signature"],
            "signature_type": "PKCS7",
            "certificate": signed["certb64"],
            "card_sn": signed["cardSN"],
            "nonce": challenge["nonce"],
            "id_number": self.id_number,
        }
        data = json.dumps(payload).encode()
        status, body = timed(
            lambda: visitor.request("POST", "/moica/login/", data, "application/json")
        )
        assert status == 200 and json.loads(body)["ok"] is True, body

    def django(self, timed: Callable[[Callable[[], Any]], Any]) -> None:
        visitor = Visitor(self.handler)
        status, _ = visitor.request("GET", "/bench/csrf/")
        assert status == 200 and "csrftoken" in visitor.cookies
        status, body = timed(
            lambda: visitor.request("POST", "/bench/django-login/", b"", "application/json")
        )
        assert status == 200 and "sessionid" in visitor.cookies, body

    def run(self, contender: Contender, iterations: int, redis_pid: int | None) -> None:
        """``iterations`` logins, each timed (wall and CPU), SQL and Redis counted."""
        from django.db import connection

        flow = self.django if contender.redis_url == "django" else self.ours
        url = None if contender.redis_url in (None, "django") else contender.redis_url
        with self.store(url):
            flow(lambda fn: fn())  # warm: services built, caches filled
            server_cpu = _process_cpu(redis_pid) if url and redis_pid else 0.0
            self.sql = [0, 0]
            with connection.execute_wrapper(self._count_sql), count_redis_round_trips() as trips:
                for _ in range(iterations):
                    spent = [0.0, 0.0]

                    def timed(fn: Callable[[], Any], spent: list[float] = spent) -> Any:
                        c0, w0 = time.process_time(), time.perf_counter()
                        try:
                            return fn()
                        finally:
                            spent[0] += time.perf_counter() - w0
                            spent[1] += time.process_time() - c0

                    flow(timed)
                    contender.samples.append(Sample(wall=spent[0], cpu=spent[1]))
            contender.sql += self.sql[0]
            contender.sql_writes += self.sql[1]
            contender.logins += iterations
            if url:
                contender.redis_round_trips += trips[0]
                if redis_pid:
                    contender.redis_cpu += _process_cpu(redis_pid) - server_cpu

    def profile(self, contender: Contender, cpu_budget: float) -> tuple[dict[str, float], int]:
        """Logins under the :class:`StageSampler` until ``cpu_budget`` seconds of request
        CPU time (at most 5,000): (CPU seconds per login by stage, samples)."""
        flow = self.django if contender.redis_url == "django" else self.ours
        url = None if contender.redis_url in (None, "django") else contender.redis_url
        with self.store(url), StageSampler() as sampler:
            flow(lambda fn: fn())
            logins = 0
            while sampler.cpu < cpu_budget and logins < 5000:
                flow(sampler.measure)
                logins += 1
        return sampler.per_stage(logins), sampler.samples


# --- main ----------------------------------------------------------------------------


def _setup() -> None:
    import django
    from cryptography.hazmat.primitives import serialization
    from django.conf import settings

    from benchmarks.django_settings import BASELINE_USER
    from benchmarks.django_settings import settings as site_settings
    from moica_auth.testing.pki import default_pki

    pki = default_pki()

    def pem(certs: Any) -> list[str]:
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in certs]

    settings.configure(
        **site_settings(anchors=pem(pki.anchors), intermediates=pem(pki.intermediates))
    )
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model()._default_manager.create_user(username=BASELINE_USER)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke run)")
    parser.add_argument("--iterations", type=int, default=None, help="logins per round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=None,
        help="request CPU seconds sampled per contender for the stage breakdown",
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis contender")
    args = parser.parse_args(argv)
    iterations = args.iterations or (8 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 10)
    # SIGPROF comes at the kernel's tick (often every 4 ms of CPU): 3 s give each
    # contender several hundred samples.
    profile_seconds = args.profile_seconds or (0.3 if args.quick else 3.0)

    _setup()
    bench = Bench()
    with contextlib_redis(args.no_redis) as redis:
        contenders = [Contender("ours, memory store", None)]
        if redis is not None:
            contenders.append(Contender("ours, Redis", redis[0]))
        contenders.append(Contender("Django login()", "django"))
        gc.collect()
        for _ in range(rounds):
            for contender in contenders:
                bench.run(contender, iterations, redis[1] if redis else None)
        sampled = {c.name: bench.profile(c, profile_seconds) for c in contenders}
    profiles = {name: found[0] for name, found in sampled.items()}

    print(
        f"Login benchmark: {rounds} round(s) × {iterations} logins per contender, "
        f"in-process WSGI, SQLite in memory, Python {sys.version.split()[0]}"
    )
    if redis is None:
        print("(Redis contender skipped: --no-redis)")
    print()
    print("## Per login (challenge + login for ours; one login() request for Django)")
    print()
    header = f"{'contender':<22} {'wall p50 ms':>11} {'wall p95 ms':>11} {'CPU p50 ms':>10}"
    header += f" {'logins/s/core':>13} {'SQL':>5} {'writes':>6} {'redis trips':>11}"
    print(header)
    results: dict[str, dict[str, float]] = {}
    for c in contenders:
        walls = sorted(s.wall for s in c.samples)
        cpus = [s.cpu for s in c.samples]
        p95 = walls[min(len(walls) - 1, int(len(walls) * 0.95))]
        mean_cpu = statistics.fmean(cpus)
        r = {
            "wall_p50_ms": statistics.median(walls) * 1000,
            "wall_p95_ms": p95 * 1000,
            "cpu_p50_ms": statistics.median(cpus) * 1000,
            "cpu_mean_ms": mean_cpu * 1000,
            "logins_per_s_per_core": 1 / mean_cpu if mean_cpu else 0.0,
            "sql_per_login": c.sql / c.logins,
            "sql_writes_per_login": c.sql_writes / c.logins,
            "redis_round_trips_per_login": c.redis_round_trips / c.logins,
            "redis_server_cpu_ms_per_login": c.redis_cpu * 1000 / c.logins,
        }
        results[c.name] = r
        redis_cmds = (
            f"{r['redis_round_trips_per_login']:.1f}"
            if c.redis_url not in (None, "django")
            else "-"
        )
        print(
            f"{c.name:<22} {r['wall_p50_ms']:>11.2f} {r['wall_p95_ms']:>11.2f}"
            f" {r['cpu_p50_ms']:>10.2f} {r['logins_per_s_per_core']:>13.0f}"
            f" {r['sql_per_login']:>5.1f} {r['sql_writes_per_login']:>6.1f} {redis_cmds:>11}"
        )
    for c in contenders:
        if c.redis_url not in (None, "django"):
            ms = results[c.name]["redis_server_cpu_ms_per_login"]
            print(f"(redis-server CPU, not counted above: ~{ms:.2f} ms per login, 10 ms ticks)")
    print()
    print("## Ratio ours / Django login() (median CPU; target ≤ 2)")
    print()
    base = results["Django login()"]["cpu_p50_ms"]
    ratios: dict[str, float] = {}
    for name, r in results.items():
        if name != "Django login()":
            ratios[name] = r["cpu_p50_ms"] / base
            wall = r["wall_p50_ms"] / results["Django login()"]["wall_p50_ms"]
            print(f"{name:<22} {ratios[name]:.2f}× CPU   {wall:.2f}× wall")
    print()
    counts = ", ".join(f"{name}: {found[1]}" for name, found in sampled.items())
    print(f"## Stage breakdown (CPU ms per login; samples: {counts})")
    print()
    stages = list(STAGE_ORDER)
    for profile in profiles.values():
        stages += [s for s in profile if s not in stages and s != FRAMEWORK]
    stages.append(FRAMEWORK)
    names = [c.name for c in contenders]
    print(f"{'stage':<38}" + "".join(f" {n:>20}" for n in names))
    for stage in stages:
        if not any(profiles[n].get(stage) for n in names) and stage not in STAGE_ORDER:
            continue
        print(
            f"{stage:<38}" + "".join(f" {profiles[n].get(stage, 0.0) * 1000:>20.3f}" for n in names)
        )
    print(f"{'total':<38}" + "".join(f" {sum(profiles[n].values()) * 1000:>20.3f}" for n in names))
    print()
    summary = {
        "results": results,
        "ratios_cpu": ratios,
        "target_ratio": 2.0,
        "stages_ms": {n: {k: v * 1000 for k, v in p.items()} for n, p in profiles.items()},
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


@contextmanager
def contextlib_redis(skip: bool) -> Iterator[tuple[str, int] | None]:
    if skip:
        yield None
        return
    # The launcher the tests use (benchmarks/revocation.py does the same).
    from tests.redis_server import redis_process

    with redis_process() as found:
        yield found


if __name__ == "__main__":
    sys.exit(main())
