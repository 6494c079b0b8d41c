"""Which daemons of ours a project runs, and the launcher scripts that let config.xml start them.

Each daemon gets a small script in the project's `bin/` (named like BOINC's own programs
are) so that a `<daemon><cmd>NAME ARGS</cmd></daemon>` entry works both with
`boinc-ext start` and with stock BOINC's `bin/start`, which puts `bin/` on PATH.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.config import DaemonEntry


@dataclass(frozen=True)
class DaemonKind:
    program: str           # the launcher's name in bin/
    module: str            # run as `python -m module`
    args: str = "-d 2"     # default arguments in config.xml
    stock_has_own: bool = False  # a stock BOINC server already runs its own equivalent
    per_app: bool = False        # one entry per app of apps/registry.py ({app} and {policy} in args)


# Each pipeline daemon polls four times a second when idle: its queries are single index
# lookups (about 0.2 % of a CPU each, idle), and a job's turnaround passes through five of
# their passes (work generator, transitioner, transitioner, validator, assimilator). At 1 s
# they added about 4 s to a trivial job, at 0.25 s about 1.3 s (bench/turnaround.py).
_FAST = "-d 2 --sleep_interval 0.25"

DAEMON_KINDS: tuple[DaemonKind, ...] = (
    DaemonKind("ext_server", "boinc_ext.server", stock_has_own=True),   # scheduler, uploads, downloads
    DaemonKind("ext_work_generator", "boinc_ext.jobs.work_generator", args=_FAST),
    DaemonKind("ext_transitioner", "boinc_ext.transitioner", args=_FAST, stock_has_own=True),
    DaemonKind("ext_validator", "boinc_ext.validator", args=f"--app {{app}} --policy {{policy}} {_FAST}",
               per_app=True),
    DaemonKind("ext_assimilator", "boinc_ext.assimilator", args=f"--app {{app}} {_FAST}", per_app=True),
    DaemonKind("ext_file_deleter", "boinc_ext.daemons.file_deleter", stock_has_own=True),
)


def launcher_text(kind: DaemonKind, python: str = sys.executable) -> str:
    """Runs the daemon by its program name (daemons/launch.py), so that launchers keep
    working when code moves; `project create --existing` rewrites older launchers."""
    return f"#!/bin/sh\nexec {shlex.quote(python)} -m boinc_ext.daemons.launch {kind.program} \"$@\"\n"


def install_launchers(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for kind in DAEMON_KINDS:
        path = bin_dir / kind.program
        path.write_text(launcher_text(kind))
        os.chmod(path, 0o755)


def default_entries(existing_stock_server: bool) -> list[DaemonEntry]:
    """The <daemon> entries for a new project (or for one added to a stock server)."""
    from boinc_ext.apps.registry import APPS   # the apps import the wrapper build: not at daemon start
    entries = []
    for kind in DAEMON_KINDS:
        if existing_stock_server and kind.stock_has_own:
            continue
        if kind.per_app:
            entries += [DaemonEntry(cmd=f"{kind.program} {kind.args}".format(app=app.name,
                                                                             policy=app.validation_policy))
                        for app in APPS.values()]
        else:
            entries.append(DaemonEntry(cmd=f"{kind.program} {kind.args}".strip()))
    return entries
