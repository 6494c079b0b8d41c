"""`python -m boinc_ext.daemons.launch PROGRAM [FLAGS]`: what the launchers in a project's bin/ run.

A launcher names its daemon (`ext_transitioner`), not the module that implements it, so
moving code between modules never breaks launchers already installed in projects.
"""
from __future__ import annotations

import runpy
import sys

from boinc_ext.daemons.registry import DAEMON_KINDS


def main(argv: list[str]) -> int:
    kinds = {kind.program: kind for kind in DAEMON_KINDS}
    if not argv or argv[0] not in kinds:
        print(f"usage: python -m boinc_ext.daemons.launch PROGRAM [FLAGS]; PROGRAM is one of "
              f"{', '.join(sorted(kinds))}", file=sys.stderr)
        return 2
    sys.argv = list(argv)
    runpy.run_module(kinds[argv[0]].module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
