"""Bounded HTTP downloads for revocation data: CRLs (GET) and OCSP (POST).

Every request has connect and per-read timeouts **and one overall deadline**, enforced by
a watchdog that shuts the sockets down when it passes, so a server that drips its status
line, headers or body a byte at a time is cut off; bodies are size-limited while
streaming.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import requests
import requests.adapters
import urllib3
import urllib3.connection

from moica_auth.exceptions import (
    CrlInvalid,
    MoicaAuthError,
    RevocationUnavailable,
)

__all__ = ["CrlFetcher", "FetchResult", "HttpCrlFetcher", "post_bounded"]

# --- fetching -------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """One CRL download; ``not_modified`` answers a conditional GET (RFC 9110 §15.4.5)."""

    url: str
    status: Literal["ok", "not_modified"]
    content: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


class CrlFetcher(Protocol):
    """Downloads a CRL. Raises RevocationUnavailable (network) or CrlInvalid (body)."""

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult: ...


class _Watchdog:
    """Shuts down every socket of one download when its overall deadline passes.

    ``requests`` has no overall timeout: its read timeout applies to each socket read,
    so a server that drips the status line or headers a byte at a time is never cut off
    by it (``http.client`` reads those itself). Shutting the socket down from a timer
    thread makes the blocked read return at once.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._mutex:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def expire(self) -> None:
        with self._mutex:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # The plain socket's shutdown, also for an SSLSocket: it acts on the descriptor
        # and leaves the TLS object to fail on its own in the reading thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched_session(watchdog: _Watchdog) -> requests.Session:
    """A ``requests.Session`` whose new connections are registered with ``watchdog``."""

    class Http(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class Https(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class HttpPool(urllib3.HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = Https

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}

    session = requests.Session()
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def post_bounded(
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    timeout: float,
    total_timeout: float,
    max_bytes: int,
    too_large: type[MoicaAuthError],
    session: requests.Session | None = None,
    what: str = "OCSP responder",
) -> bytes:
    """POST ``data`` and return a 200 answer's body, within ``total_timeout`` overall.

    ``timeout`` bounds the connect and each read; the watchdog shuts the socket down at
    ``total_timeout`` even while the status line or headers are still dripping (an
    injected ``session`` gets the deadline checks between body reads only). A body over
    ``max_bytes`` raises ``too_large``; anything else that goes wrong raises
    :class:`RevocationUnavailable`. No redirects.
    """
    deadline = time.monotonic() + total_timeout
    watchdog = _Watchdog()
    own = session is None
    http = session or _watched_session(watchdog)
    timer = threading.Timer(total_timeout, watchdog.expire)
    timer.daemon = True
    timer.start()
    try:
        with http.post(
            url,
            data=data,
            headers=dict(headers),
            timeout=(timeout, timeout),
            stream=True,
            allow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise RevocationUnavailable(f"{what} answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise too_large(f"{what}: response exceeds the size limit")
            body = bytearray()
            while True:
                chunk = response.raw.read1(8192, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise too_large(f"{what}: response exceeds the size limit")
                if time.monotonic() > deadline:
                    raise RevocationUnavailable(f"{what} took too long")
            if watchdog.expired:
                # A shut-down socket reads as end of file: the body may be cut short.
                raise RevocationUnavailable(f"{what} took too long")
            return bytes(body)
    except MoicaAuthError:
        if watchdog.expired:
            raise RevocationUnavailable(f"{what} took too long") from None
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if watchdog.expired:
            raise RevocationUnavailable(f"{what} took too long") from exc
        raise RevocationUnavailable(f"{what} unreachable ({type(exc).__name__})") from exc
    finally:
        timer.cancel()
        if own:
            http.close()


class HttpCrlFetcher:
    """Fetch CRLs over HTTP(S) with ``requests``.

    Timeouts on connect and on each read plus an overall deadline, enforced by a
    watchdog that shuts the sockets down (a server dripping headers or body is cut
    off); the size limit is enforced while streaming and counts decompressed bytes (a
    20 MB CRL is normal, an endless body or a gzip bomb is not); a body shorter than
    Content-Length is refused; conditional GET with If-None-Match / If-Modified-Since so
    an unchanged CRL costs one round trip, and a 304 without validators is refused; at
    most 3 redirects, http(s) only.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 120.0,
        max_bytes: int = 64 * 1024 * 1024,
        session: requests.Session | None = None,
        user_agent: str = "moica-auth CRL fetcher",
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        # requests.Session is not documented thread-safe: without an injected session
        # each fetch uses its own (the background thread and fetch-on-miss may overlap).
        self.session = session
        self.user_agent = user_agent

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        # Compressed transfer would make the size limit and the length check apply to
        # different byte counts; CRLs are already dense DER.
        headers = {"Accept-Encoding": "identity", "User-Agent": self.user_agent}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self.total_timeout
        # An injected session (tests, a proxy setup) gets the deadline checks between
        # body reads only; our own session also gets the watchdog for the headers.
        watchdog = _Watchdog()
        session = self.session or _watched_session(watchdog)
        session.max_redirects = 3
        timer = threading.Timer(self.total_timeout, watchdog.expire)
        timer.daemon = True
        timer.start()
        try:
            result = self._get(session, url, headers, etag, last_modified, deadline)
        except MoicaAuthError as exc:
            if watchdog.expired:
                raise RevocationUnavailable("CRL download took too long", url=url) from exc
            raise
        finally:
            timer.cancel()
            if self.session is None:
                session.close()
        if watchdog.expired:
            # A shut-down socket reads as end of file: what "arrived" may be cut short
            # anywhere (even mid-header, which http.client then takes as complete).
            raise RevocationUnavailable("CRL download took too long", url=url)
        return result

    def _get(
        self,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        etag: str | None,
        last_modified: str | None,
        deadline: float,
    ) -> FetchResult:
        try:
            with session.get(
                url,
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
                stream=True,
            ) as response:
                if response.status_code == 304:
                    if not (etag or last_modified):
                        # 304 answers a conditional GET only; without validators it
                        # carries no CRL and must not pass for "unchanged".
                        raise RevocationUnavailable(
                            "CRL download answered 304 to an unconditional request", url=url
                        )
                    return FetchResult(
                        url=url, status="not_modified", etag=etag, last_modified=last_modified
                    )
                if response.status_code != 200:
                    raise RevocationUnavailable(
                        f"CRL download answered HTTP {response.status_code}", url=url
                    )
                declared = response.headers.get("Content-Length")
                expected = int(declared) if declared and declared.isdigit() else None
                encoded = response.headers.get("Content-Encoding", "identity") != "identity"
                if expected is not None and expected > self.max_bytes:
                    raise CrlInvalid("CRL larger than the configured limit", url=url)
                chunks: list[bytes] = []
                received = 0
                while True:
                    # read1: return after one socket read, so the deadline is checked
                    # at least every read_timeout even against a server that drips a
                    # byte at a time (read(n) would block until n bytes arrived). With
                    # a content coding (sent although we asked for identity) urllib3
                    # decompresses at most 64 KiB per call, and the limit counts
                    # decompressed bytes: a gzip bomb is cut off like an endless body.
                    chunk = response.raw.read1(64 * 1024, decode_content=True)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise CrlInvalid("CRL larger than the configured limit", url=url)
                    if time.monotonic() > deadline:
                        raise RevocationUnavailable("CRL download took too long", url=url)
                    chunks.append(chunk)
                # With a content coding the length counts encoded bytes; urllib3 then
                # still refuses a short body (IncompleteRead below).
                if expected is not None and not encoded and received != expected:
                    raise CrlInvalid("CRL download truncated", url=url)
                return FetchResult(
                    url=url,
                    status="ok",
                    content=b"".join(chunks),
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
        except (
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.IncompleteRead,
        ) as exc:
            # A body cut short of its Content-Length (or of its last chunk).
            raise CrlInvalid("CRL download truncated", url=url) from exc
        except urllib3.exceptions.ProtocolError as exc:
            # urllib3 wraps a short body as ProtocolError("Connection broken", IncompleteRead).
            if any(isinstance(arg, urllib3.exceptions.IncompleteRead) for arg in exc.args):
                raise CrlInvalid("CRL download truncated", url=url) from exc
            raise RevocationUnavailable(
                f"CRL download failed: {type(exc).__name__}", url=url
            ) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise CrlInvalid("CRL download could not be decoded", url=url) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise RevocationUnavailable(
                f"CRL download failed: {type(exc).__name__}", url=url
            ) from exc
