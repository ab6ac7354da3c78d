"""Full logins per second of the example portal under gunicorn, with Redis and PostgreSQL.

Not a test: it starts everything on 127.0.0.1, measures, prints, and stops it all.

* **Redis**: a throw-away ``redis-server`` (the shared store: challenges, limits, OCSP cache);
* **PostgreSQL**: Debian's server (``initdb`` + ``pg_ctl`` into a temporary folder, as the
  ``postgres`` user when run as root), the portal's database as a production portal runs
  it (SQLite stays the demo's embedded default);
* **the revocation responders** and the demo PKI of :mod:`example_site.demo` (OCSP answers
  are cached in Redis after each card's first login, as in production);
* **gunicorn**: ``example_site.wsgi`` with ``--workers`` × ``--threads`` (gthread) and
  :mod:`benchmarks.load_settings`.

The load generator keeps ``--concurrency`` keep-alive connections busy. Each virtual user
opens a session, asks for a challenge, has it signed by a demo card (the signing is the
citizen's card's work and is done between the two timed phases, so the generator's RSA
does not compete with the server it measures) and posts the login. In the same run,
requests of the bare Django session endpoint (``GET /moica/session/``) are interleaved with
the logins: the ratio of the two is what moica-auth costs over Django itself.

Printed: logins/s (full login = challenge + login), p50/p95/p99 of a full login and of a
bare request, their ratio, server CPU (gunicorn workers, Redis, PostgreSQL) per login, and
worker RSS. ``--seconds`` bounds the run (default 20 s of load); the last line is JSON.

    .venv/bin/python -m benchmarks.load --workers 2 --threads 4 --concurrency 8 --seconds 20
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import pwd
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CARDS = ("g3-card", "g2-card", "g3-mobile", "g3-spare")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the servers --------------------------------------------------------------------


@contextmanager
def redis(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: apt-get install redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "redis-server")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        stop(proc)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for version in sorted(Path("/usr/lib/postgresql").glob("*"), reverse=True):
        candidate = version / "bin" / name
        if candidate.exists():
            return str(candidate)
    raise SystemExit("PostgreSQL is missing: apt-get install postgresql")


@contextmanager
def postgres(workdir: Path) -> Iterator[tuple[dict[str, str], int]]:
    """A PostgreSQL cluster in ``workdir`` on a loopback port; yields env and the pid."""
    data = workdir / "pg"
    data.mkdir()
    as_user: list[str] = []
    user = "postgres"
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        entry = pwd.getpwnam("postgres")
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
    port = free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {workdir} -c fsync=on "
        "-c max_connections=200 -c shared_buffers=128MB"
    )
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(workdir / "pg.log"),
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "moica"],
            check=True,
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        env = {
            "MOICA_BENCH_PG_DB": "moica",
            "MOICA_BENCH_PG_USER": user,
            "MOICA_BENCH_PG_HOST": "127.0.0.1",
            "MOICA_BENCH_PG_PORT": str(port),
        }
        yield env, pid
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )


# --- process figures ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (``/proc``, Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


# --- the load generator -------------------------------------------------------------


class Session:
    """One browser: a keep-alive connection and its cookies."""

    def __init__(self, port: int, origin: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.origin = origin
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Origin": self.origin, "Referer": self.origin + "/"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                if attempt == 2:
                    raise
        for header in response.headers.get_all("Set-Cookie") or ():
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for key, morsel in cookie.items():
                self.cookies[key] = morsel.value
        return response.status, data


def run_phase(jobs: list[Any], concurrency: int, work: Any) -> tuple[float, list[Any]]:
    """Run ``work(job)`` over ``jobs`` with ``concurrency`` threads; (wall seconds, results)."""
    todo: queue.Queue[Any] = queue.Queue()
    for job in jobs:
        todo.put(job)
    results: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            out = work(job)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# A gunicorn config that profiles the (sync, single-threaded) worker while it serves.
_PROFILE_CONF = """
import cProfile

def post_worker_init(worker):
    worker.profiler = cProfile.Profile()
    worker.profiler.enable()

