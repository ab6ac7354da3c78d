"""``make demo`` = ``python -m example_site.demo``: the whole demo in one process.

1. the CRL/OCSP responders (real HTTP on 127.0.0.1, port 8765), with the suspended
   (certificateHold) and revoked (keyCompromise) demo cards on the CRLs and on OCSP;
2. the demo PKI (:mod:`example_site.demo_pki`; deterministic, keys cached under
   ``example_site/var/keys``), whose certificates point at those responders;
3. the virtual HiPKI local component on 61161 with the demo cards, one inserted;
   a local RFC 3161 time-stamp authority (:mod:`moica_auth.testing.tsa`, a free port)
   that ``MOICA_AUTH_SIGNING`` uses for the signed applications' evidence; and the
   virtual SP API of the mobile citizen certificate with its phone page on 8766 (the
   g3-mobile citizen's phone holds the demo's mobile certificate), unless
   ``MOICA_AUTH_MOBILE_API_URL`` points at a real one;
4. the Django site (SQLite, migrated on start; in-process stores, or Redis with
   ``MOICA_AUTH_REDIS_URL``) on a threaded WSGI server at ``http://127.0.0.1:8000/``,
   trusting the demo roots and pointing the browser client at the virtual card.

Ctrl-C (or SIGTERM) stops everything. **Every key is a public test key.**

Tests start it in a subprocess on free ports: ``python -m example_site.demo --port 0
--card-port 0 --responder-port 0 --json --now 2026-01-15T00:00:00+00:00`` prints one JSON
line ``{"url", "card_url", "responder_url", "cards": [...]}`` and then serves.
:func:`start_demo` does the same in-process (Django can be set up once per process, so
call it once).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography.hazmat.primitives import serialization

from example_site.citizens import DEMO_CITIZENS, citizen
from example_site.demo_pki import (
    DEFAULT_SEED,
    VAR_DIR,
    DemoPKI,
    build_demo_pki,
    use_key_cache,
    write_state,
)

__all__ = ["DemoHandle", "main", "start_demo"]

logger = logging.getLogger("example_site.demo")

DEFAULT_PORT = 8000
DEFAULT_CARD_PORT = 61161
DEFAULT_RESPONDER_PORT = 8765
DEFAULT_MOBILE_PORT = 8766
#: The demo citizen whose phone holds a mobile citizen certificate.
MOBILE_SLUG = "g3-mobile"
DEFAULT_INSERTED = "g3-card"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    """Logs the request line only (never bodies: PINs never reach the site anyway)."""

    quiet = False

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            logger.info("%s " + format, self.address_string(), *args)


class _QuietHandler(_Handler):
    quiet = True


@dataclass
class DemoHandle:
    """A running demo: its URLs, the card controls, and :meth:`stop`."""

    url: str
    card_url: str
    responder_url: str
    pki: DemoPKI
    card_server: Any  # moica_auth.testing.virtual_card.VirtualCardServer
    responders: Any  # moica_auth.testing.responders.ResponderServer
    state_dir: Path
    _httpd: WSGIServer
    _thread: threading.Thread
    _stopped: bool = field(default=False)
    tsa: Any = None  # moica_auth.testing.tsa.TsaServer
    #: The virtual SP API (None when MOICA_AUTH_MOBILE_API_URL names a real one).
    sp_server: Any = None  # moica_auth.testing.virtual_sp.VirtualSpApi

    @property
    def mobile_api_url(self) -> str | None:
        return self.sp_server.url if self.sp_server is not None else None

    @property
    def phone_url(self) -> str | None:
        return self.sp_server.phone_url if self.sp_server is not None else None

    def insert(self, slug: str) -> None:
        """Put demo card ``slug`` into the virtual reader."""
        self.card_server.insert(slug)

    def remove(self) -> None:
        """Take the card out of the reader."""
        self.card_server.remove()

    @property
    def inserted(self) -> str | None:
        return self.card_server.inserted  # type: ignore[no-any-return]

    def summary(self) -> dict[str, Any]:
        """What the demo prints: URLs and the demo cards (test data, PINs included)."""
        return {
            "url": self.url,
            "card_url": self.card_url,
            "responder_url": self.responder_url,
            "tsa_url": self.tsa.url if self.tsa is not None else None,
            "mobile_api_url": self.mobile_api_url,
            "phone_url": self.phone_url,
            "inserted": self.inserted,
            "cards": [
                {
                    "slug": p.slug,
                    "name": p.name,
                    "generation": p.generation,
                    "form": p.form,
                    "status": p.status,
                    "pin": p.pin,
                }
                for p in DEMO_CITIZENS
            ],
        }

    def stop(self) -> None:
        """Stop the web server, the virtual card and the responders."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self.card_server.stop()
        if self.sp_server is not None:
            self.sp_server.stop()
        self.responders.stop()
        if self.tsa is not None:
            self.tsa.stop()


