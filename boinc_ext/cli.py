"""`boinc-ext`: the one command-line entry point, with a subcommand per job.

Entry points stay thin: parse flags, build a validated config, call the library.
"""
from __future__ import annotations

import argparse
import logging
import sys

from boinc_ext.boinc.config import ConfigError
from boinc_ext.boinc.db import DbError
from boinc_ext.boinc.xmlutil import XmlError
from boinc_ext.cli_errors import CliError
from boinc_ext.daemons import cli as daemon_commands
from boinc_ext.jobs import cli as job_commands
from boinc_ext.local import cli as local_commands
from boinc_ext.project import cli as project_commands
from boinc_ext.server import cli as server_commands

log = logging.getLogger("boinc_ext.cli")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except (CliError, ConfigError, DbError, XmlError, ValueError, FileExistsError, OSError) as exc:
        print(f"boinc-ext {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boinc-ext", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for room in (local_commands, project_commands, daemon_commands, job_commands, server_commands):
        room.add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
