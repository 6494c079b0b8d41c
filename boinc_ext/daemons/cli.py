"""`boinc-ext start|stop|status` (as BOINC's bin/start, bin/stop, bin/status)."""
from __future__ import annotations

from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig, find_project_dir


def add_commands(commands) -> None:
    _add_daemon_commands(commands)


def _add_daemon_commands(commands) -> None:
    for name, handler, text in (("start", _cmd_start, "start the daemons of config.xml"),
                                ("stop", _cmd_stop, "stop them (stop_daemons + SIGTERM)"),
                                ("status", _cmd_status, "show which run")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("dir", type=Path, nargs="?", help="project dir (default: $BOINC_PROJECT_DIR, . or ..)")
        if name == "stop":
            sub.add_argument("--timeout", type=float, default=30.0)
            sub.add_argument("--force", action="store_true", help="abort the current item too")
        sub.set_defaults(handler=handler, command=name)


def _project(args) -> ProjectConfig:
    return ProjectConfig.load(find_project_dir(args.dir))


def _print_daemon_line(name: str, state: str, pid: int | None, message: str = "") -> None:
    pid_text = f"pid {pid}" if pid else ""
    print(f"{name:24} {state:15} {pid_text:10} {message}".rstrip())


def _cmd_start(args) -> int:
    from boinc_ext.daemons.control import FAILED, start_daemons
    results = start_daemons(_project(args))
    for r in results:
        _print_daemon_line(r.name, r.state, r.pid, r.message)
    return 1 if any(r.state == FAILED for r in results) else 0


def _cmd_stop(args) -> int:
    from boinc_ext.daemons.control import STILL_RUNNING, stop_daemons
    results = stop_daemons(_project(args), timeout=args.timeout, force=args.force)
    for r in results:
        _print_daemon_line(r.name, r.state, r.pid, r.message)
    return 1 if any(r.state == STILL_RUNNING for r in results) else 0


def _cmd_status(args) -> int:
    from boinc_ext.daemons.control import daemon_status
    for status in daemon_status(_project(args)):
        _print_daemon_line(status.name, status.state, status.pid)
    return 0
