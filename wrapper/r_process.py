"""Rscript as a child process: its own process group, a status pipe, and never an orphan.

R runs in a new session (so it is a process group we can stop, continue and kill as one,
and has no controlling terminal). It dies with the wrapper: `with RProcess(...)` kills the
group on every way out, the child asks the kernel for SIGKILL when its parent dies, and
bubblewrap adds --die-with-parent.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READ_CHUNK = 65536


@dataclass(frozen=True)
class DriverMessage:
    """One line the R driver wrote on the status pipe: a kind and its fields."""
    kind: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, line: str) -> "DriverMessage":
        kind, _, rest = line.strip().partition(" ")
        return cls(kind, tuple(rest.split()))


class RProcess:
    """A running R driver. Use as a context manager; leaving it kills the whole group."""

    def __init__(self, command_for_status_fd: Callable[[int], list[str]], *, cwd: str,
                 env: dict[str, str]):
        read_fd, write_fd = os.pipe()
        try:
            self._popen = subprocess.Popen(
                command_for_status_fd(write_fd), cwd=cwd, env=env, pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL, stdout=2, start_new_session=True,
                preexec_fn=_die_with_parent_hook())
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._status_fd = read_fd
        os.set_blocking(read_fd, False)
        self._buffer = b""
        self._cpu_seconds = 0.0

    @property
    def pid(self) -> int:
        return self._popen.pid

    def __enter__(self) -> "RProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()

    def poll(self) -> int | None:
        return self._popen.poll()

    def messages(self, timeout: float) -> list[DriverMessage]:
        """Waits up to `timeout` seconds for the driver to write, returns its complete lines."""
        if self._status_fd < 0:
            return []
        ready, _, _ = select.select([self._status_fd], [], [], timeout)
        if ready:
            self._read_available()
        *lines, self._buffer = self._buffer.split(b"\n")
        return [DriverMessage.parse(line.decode("utf-8", "replace")) for line in lines if line.strip()]

    def _read_available(self) -> None:
        while True:
            try:
                chunk = os.read(self._status_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:  # every writer has gone
                os.close(self._status_fd)
                self._status_fd = -1
                return
            self._buffer += chunk

    def suspend(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """Kills every process of R's group and reaps R; safe to call more than once."""
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1

    def cpu_seconds(self) -> float:
        """CPU time used so far by R's process group (never decreasing)."""
        self._cpu_seconds = max(self._cpu_seconds, process_group_cpu_seconds(self._popen.pid))
        return self._cpu_seconds

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._popen.pid, signum)
        except ProcessLookupError:
            pass


def killed_by(returncode: int, confined: bool) -> int | None:
    """The signal that ended R, if one did (bubblewrap reports it as 128 + the signal)."""
    if returncode < 0:
        return -returncode
    if confined and 128 < returncode < 128 + signal.NSIG:
        return returncode - 128
    return None


def process_group_cpu_seconds(pgid: int) -> float:
    """User + system time of a group's processes and of the children they have reaped."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[2]) == pgid:
            ticks += sum(int(field) for field in fields[11:15])
    return ticks / _CLOCK_TICKS


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGKILL the child when the wrapper dies."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return hook
