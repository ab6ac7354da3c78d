"""The threaded HTTP server lifecycle shared by the test doubles (TEST USE ONLY).

:class:`~moica_auth.testing.responders.ResponderServer`,
:class:`~moica_auth.testing.confirmation_server.ConfirmationServer` and
:class:`~moica_auth.testing.virtual_card.VirtualCardServer` each bind a
:class:`ServerWithDaemonThreads` (on 127.0.0.1 unless told otherwise; port 0 picks a free
port), serve it from a daemon thread with :func:`serve_in_thread`, stop it with
:func:`shut_down`, and are context managers through :class:`StartStopContext`; their
command-line ``main()`` keeps a started server up with :func:`serve_until_interrupted`.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Self

__all__ = [
    "ServerWithDaemonThreads",
    "StartStopContext",
    "serve_in_thread",
    "serve_until_interrupted",
    "shut_down",
]


class ServerWithDaemonThreads(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` whose per-request threads never keep the process alive."""

    daemon_threads = True


def serve_in_thread(
    httpd: ThreadingHTTPServer, *, name: str, poll_interval: float = 0.5
) -> threading.Thread:
    """Run ``httpd.serve_forever`` in a daemon thread called ``name``; returns it, started.

    ``poll_interval`` is how often ``serve_forever`` looks for a shutdown request: a short
    one keeps :func:`shut_down` quick (it waits for one poll).
    """
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


def shut_down(
    httpd: ThreadingHTTPServer, thread: threading.Thread | None, *, timeout: float | None = None
) -> None:
    """Stop ``httpd`` serving, close its socket, then wait (up to ``timeout`` seconds, or for
    as long as it takes) for ``thread``, the one serving it, to end."""
    httpd.shutdown()
    httpd.server_close()
    if thread is not None:
        thread.join(timeout=timeout)


class StartStopContext:
    """``with server:`` calls ``start()`` on entry (and yields what it returns) and
    ``stop()`` on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_until_interrupted(server: StartStopContext) -> None:
    """Block until Ctrl-C (KeyboardInterrupt), then stop the started ``server``."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
