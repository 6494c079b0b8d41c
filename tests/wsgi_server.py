"""Serving a WSGI app with waitress on 127.0.0.1 in a background thread, for tests that
need a real HTTP server (a real BOINC client, real sockets, ranges through waitress)."""
from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import waitress
from waitress import wasyncore

STOP_TIMEOUT = 10.0


def bound_loopback_socket(port: int = 0) -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 (port 0: a free one), so that a URL with
    its port can be written before the server starts, with no race for the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextlib.contextmanager
def serving(app, sock: socket.socket | None = None, threads: int = 4) -> Iterator[str]:
    """Serves `app` until the block ends; yields the base URL `http://127.0.0.1:PORT`."""
    sock = sock or bound_loopback_socket()
    server = waitress.create_server(app, sockets=[sock], threads=threads, clear_untrusted_proxy_headers=True)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        # Close the listener and every open (keep-alive) connection from inside the loop's
        # own thread; run() returns once nothing is left to watch.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(STOP_TIMEOUT)
        server.task_dispatcher.shutdown()
        if thread.is_alive():
            raise RuntimeError("the waitress server did not stop")
