"""A real BOINC client (Debian's `boinc`) run locally as a volunteer, for the demo and tests.

Each client lives in its own directory with its own GUI RPC port and password, talks only
to 127.0.0.1 (no info fetch, no reference-site checks), and is driven with `boinccmd`.
Only the process this object started is ever signalled.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .xmlutil import escape_text

BOINC = "boinc"
BOINCCMD = "boinccmd"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class VolunteerError(RuntimeError):
    """The client could not be started or did not do what was asked."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boinc_available() -> str | None:
    """None if a BOINC client can run here, else why not."""
    for program in (BOINC, BOINCCMD):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian package boinc-client)"
    return None


@dataclass
class Task:
    name: str
    state: str
    active_state: str
    fraction_done: float


class Volunteer:
    def __init__(self, directory: Path, port: int | None = None, network_test_url: str = "http://127.0.0.1/"):
        self.directory = Path(directory).resolve()
        self.port = port or free_port()
        self.password = secrets.token_hex(8)
        self.network_test_url = network_test_url
        self.process: subprocess.Popen | None = None

    # --- life cycle -----------------------------------------------------------------------
    def start(self, extra_options: str = "") -> "Volunteer":
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "gui_rpc_auth.cfg").write_text(self.password + "\n")
        (self.directory / "cc_config.xml").write_text(
            "<cc_config>\n<options>\n<no_info_fetch>1</no_info_fetch>\n"
            "<dont_contact_ref_site>1</dont_contact_ref_site>\n"
            f"<network_test_url>{escape_text(self.network_test_url)}</network_test_url>\n"
            f"{extra_options}</options>\n</cc_config>\n")
        self.process = subprocess.Popen(
            [BOINC, "--dir", str(self.directory), "--allow_multiple_clients", "--gui_rpc_port", str(self.port),
             "--redirectio"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self._wait_for_gui_rpc()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the client stops its tasks), SIGKILL after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the client and its running tasks, as a volunteer that vanishes."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "Volunteer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- GUI RPCs through boinccmd --------------------------------------------------------
    def boinccmd(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        completed = subprocess.run([BOINCCMD, "--host", f"127.0.0.1:{self.port}", "--passwd", self.password,
                                    *args], capture_output=True, text=True, timeout=timeout)
        if check and completed.returncode != 0:
            raise VolunteerError(f"boinccmd {' '.join(args)}: exit {completed.returncode}: "
                                 f"{completed.stdout.strip()} {completed.stderr.strip()}")
        return completed.stdout

    def create_account(self, url: str, email: str, password: str, name: str) -> str:
        """The project's create_account web RPC, made by the client; returns the authenticator."""
        return self._account_key(self.boinccmd("--create_account", url, email, password, name))

    def lookup_account(self, url: str, email: str, password: str) -> str:
        return self._account_key(self.boinccmd("--lookup_account", url, email, password))

    def attach(self, url: str, authenticator: str) -> None:
        self.boinccmd("--project_attach", url, authenticator)

    def tasks(self) -> list[Task]:
        out = self.boinccmd("--get_tasks", check=False)
        tasks, current = [], {}
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("name:"):
                if current:
                    tasks.append(_task(current))
                current = {"name": line.split(":", 1)[1].strip()}
            elif ":" in line and current:
                key, value = line.split(":", 1)
                current[key.strip()] = value.strip()
        if current:
            tasks.append(_task(current))
        return tasks

    def log_text(self) -> str:
        try:
            return (self.directory / "stdoutdae.txt").read_text(errors="replace")
        except OSError:
            return ""

    def _account_key(self, output: str) -> str:
        for line in output.splitlines():
            if "account key:" in line:
                return line.split(":", 1)[1].strip()
        raise VolunteerError(f"no account key in boinccmd's answer: {output.strip()!r}")

    def _wait_for_gui_rpc(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VolunteerError(f"boinc exited with {self.process.returncode} at start; "
                                     f"log: {self.log_text()[-2000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if subprocess.run([BOINCCMD, "--host", f"127.0.0.1:{self.port}", "--passwd", self.password,
                                   "--get_state"], capture_output=True, timeout=10).returncode == 0:
                    return
            time.sleep(0.2)
        self.stop()
        raise VolunteerError(f"boinc did not answer GUI RPCs on port {self.port} within {START_TIMEOUT:g} s")


def _task(fields: dict) -> Task:
    try:
        fraction = float(fields.get("fraction done", "0") or 0)
    except ValueError:
        fraction = 0.0
    return Task(name=fields["name"], state=fields.get("state", ""), active_state=fields.get("active_task_state", ""),
                fraction_done=fraction)