def _start_virtual_sp(demo: DemoPKI, *, host: str, port: int, poll_interval: float) -> Any:
    """The virtual SP API (MOI's relying-party API) with the demo's mobile certificate in
    the g3-mobile citizen's phone; the site is pointed at it through the environment
    (example_site/settings.py), as it would be at MOI's test API."""
    import base64

    from moica_auth.testing.virtual_sp import VirtualSpApi

    server = VirtualSpApi(pki=demo.pki, host=host, port=port).start()
    # Every demo citizen with a mobile certificate has it in a phone (g3-mobile; and
    # revoked-mobile, whose certificate the demo CRLs and OCSP report revoked).
    for person in DEMO_CITIZENS:
        if person.form == "mobile":
            server.bind_phone(person.id_number, demo.cards[person.slug])
    os.environ["MOICA_AUTH_MOBILE_API_URL"] = server.url
    os.environ["MOICA_AUTH_MOBILE_SERVICE_ID"] = server.service_id
    os.environ["MOICA_AUTH_MOBILE_AES_KEY"] = base64.b64encode(server.aes_key).decode("ascii")
    os.environ["MOICA_AUTH_MOBILE_POLL_INTERVAL"] = str(poll_interval)
    os.environ["MOICA_AUTH_MOBILE_MODES"] = "push,qr,mweb2app,web"
    # MOI's WEB-01 page on another site than the portal ("localhost" vs 127.0.0.1), as
    # fido.moi.gov.tw is: its form POST back to the callback is a cross-site navigation.
    os.environ["MOICA_AUTH_MOBILE_WEB_URL"] = server.url.replace("://127.0.0.1:", "://localhost:")
    return server


def _start_responders(demo: DemoPKI, server: Any, clock: Callable[[], datetime]) -> None:
    """CRLs at the paths the certificates name; OCSP for both MOICA CAs and the roots,
    signed by each CA itself (RFC 6960 §4.2.2.2), with the demo statuses."""
    for path, der in demo.crls(now=clock()).items():
        server.publish_crl(path, der)
    pki = demo.pki
    for ca in (pki.moica_g2, pki.moica_g3, pki.grca_g2, pki.grca_g3):
        server.add_ocsp(issuer=ca.certificate, signer=ca, path="/ocsp")
    for person in DEMO_CITIZENS:
        serial = demo.cards[person.slug].signing.certificate.serial_number
        for entry_serial, when, _reason in demo.revoked_entries(person.generation):
            if entry_serial != serial:
                continue
            if person.status == "suspended":
                server.set_status(serial, "hold", revoked_at=when)
            else:
                server.set_status(serial, "revoked", revoked_at=when, reason="key_compromise")


