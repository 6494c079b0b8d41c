"""A real BOINC client (Debian's `boinc`) run locally as a volunteer, for the demo and tests.

Each client lives in its own directory with its own GUI RPC port and password, talks only
to 127.0.0.1 (no info fetch, no reference-site contact, the network test URL is the
project's), and is driven with `boinccmd`. Only processes this object started are ever
signalled: the client, by PID, and the tasks it left in the session it leads.
"""
from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

BOINC = "boinc"
BOINCCMD = "boinccmd"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
BOINCCMD_TIMEOUT = 60.0
START_ATTEMPTS = 3
POLL_INTERVAL = 0.2
LOG_FILES = ("console.txt", "stdoutdae.txt", "stderrdae.txt")


class VolunteerError(RuntimeError):
    """The client did not start, answer or stop as expected; the message has its log."""


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


def project_dir_name(master_url: str) -> str:
    """The client's directory name for a project: the URL without its scheme, every character
    other than [A-Za-z0-9._-] turned into `_`, a trailing `_` dropped."""
    rest = re.sub(r"^[a-z]+://", "", master_url)
    return re.sub(r"[^A-Za-z0-9._-]", "_", rest).rstrip("_")


@dataclass
class Task:
    name: str
    state: str
    active_state: str
    fraction_done: float


class Volunteer:
    """One `boinc` process with its own data directory and GUI RPC port."""

    def __init__(self, directory: Path, port: int | None = None, *,
                 network_test_url: str = "http://127.0.0.1:9/",
                 cc_options: dict[str, str] | None = None, log_flags: dict[str, str] | None = None):
        self.directory = Path(directory).resolve()
        self.port = port
        self._port_given = port is not None
        self.network_test_url = network_test_url
        self.cc_options = dict(cc_options or {})
        self.log_flags = dict(log_flags or {})
        self.password = secrets.token_hex(12)
        self.process: subprocess.Popen | None = None

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> Volunteer:
        """Starts the client (again, after stop or kill: same directory, same port)."""
        if self.running:
            return self
        self._write_config()
        for attempt in range(START_ATTEMPTS):
            if not self._port_given and (attempt > 0 or self.port is None):
                self.port = free_port()
            self._launch()
            try:
                self._wait_until_answering()
                self._port_given = True     # a restart keeps the port it got
                return self
            except VolunteerError:
                log = self.log_text()
                self.stop()
                if self._port_given or attempt == START_ATTEMPTS - 1 or not _lost_port_race(log):
                    raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (the client asks its tasks to quit, then exits), SIGKILL after `timeout`;
        then any task it left running in its session. Returns the client's exit code."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill(process.pid, signal.SIGKILL)
                process.wait(timeout)
        _end_session(process.pid, timeout)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL to the client and its running tasks, as a volunteer that vanishes."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        for pid in [process.pid, *_session_members(process.pid)]:
            _kill(pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
        _end_session(process.pid, STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Volunteer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- GUI RPCs through boinccmd --------------------------------------------------------
    def boinccmd(self, *args: str, timeout: float = BOINCCMD_TIMEOUT, check: bool = True) -> str:
        """Runs `boinccmd --host 127.0.0.1:PORT --passwd PW ARGS...`; returns its stdout.
        Raises VolunteerError on a timeout (some commands poll forever on errors) or, with
        `check`, on a nonzero exit."""
        command = [BOINCCMD, "--host", f"127.0.0.1:{self.port}", "--passwd", self.password, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise VolunteerError(f"boinccmd {' '.join(args)}: no answer within {timeout:g} s; "
                                 f"output so far:\n{_text(exc.stdout)}{_text(exc.stderr)}\n"
                                 f"client log:\n{self.log_tail()}") from None
        if check and done.returncode != 0:
            raise VolunteerError(f"boinccmd {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}\nclient log:\n{self.log_tail()}")
        return done.stdout

    def create_account(self, url: str, email: str, password: str, name: str) -> str:
        """The project's create_account web RPC, made by the client; returns the authenticator."""
        return self._account_key(self.boinccmd("--create_account", url, email, password, name))

    def lookup_account(self, url: str, email: str, password: str) -> str:
        return self._account_key(self.boinccmd("--lookup_account", url, email, password))

    def attach(self, url: str, authenticator: str) -> None:
        self.boinccmd("--project_attach", url, authenticator)

    def tasks(self) -> list[Task]:
        tasks, current = [], {}
        for line in self.boinccmd("--get_tasks", check=False).splitlines():
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

    # --- its logs and files ---------------------------------------------------------------
    def log_text(self) -> str:
        """The client's own log (stdoutdae.txt), its stderr and early console output."""
        parts = []
        for name in LOG_FILES:
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        """Waits until the log matches the regular expression `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log_text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise VolunteerError(f"no {pattern!r} in the client log within {timeout:g} s:\n"
                                     f"{self.log_tail()}")
            if not self.running:
                raise VolunteerError(f"the client exited while waiting for {pattern!r}:\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL)

    def project_dir(self, master_url: str) -> Path:
        return self.directory / "projects" / project_dir_name(master_url)

    # --- internals ------------------------------------------------------------------------
    def _account_key(self, output: str) -> str:
        for line in output.splitlines():
            if "account key:" in line:
                return line.split(":", 1)[1].strip()
        raise VolunteerError(f"no account key in boinccmd's answer: {output.strip()!r}")

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "gui_rpc_auth.cfg").write_text(self.password + "\n")
        root = etree.Element("cc_config")
        options = etree.SubElement(root, "options")
        base_options = {"no_info_fetch": "1", "dont_contact_ref_site": "1",
                        "network_test_url": self.network_test_url}
        for name, value in {**base_options, **self.cc_options}.items():
            etree.SubElement(options, name).text = value
        if self.log_flags:
            flags = etree.SubElement(root, "log_flags")
            for name, value in self.log_flags.items():
                etree.SubElement(flags, name).text = value
        etree.indent(root)
        (self.directory / "cc_config.xml").write_bytes(etree.tostring(root) + b"\n")

    def _launch(self) -> None:
        command = [BOINC, "--dir", str(self.directory), "--allow_multiple_clients",
                   "--gui_rpc_port", str(self.port), "--redirectio"]
        with open(self.directory / "console.txt", "ab") as console:
            self.process = subprocess.Popen(command, cwd=self.directory, stdin=subprocess.DEVNULL,
                                            stdout=console, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        atexit.register(self.stop)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise VolunteerError(f"the client exited at start (code {self.process.returncode}):\n"
                                     f"{self.log_tail()}")
            if self._answers():
                return
            time.sleep(POLL_INTERVAL)
        raise VolunteerError(f"the client's GUI RPC port {self.port} did not answer within "
                             f"{START_TIMEOUT:g} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            self.boinccmd("--get_cc_status", timeout=10)
        except VolunteerError:
            return False
        return True


def _lost_port_race(log: str) -> bool:
    return "bind" in log.lower() or "address already in use" in log.lower()


def _task(fields: dict) -> Task:
    try:
        fraction = float(fields.get("fraction done", "0") or 0)
    except ValueError:
        fraction = 0.0
    return Task(name=fields["name"], state=fields.get("state", ""), active_state=fields.get("active_task_state", ""),
                fraction_done=fraction)


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def _session_members(session_id: int) -> list[int]:
    """PIDs of the live processes in a session (read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _end_session(session_id: int, timeout: float) -> None:
    """Tasks the client started live in its session (it never calls setsid for them)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_members(session_id):
            _kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _session_members(session_id) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL / 4)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
