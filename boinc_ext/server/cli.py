"""`boinc-ext server`: serve the project to BOINC clients (the embedded server)."""
from __future__ import annotations

from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig, find_project_dir


def add_commands(commands) -> None:
    server = commands.add_parser("server", help="serve the project to BOINC clients (embedded server)")
    server.add_argument("dir", type=Path, nargs="?", help="project dir (default: $BOINC_PROJECT_DIR, . or ..)")
    server.add_argument("--threads", type=int, default=8, help="request threads (default 8)")
    server.add_argument("--port", type=int, help="listen on this port instead of the master URL's")
    server.set_defaults(handler=_cmd_server, command="server")


def _cmd_server(args) -> int:
    from boinc_ext.server.serve import serve
    return serve(ProjectConfig.load(find_project_dir(args.dir)), threads=args.threads, port=args.port)
