"""Starting, stopping and listing the daemons of config.xml, as BOINC's bin/start, bin/stop
and bin/status do, for the daemons assigned to this host.

Daemons run with cwd `tmp_<host>/`, the project's `bin/` first on PATH, output appended to
`log_<host>/<name>.log` and their pid in `pid_<host>/<name>.pid`. A pid is signalled only
if that process is alive and its command line names the daemon, so a recycled pid is never hit.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.config import DaemonEntry, ProjectConfig
from boinc_ext.daemons.registry import DAEMON_KINDS

STARTED, ALREADY_RUNNING, DISABLED, FAILED = "started", "already running", "disabled", "failed"
STOPPED, NOT_RUNNING, STILL_RUNNING = "stopped", "not running", "still running"
RUNNING = "running"

_FORCE_DELAY = 0.5  # lets the first signal's handler run, so the second one is seen as a second


@dataclass(frozen=True)
class StartResult:
    name: str
    cmd: str
    state: str            # STARTED, ALREADY_RUNNING, DISABLED or FAILED
    pid: int | None = None
    message: str = ""


@dataclass(frozen=True)
class StopResult:
    name: str
    state: str            # STOPPED, NOT_RUNNING or STILL_RUNNING
    pid: int | None = None
    message: str = ""


@dataclass(frozen=True)
class DaemonStatus:
    name: str
    cmd: str
    state: str            # RUNNING, NOT_RUNNING or DISABLED
    pid: int | None = None


def start_daemons(config: ProjectConfig) -> list[StartResult]:
    """Removes stop_daemons and starts every enabled daemon of this host not already running."""
    config.stop_daemons_path.unlink(missing_ok=True)
    for directory in (config.log_dir, config.pid_dir, config.tmp_dir):
        directory.mkdir(parents=True, exist_ok=True)
    results = []
    for entry in config.daemons_for_this_host():
        if entry.disabled:
            results.append(StartResult(entry.program, entry.cmd, DISABLED))
            continue
        pid = running_pid(config, entry)
        if pid is not None:
            results.append(StartResult(entry.program, entry.cmd, ALREADY_RUNNING, pid))
            continue
        results.append(_start(config, entry))
    return results


def stop_daemons(config: ProjectConfig, timeout: float = 30.0, force: bool = False) -> list[StopResult]:
    """Writes stop_daemons, signals every running daemon of this host (twice if `force`, which
    aborts the current item), waits up to `timeout` s and reports those still running."""
    config.stop_daemons_path.write_text("<stop/>\n")
    entries = config.daemons_for_this_host()
    signalled: dict[int, int] = {}  # entry index -> pid
    for index, entry in enumerate(entries):
        pid = running_pid(config, entry)
        if pid is not None and _signal(pid, signal.SIGTERM):
            signalled[index] = pid
    if force and signalled:
        _wait_for_exit(signalled.values(), _FORCE_DELAY)
        for index, pid in signalled.items():
            if running_pid(config, entries[index]) == pid:
                _signal(pid, signal.SIGTERM)
    _wait_for_exit(signalled.values(), timeout)
    results = []
    for index, entry in enumerate(entries):
        pid = signalled.get(index)
        if pid is not None and _is_alive(pid):
            results.append(StopResult(entry.program, STILL_RUNNING, pid,
                                      f"pid {pid} did not exit within {timeout:g} s"))
            continue
        _pid_path(config, entry).unlink(missing_ok=True)
        results.append(StopResult(entry.program, NOT_RUNNING if pid is None else STOPPED, pid))
    return results


def daemon_status(config: ProjectConfig) -> list[DaemonStatus]:
    statuses = []
    for entry in config.daemons_for_this_host():
        pid = running_pid(config, entry)
        if pid is not None:
            state = RUNNING
        else:
            state = DISABLED if entry.disabled else NOT_RUNNING
        statuses.append(DaemonStatus(entry.program, entry.cmd, state, pid))
    return statuses


def running_pid(config: ProjectConfig, entry: DaemonEntry) -> int | None:
    """The pid of the pid file if that process is alive and is this daemon, else None."""
    try:
        pid = int(_pid_path(config, entry).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 0 or not _is_alive(pid):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if _names_daemon(argv, entry) else None


def _names_daemon(argv: list[bytes], entry: DaemonEntry) -> bool:
    # Our launchers exec `python -m MODULE`, so their processes carry the module, not the program.
    markers = {entry.program} | {kind.module for kind in DAEMON_KINDS if kind.program == entry.program}
    return any(os.path.basename(arg.decode(errors="replace")) in markers for arg in argv)


def _pid_path(config: ProjectConfig, entry: DaemonEntry) -> Path:
    return config.pid_dir / entry.pid_name


def _start(config: ProjectConfig, entry: DaemonEntry) -> StartResult:
    try:
        argv = shlex.split(entry.cmd)
    except ValueError as exc:
        return StartResult(entry.program, entry.cmd, FAILED, message=f"bad <cmd>: {exc}")
    search_path = os.pathsep.join([str(config.project_dir / "bin"), os.environ.get("PATH", os.defpath)])
    program = shutil.which(argv[0], path=search_path)
    if program is None:
        return StartResult(entry.program, entry.cmd, FAILED,
                           message=f"{argv[0]}: not found in {config.project_dir / 'bin'} or PATH")
    env = dict(os.environ, PATH=search_path, BOINC_PROJECT_DIR=str(config.project_dir))
    try:
        with open(config.log_dir / entry.log_name, "ab") as log, open(os.devnull, "rb") as devnull:
            process = subprocess.Popen([program, *argv[1:]], cwd=config.tmp_dir, env=env, stdin=devnull,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return StartResult(entry.program, entry.cmd, FAILED, message=f"{program}: {exc.strerror}")
    _pid_path(config, entry).write_text(f"{process.pid}\n")
    return StartResult(entry.program, entry.cmd, STARTED, process.pid)


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _is_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait_for_exit(pids, timeout: float) -> None:
    """Waits until the (verified) daemons exit, reaping those that are our own children."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not any(_is_alive(pid) for pid in pids) or time.monotonic() >= deadline:
            return
        time.sleep(0.1)
