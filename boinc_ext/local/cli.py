"""`boinc-ext db start|stop|status` and `boinc-ext demo`: the single-machine harness."""
from __future__ import annotations

from pathlib import Path


def add_commands(commands) -> None:
    _add_db_commands(commands)
    demo = commands.add_parser("demo", help="the main job: a local BOINC project running real jobs")
    demo.add_argument("--dir", type=Path, default=Path("demo-run"), help="where the demo lives")
    demo.set_defaults(handler=_cmd_demo, command="demo")


def _add_db_commands(commands) -> None:
    db = commands.add_parser("db", help="a private MariaDB server").add_subparsers(dest="db_command",
                                                                                   required=True)
    for name, handler, text in (("start", _cmd_db_start, "initialise (first time) and start"),
                                ("stop", _cmd_db_stop, "stop cleanly"),
                                ("status", _cmd_db_status, "say whether it runs")):
        sub = db.add_parser(name, help=text)
        sub.add_argument("--dir", type=Path, required=True, help="the server's own directory")
        sub.set_defaults(handler=handler, command=f"db {name}")


def _cmd_db_start(args) -> int:
    from boinc_ext.local.mariadb import MariaDBServer
    server = MariaDBServer(args.dir)
    server.init()
    state = server.start()
    settings = server.settings()
    print(f"MariaDB running: socket {state.socket}, 127.0.0.1:{state.port}")
    print(f"use: --db-host {settings.db_host} --db-user {settings.user} --db-passwd {settings.passwd}"
          f"  (or --db-dir {server.base_dir})")
    return 0


def _cmd_db_stop(args) -> int:
    from boinc_ext.local.mariadb import MariaDBServer
    print("stopped" if MariaDBServer(args.dir).stop() else "not running")
    return 0


def _cmd_db_status(args) -> int:
    from boinc_ext.local.mariadb import MariaDBServer
    pid = MariaDBServer(args.dir).running_pid()
    print(f"running (pid {pid})" if pid else "not running")
    return 0 if pid else 3


def _cmd_demo(args) -> int:
    from boinc_ext.local.demo import run_demo
    return run_demo(args.dir)