def worker_exit(server, worker):
    worker.profiler.disable()
    worker.profiler.dump_stats({out!r})
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="load time, about")
    parser.add_argument("--calibrate", type=int, default=200, help="logins of the first round")
    parser.add_argument(
        "--sessions",
        choices=("db", "cache"),
        default="db",
        help="Django sessions in PostgreSQL (db, Django's default) or in Redis (cache)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="one sync worker under cProfile; the stats go to FILE (pstats format)",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from example_site import clock as demo_clock
    from example_site.citizens import citizen
    from example_site.demo_pki import build_demo_pki, use_key_cache, write_state
    from moica_auth.testing.responders import ResponderServer
    from moica_auth.testing.softcard import SoftCard

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="moica-load-"))
        stack.callback(shutil.rmtree, workdir, True)
        redis_url, redis_proc = stack.enter_context(redis(workdir))
        pg_env, pg_pid = stack.enter_context(postgres(workdir))

        use_key_cache()
        responders = ResponderServer(clock=demo_clock.now).start()
        stack.callback(responders.stop)
        demo = build_demo_pki(responder_url=responders.url, now=demo_clock.now())
        from example_site.demo import _start_responders

        _start_responders(demo, responders, demo_clock.now)
        state = workdir / "state"
        state.mkdir()
        write_state(demo, state)

        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **pg_env,
            "DJANGO_SETTINGS_MODULE": "benchmarks.load_settings",
            "MOICA_DEMO_STATE": str(state),
            "MOICA_AUTH_ORIGIN": origin,
            "MOICA_AUTH_REDIS_URL": redis_url,
            "MOICA_BENCH_SESSIONS": args.sessions,
            "PYTHONPATH": str(ROOT),
        }
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
            env=env,
            check=True,
            cwd=ROOT,
        )
        extra: list[str] = []
        if args.profile:
            config = workdir / "profile_conf.py"
            config.write_text(_PROFILE_CONF.format(out=str(Path(args.profile).resolve())))
            extra = [
                "--config",
                str(config),
                "--worker-class",
                "sync",
                "--workers",
                "1",
                "--threads",
                "1",
            ]
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_site.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--worker-class",
                "gthread",
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
                *extra,
            ],
            env=env,
            cwd=ROOT,
        )
        stack.callback(stop, gunicorn)
        wait_port(port, gunicorn, "gunicorn")
        cards = [SoftCard(demo.citizen_card(citizen(slug))) for slug in CARDS]

        def challenge(i: int) -> tuple[Session, dict[str, Any], float, int]:
            s = Session(port, origin)
            s.request("GET", "/moica/session/")
            start = time.perf_counter()
            status, body = s.request("POST", "/moica/challenge/")
            took = time.perf_counter() - start
            return s, (json.loads(body) if status == 200 else {}), took, status

        def sign(item: tuple[Session, dict[str, Any], float, int], i: int) -> bytes:
            _session, ch, _, _ = item

            nonce = base64.urlsafe_b64decode(ch["nonce"] + "=" * (-len(ch["nonce"]) % 4))
            signed = cards[i % len(cards)].sign(ch["tbs"].encode(), nonce=nonce)
            body = {
                "signature": signed["signature"],
                "signature_type": "PKCS7",
                "certificate": signed["certb64"],
                "nonce": ch["nonce"],
            }
            if "cardSN" in signed:
                body["card_sn"] = signed["cardSN"]
            return json.dumps(body).encode()

        def one_round(n: int) -> dict[str, Any]:
            t_ch, issued = run_phase(list(range(n)), args.concurrency, challenge)
            bad = [x for x in issued if x[3] != 200]
            if bad:
                raise SystemExit(f"challenge refused: HTTP {bad[0][3]}")
            bodies = [(item, sign(item, i)) for i, item in enumerate(issued)]
            # Logins and bare session requests interleaved: each user logs in, then asks
            # for its session once (the bare Django request), on its own connection.
            jobs = [(item[0], body) for item, body in bodies]

            def work(job: tuple[Session, bytes]) -> tuple[float, float, int]:
                session, body = job
                start = time.perf_counter()
                status, data = session.request("POST", "/moica/login/", body)
                login = time.perf_counter() - start
                if status != 200:
                    print("login refused:", status, data[:200], file=sys.stderr)
                start = time.perf_counter()
                bare_status, _ = session.request("GET", "/moica/session/")
                bare = time.perf_counter() - start
                return login, bare, status if status != 200 else bare_status

            pids = [gunicorn.pid, *children(gunicorn.pid)]
            servers = {
                "workers": pids,
                "redis": [redis_proc.pid],
                "postgres": [pg_pid, *children(pg_pid)],
            }
            cpu0 = {k: tree_cpu(v) for k, v in servers.items()}
            t_login, done = run_phase(jobs, args.concurrency, work)
            cpu1 = {k: tree_cpu(v) for k, v in servers.items()}
            return {
                "n": n,
                "t_challenge": t_ch,
                "t_login": t_login,
                "challenge": [x[2] for x in issued],
                "login": [d[0] for d in done],
                "bare": [d[1] for d in done],
                "errors": sum(1 for d in done if d[2] != 200),
                "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0},
                "rss": [rss_mib(p) for p in pids[1:] if Path(f"/proc/{p}").exists()],
            }

        one_round(len(cards) * 2)  # warm-up: OCSP answers cached, connections open
        first = one_round(args.calibrate)
        per_login = (first["t_challenge"] + first["t_login"]) / first["n"]
        n = max(args.calibrate, int(args.seconds / per_login))
        result = one_round(n)

    full = [c + lg for c, lg in zip(result["challenge"], result["login"], strict=False)]
    wall = result["t_challenge"] + result["t_login"]
    # The login phase also served one bare request per login; a bare request's share of
    # the wall time is estimated from latencies and subtracted.
    bare_share = sum(result["bare"]) / max(1e-9, sum(result["bare"]) + sum(result["login"]))
    logins_per_s = result["n"] / (result["t_challenge"] + result["t_login"] * (1 - bare_share))
    cpu_total = sum(result["cpu"].values())
    rss = result["rss"]
    p = {q: pct(full, q) * 1000 for q in (50, 95, 99)}
    b = {q: pct(result["bare"], q) * 1000 for q in (50, 95, 99)}
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, {args.concurrency} clients, "
        f"{os.cpu_count()} CPUs, Redis + PostgreSQL on 127.0.0.1, sessions in {args.sessions}"
    )
    print(
        f"logins: {result['n']} full logins (challenge + login) in {wall:.1f} s, "
        f"{result['errors']} non-200 answers"
    )
    print(
        f"  logins/s (full):       {logins_per_s:8.1f}  (bare requests' share left out)"
    )
    print(f"  logins/s (raw):        {result['n'] / wall:8.1f}  (logins / all the timed wall time)")
    print(f"  full login  p50/p95/p99: {p[50]:6.1f} / {p[95]:6.1f} / {p[99]:6.1f} ms")
    print(
        f"    challenge p50:       {pct(result['challenge'], 50) * 1000:6.1f} ms, "
        f"login p50 {pct(result['login'], 50) * 1000:6.1f} ms"
    )
    print(f"  bare session p50/p95/p99: {b[50]:6.1f} / {b[95]:6.1f} / {b[99]:6.1f} ms")
    print(f"  ratio full login / bare request (p50): {p[50] / b[50]:5.1f}x")
    print(
        "  server CPU per full login (incl. its bare request): "
        + ", ".join(f"{k} {v / result['n'] * 1000:.2f} ms" for k, v in result["cpu"].items())
        + f", total {cpu_total / result['n'] * 1000:.2f} ms"
    )
    print(f"  worker RSS: {', '.join(f'{r:.0f}' for r in rss)} MiB")
    print(
        json.dumps(
            {
                "workers": args.workers,
                "sessions": args.sessions,
                "threads": args.threads,
                "concurrency": args.concurrency,
                "logins": result["n"],
                "logins_per_s": round(logins_per_s, 1),
                "logins_per_s_raw": round(result["n"] / wall, 1),
                "p50_ms": round(p[50], 1),
                "p95_ms": round(p[95], 1),
                "p99_ms": round(p[99], 1),
                "bare_p50_ms": round(b[50], 2),
                "ratio_p50": round(p[50] / b[50], 1),
                "cpu_ms_per_login": {
                    k: round(v / result["n"] * 1000, 2) for k, v in result["cpu"].items()
                },
                "worker_rss_mib": [round(r) for r in rss],
                "errors": result["errors"],
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