def start_demo(
    *,
    port: int = 0,
    card_port: int = 0,
    responder_port: int = 0,
    redis_url: str | None = None,
    host: str = "127.0.0.1",
    now: datetime | None = None,
    state_dir: Path | None = None,
    insert: str | None = DEFAULT_INSERTED,
    quiet: bool = True,
    seed: str = DEFAULT_SEED,
    mobile_port: int = 0,
    mobile_poll_interval: float = 4.0,
) -> DemoHandle:
    """Start the responders, the virtual card and the Django site in this process.

    ``port=0`` (and the other ports) pick free ports; read :attr:`DemoHandle.url`.
    ``now`` pins the demo clock's starting point (it then runs; see
    :mod:`example_site.clock`). ``state_dir`` receives the SQLite file and the demo's
    PEM files (default ``example_site/var/state``). ``seed`` determines every key (tests
    pass the test suite's seed to reuse its cached CA keys). Django is configured here with
    ``example_site.settings``, so this can run once per process.
    """
    if now is not None:
        os.environ["MOICA_DEMO_NOW"] = now.isoformat()
    from example_site import clock as demo_clock

    use_key_cache()
    state = Path(state_dir) if state_dir is not None else VAR_DIR / "state"
    state.mkdir(parents=True, exist_ok=True)

    from moica_auth.testing.keys import key_cache_dir
    from moica_auth.testing.responders import ResponderServer
    from moica_auth.testing.tsa import TsaServer, tsa_identities
    from moica_auth.testing.virtual_card import VirtualCard, VirtualCardServer

    responders = ResponderServer(host=host, port=responder_port, clock=demo_clock.now).start()
    try:
        # The first run derives the RSA keys (about half a minute); later runs read them
        # from the key cache.
        logger.info("building the demo PKI (test keys cached in %s)", key_cache_dir())
        demo = build_demo_pki(responder_url=responders.url, now=demo_clock.now(), seed=seed)
        _start_responders(demo, responders, demo_clock.now)
        write_state(demo, state)
        # The signed applications' time-stamps (TEST TSA key, same seed as the PKI).
        tsa_ids = tsa_identities(demo.pki)
        (state / "tsa-root.pem").write_bytes(
            tsa_ids.root.certificate.public_bytes(serialization.Encoding.PEM)
        )
        tsa = TsaServer(tsa_ids, host=host, port=0, clock=demo_clock.now).start()
        cards = [
            VirtualCard.from_citizen_card(demo.cards[p.slug], card_id=p.slug) for p in DEMO_CITIZENS
        ]
        card_server = VirtualCardServer(cards, host=host, port=card_port, clock=demo_clock.now)
        card_server.start()
    except BaseException:
        responders.stop()
        if "tsa" in locals():
            tsa.stop()
        raise
    if insert:
        card_server.insert(insert)
    sp_server = None
    if not os.environ.get("MOICA_AUTH_MOBILE_API_URL"):
        try:
            sp_server = _start_virtual_sp(
                demo, host=host, port=mobile_port, poll_interval=mobile_poll_interval
            )
        except BaseException:
            card_server.stop()
            responders.stop()
            raise

    try:
        httpd = make_server(
            host,
            port,
            _not_ready,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler if quiet else _Handler,
        )
    except BaseException:
        card_server.stop()
        if sp_server is not None:
            sp_server.stop()
        responders.stop()
        tsa.stop()
        raise
    url = f"http://{host}:{httpd.server_port}"
    if sp_server is not None:  # the WEB-01 callback "registered" with the virtual MOI
        sp_server.callback_url = f"{url}/moica/mobile/web/callback/"
    # The origin must be exactly what the browser uses: challenges are bound to it.
    os.environ["MOICA_AUTH_ORIGIN"] = url
    os.environ["MOICA_AUTH_COMPONENT_URL"] = card_server.url
    os.environ["MOICA_DEMO_STATE"] = str(state)
    os.environ["MOICA_DEMO_TSA_URL"] = tsa.url
    os.environ.setdefault("MOICA_DEMO_DB", str(state / "db.sqlite3"))
    if redis_url:
        os.environ["MOICA_AUTH_REDIS_URL"] = redis_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_site.settings"

    try:
        import django
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        from example_site import runtime

        runtime.card_server = card_server
        runtime.sp_server = sp_server
        # StaticFilesHandler serves moica_auth's browser client without collectstatic.
        httpd.set_app(StaticFilesHandler(get_wsgi_application()))
    except BaseException:
        httpd.server_close()
        card_server.stop()
        if sp_server is not None:
            sp_server.stop()
        responders.stop()
        tsa.stop()
        raise
    thread = threading.Thread(target=httpd.serve_forever, name="example-site", daemon=True)
    thread.start()
    return DemoHandle(
        url=url,
        card_url=card_server.url,
        responder_url=responders.url,
        pki=demo,
        card_server=card_server,
        responders=responders,
        state_dir=state,
        _httpd=httpd,
        _thread=thread,
        tsa=tsa,
        sp_server=sp_server,
    )


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def _print_summary(handle: DemoHandle, *, redis_url: str | None) -> None:
    print()
    print("moica-auth demo portal (TEST DATA: every key, PIN and person here is invented)")
    print(f"  site:               {handle.url}/")
    print(f"  virtual HiPKI card: {handle.card_url}  (inserted: {handle.inserted})")
    print(f"  CRL/OCSP responder: {handle.responder_url}")
    print(f"  time-stamp (TSA):   {handle.tsa.url}")
    if handle.sp_server is not None:
        phone = citizen(MOBILE_SLUG)
        print(f"  virtual SP API:     {handle.mobile_api_url}  (行動自然人憑證, MOI's SP API)")
        print(f"  virtual phone:      {handle.phone_url}?id={phone.id_number}  ({phone.name})")
    else:
        print(f"  mobile SP API:      {os.environ.get('MOICA_AUTH_MOBILE_API_URL')}")
    print(f"  stores:             {'Redis ' + redis_url if redis_url else 'in-process'}")
    print()
    width = max(len("card"), *(len(p.slug) for p in DEMO_CITIZENS))
    print(f"  {'card':<{width}} name    gen  form    status     PIN")
    for p in DEMO_CITIZENS:
        print(
            f"  {p.slug:<{width}} {p.name:<6} {p.generation:<4} {p.form:<7} {p.status:<10} {p.pin}"
        )
    print()
    print("ID numbers and birth dates are on the home page. Ctrl-C stops everything.")
    sys.stdout.flush()


