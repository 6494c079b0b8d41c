"""`boinc-ext server DIR` / `python -m boinc_ext.server`: the embedded server under waitress.

It listens on the host and port of the project's master URL. Like the daemons, it stops on
SIGTERM/SIGINT/SIGHUP or when the project's stop_daemons file appears, so `boinc-ext
stop` (or stock bin/stop) stops it with the rest; scheduler requests held for work on its
way then reply at once.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from urllib.parse import urlsplit

from waitress import create_server

from boinc_ext.boinc.config import ConfigError, ProjectConfig, find_project_dir
from boinc_ext.daemons.base import EVENT_STARTED, EVENT_STOPPED, configure_logging
from boinc_ext.server.app import create_app
from boinc_ext.server.scheduler.handler import WORK_HOLD_EXTENSION

log = logging.getLogger("boinc_ext.server")

EVENT_SERVING = "server listening"
DEFAULT_THREADS = 8
THREADS_NOT_HELD = 2    # waitress threads a work hold never takes: uploads and other RPCs go on


def listen_address(config: ProjectConfig) -> tuple[str, int]:
    parts = urlsplit(config.master_url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def serve(config: ProjectConfig, threads: int = DEFAULT_THREADS, port: int | None = None) -> int:
    host, url_port = listen_address(config)
    app = create_app(config)
    work_hold = app.extensions[WORK_HOLD_EXTENSION]
    work_hold.max_held = max(threads - THREADS_NOT_HELD, 0)
    server = create_server(app, host=host, port=port or url_port, threads=threads,
                           connection_limit=1000, channel_timeout=120, ident="boinc-ext")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    log.info("%s (pid %d, project %s)", EVENT_STARTED, os.getpid(), config.project_dir)
    log.info("%s on http://%s:%d/", EVENT_SERVING, host, port or url_port)
    try:
        while not stop.wait(1.0):
            if config.stop_daemons_path.exists():
                log.info("stop_daemons file present: stopping")
                break
    finally:
        work_hold.stop()
        server.close()
        server.task_dispatcher.shutdown()
        app.extensions["boinc_ext.databases"].close_all()
        log.info("%s (exit 0)", EVENT_STOPPED)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ext_server", description=__doc__.splitlines()[0])
    parser.add_argument("--project_dir", "--project-dir", help="the project (default: BOINC's lookup)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--port", type=int, help="listen here instead of the master URL's port")
    parser.add_argument("-d", type=int, default=2, choices=(1, 2, 3, 4), dest="debug_level")
    args = parser.parse_args(argv)
    configure_logging("ext_server", args.debug_level)
    try:
        config = ProjectConfig.load(find_project_dir(args.project_dir))
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    return serve(config, threads=args.threads, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
