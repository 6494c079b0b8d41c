"""Confining R with bubblewrap: no network, nothing writable but our state dir in the slot.

The whole file system is visible read-only, except the BOINC data directory, which is
hidden (it holds account files, authenticators and other tasks) apart from the task's own
inputs and state dir. Without a working `bwrap`, R runs unconfined and the log says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .slot_layout import SlotLayout

BWRAP_ENV = "R_JOB_BWRAP"  # path of bwrap to use; empty means "do not confine"
SELF_TEST_TIMEOUT = 20.0


@dataclass(frozen=True)
class Confinement:
    prefix: tuple[str, ...]  # prepended to R's command line; empty when unconfined
    reason: str  # why R is unconfined (empty when confined)

    @property
    def confined(self) -> bool:
        return bool(self.prefix)

    def wrap(self, command: list[str]) -> list[str]:
        return [*self.prefix, *command]


def choose_confinement(layout: SlotLayout, inputs: dict[str, Path], boinc_dir: str,
                       rscript: str) -> Confinement:
    bwrap = find_bwrap()
    if not bwrap:
        return Confinement((), "bubblewrap (bwrap) is not installed")
    prefix = bwrap_arguments(bwrap, layout, inputs, hidden_boinc_dir(boinc_dir, layout.slot, rscript))
    problem = self_test(prefix)
    if problem:
        return Confinement((), f"bubblewrap does not work here: {problem}")
    return Confinement(tuple(prefix), "")


def find_bwrap() -> str | None:
    configured = os.environ.get(BWRAP_ENV)
    if configured is not None:
        return configured or None
    return shutil.which("bwrap")


def hidden_boinc_dir(boinc_dir: str, slot: Path, rscript: str) -> Path | None:
    """The BOINC data dir to hide from R: it must hold the slot and not hold R itself."""
    candidate = Path(os.path.realpath(boinc_dir)) if boinc_dir else None
    if candidate is None and slot.parent.name == "slots":
        candidate = slot.parent.parent
    if candidate is None or len(candidate.parts) < 3 or candidate not in slot.parents:
        return None
    if candidate in Path(os.path.realpath(rscript)).parents:
        return None
    return candidate


def bwrap_arguments(bwrap: str, layout: SlotLayout, inputs: dict[str, Path],
                    hidden: Path | None) -> list[str]:
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if hidden:
        args += ["--tmpfs", str(hidden)]
    for target in sorted({str(p) for p in inputs.values()}):
        args += ["--ro-bind", target, target]
    args += ["--bind", str(layout.state_dir), str(layout.state_dir)]
    if hidden:
        args += ["--remount-ro", str(hidden)]
    args += ["--unshare-net", "--unshare-ipc", "--die-with-parent", "--chdir", str(layout.work_dir)]
    return args


def self_test(prefix: list[str]) -> str | None:
    """Runs `true` in exactly the sandbox R would get; a description of the failure, or None."""
    try:
        completed = subprocess.run([*prefix, "true"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   timeout=SELF_TEST_TIMEOUT, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()
        return f"exit status {completed.returncode}" + (f": {detail}" if detail else "")
    return None
