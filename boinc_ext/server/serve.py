"""`boinc-ext server DIR` / `python -m boinc_ext.server`: the embedded server under waitress.

It listens on the host and port of the project's master URL. It stops as the daemons do
(daemons.base.StopControl): on the first SIGTERM/SIGINT/SIGHUP, or when the project's
stop_daemons file appears (so `boinc-ext stop` or stock bin/stop stops it with the rest),
it stops accepting, scheduler requests held for work on its way reply at once, the
requests in flight finish, and it exits 0; a second signal ends it at once with 128 + the
signal number.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from urllib.parse import urlsplit

from waitress import create_server

from boinc_ext.boinc.config import ConfigError, ProjectConfig, find_project_dir
from boinc_ext.daemons.base import EVENT_ABORTED, EVENT_FAILED, EVENT_STARTED, EVENT_STOPPED, EXIT_OK, configure_logging
from boinc_ext.daemons.options import positive_int
from boinc_ext.daemons.stopping import DaemonAborted, StopControl
from boinc_ext.server.app import create_app
from boinc_ext.server.scheduler.handler import WORK_HOLD_EXTENSION

log = logging.getLogger("boinc_ext.server")

EVENT_SERVING = "server listening"
DEFAULT_THREADS = 8
THREADS_NOT_HELD = 2    # waitress threads a work hold never takes: uploads and other RPCs go on
DRAIN_TIMEOUT = 120.0   # seconds in-flight requests get to finish after a first stop (waitress's channel_timeout)


def listen_address(config: ProjectConfig) -> tuple[str, int]:
    parts = urlsplit(config.master_url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def serve(config: ProjectConfig, threads: int = DEFAULT_THREADS, port: int | None = None, app=None) -> int:
    """Serves until stopped; the exit code. The first stop (signal or stop_daemons) stops
    accepting, releases held scheduler requests and lets in-flight requests finish (exit 0);
    a second signal leaves at once (exit 128 + its number)."""
    host, url_port = listen_address(config)
    app = app or create_app(config)
    work_hold = app.extensions[WORK_HOLD_EXTENSION]
    work_hold.max_held = max(threads - THREADS_NOT_HELD, 0)  # computed, not an option
    server = create_server(app, host=host, port=port or url_port, threads=threads,
                           connection_limit=1000, channel_timeout=120, ident="boinc-ext")
    stop = StopControl(config.stop_daemons_path, log)
    stop.install()
    code = EXIT_OK
    try:
        threading.Thread(target=server.run, name="waitress", daemon=True).start()
        log.info("%s (pid %d, project %s)", EVENT_STARTED, os.getpid(), config.project_dir)
        log.info("%s on http://%s:%d/", EVENT_SERVING, host, port or url_port)
        while not stop.should_stop():
            stop.sleep(3600)
        _finish(server, work_hold)
    except DaemonAborted as exc:
        log.error("%s: %s; in-flight requests dropped", EVENT_ABORTED, exc)
        code = 128 + exc.signum
    finally:
        stop.restore()
        app.extensions["boinc_ext.databases"].close_all()
        log.info("%s (exit %d)", EVENT_STOPPED, code)
    return code


def _finish(server, work_hold) -> None:
    """Stops accepting, wakes held requests and waits for the in-flight ones to be answered."""
    server.accepting = False
    server.del_channel()
    server.socket.close()
    work_hold.stop()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while _busy_channels(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.task_dispatcher.shutdown(timeout=1)


def _busy_channels(server) -> int:
    """Connections with a request being handled or a reply not yet written."""
    for _ in range(3):  # the waitress thread may change the map meanwhile
        try:
            channels = list(server._map.values())
            break
        except RuntimeError:
            continue
    else:
        return 1
    return sum(1 for c in channels if getattr(c, "requests", None) or getattr(c, "total_outbufs_len", 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ext_server", description=__doc__.splitlines()[0])
    parser.add_argument("--project_dir", "--project-dir", help="the project (default: BOINC's lookup)")
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS)
    parser.add_argument("--port", type=positive_int, help="listen here instead of the master URL's port")
    parser.add_argument("-d", type=int, default=2, choices=(1, 2, 3, 4), dest="debug_level")
    args = parser.parse_args(argv)
    configure_logging("ext_server", args.debug_level)
    try:
        config = ProjectConfig.load(find_project_dir(args.project_dir))
        return serve(config, threads=args.threads, port=args.port)
    except ConfigError as exc:  # config.xml, or an option the app reads at start
        log.error("%s: %s", EVENT_FAILED, exc)
        return 1
    except DaemonAborted as exc:  # a second signal while closing down
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