def _start_from_args(args: argparse.Namespace) -> DemoHandle:
    from example_site.clock import parse_now

    return start_demo(
        port=args.port,
        card_port=args.card_port,
        responder_port=args.responder_port,
        redis_url=args.redis_url,
        host=args.host,
        now=parse_now(args.now) if args.now else None,
        state_dir=args.state_dir,
        insert=args.insert or None,
        quiet=not args.verbose,
        seed=args.seed,
        # Free ports (tests) pick a free one for the virtual SP API too.
        mobile_port=(
            args.mobile_port
            if args.mobile_port is not None
            else (0 if args.port == 0 else DEFAULT_MOBILE_PORT)
        ),
        mobile_poll_interval=args.mobile_poll_interval,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_site.demo",
        description="Run the moica-auth demo portal with a virtual card (TEST KEYS ONLY).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="site port (0: free)")
    parser.add_argument("--card-port", type=int, default=DEFAULT_CARD_PORT)
    parser.add_argument("--responder-port", type=int, default=DEFAULT_RESPONDER_PORT)
    parser.add_argument(
        "--mobile-port",
        type=int,
        default=None,
        help=f"virtual SP API port (default {DEFAULT_MOBILE_PORT}; 0 with --port=0)",
    )
    parser.add_argument(
        "--mobile-poll-interval",
        type=float,
        default=4.0,
        help="seconds between status polls against the virtual SP API (MOI: >= 4)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("MOICA_AUTH_REDIS_URL") or None,
        help="Redis for challenges, rate limits and caches (default: in-process)",
    )
    parser.add_argument("--now", default=None, help="pin the demo clock start (ISO 8601)")
    parser.add_argument("--state-dir", type=Path, default=None, help="SQLite + PEM folder")
    parser.add_argument("--insert", default=DEFAULT_INSERTED, help="card in the reader at start")
    parser.add_argument("--seed", default=DEFAULT_SEED, help="test-PKI key seed")
    parser.add_argument("--json", action="store_true", help="print one JSON line (tests)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        handle = _start_from_args(args)
    except OSError as exc:
        print(
            f"cannot start the demo: {exc}. Is another demo running? Choose other ports "
            "with --port, --card-port and --responder-port (0 picks a free one).",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(handle.summary(), ensure_ascii=False), flush=True)
    else:
        _print_summary(handle, redis_url=args.redis_url)

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    # Ctrl-C and SIGTERM both end the wait and stop every server cleanly (an explicit
    # SIGINT handler also works when the demo was started from a script).
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        stop.wait()
    finally:
        handle.stop()
        print("demo stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
