"""A real BOINC client (Debian's `boinc`, 7.20.5 here) run by tests in a directory of
their own, and `boinccmd` to drive it (client-interop/notes.md §1).

    with BoincClient(tmp_path / "client", server_url="http://127.0.0.1:PORT/") as client:
        client.boinccmd("--create_account", url, email, password, name)

The client talks only to 127.0.0.1: no info fetch, no reference-site contact, the network
test URL is the test server. `stop()` (also run by the `with` block and at interpreter
exit) sends SIGTERM, then SIGKILL after a timeout, to the client and then to any task it
left running, each by PID.
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
from pathlib import Path

import pytest
from lxml import etree

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
BOINCCMD_TIMEOUT = 60.0
START_ATTEMPTS = 3
POLL_INTERVAL = 0.2



class BoincClientError(RuntimeError):
    """The client did not start, answer or stop as expected; the message has its log."""


def find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/bin")


def require_boinc() -> tuple[str, str]:
    """Paths of `boinc` and `boinccmd`; skips the calling test when they are missing."""
    boinc, boinccmd = find_program("boinc"), find_program("boinccmd")
    if not boinc or not boinccmd:
        pytest.skip("the BOINC client is not installed (Debian package boinc-client: "
                    "`boinc` and `boinccmd`)")
    return boinc, boinccmd


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_dir_name(master_url: str) -> str:
    """The client's directory name for a project: the URL without its scheme, every other
    character than [A-Za-z0-9._-] turned into `_`, a trailing `_` dropped (facts §8)."""
    rest = re.sub(r"^[a-z]+://", "", master_url)
    return re.sub(r"[^A-Za-z0-9._-]", "_", rest).rstrip("_")


class BoincClient:
    """One `boinc` process with its own data directory and GUI RPC port."""

    def __init__(self, directory: str | Path, port: int | None = None, *,
                 server_url: str = "http://127.0.0.1:9/", cc_options: dict[str, str] | None = None,
                 log_flags: dict[str, str] | None = None):
        self.directory = Path(directory)
        self.port = port
        self._port_given = port is not None
        self.server_url = server_url
        self.cc_options = dict(cc_options or {})
        self.log_flags = dict(log_flags or {})
        self.password = secrets.token_hex(12)
        self.process: subprocess.Popen | None = None
        self._boinc, self._boinccmd = require_boinc()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> "BoincClient":
        if self.running:
            return self
        self._write_config()
        for attempt in range(START_ATTEMPTS):
            if not self._port_given:
                self.port = free_loopback_port()
            self._launch()
            try:
                self._wait_until_answering()
                return self
            except BoincClientError:
                log = self.log_text()
                self.stop()
                if self._port_given or attempt == START_ATTEMPTS - 1 or not self._lost_port_race(log):
                    raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ends the client (SIGTERM, then SIGKILL after `timeout`), then any of its tasks
        still alive (the members of the session it leads); returns its exit code."""
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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "BoincClient":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- driving it -----------------------------------------------------------------

    def boinccmd(self, *args: str, timeout: float = BOINCCMD_TIMEOUT, check: bool = True) -> str:
        """Runs `boinccmd --host 127.0.0.1:PORT --passwd PW ARGS...`; returns its stdout.
        Raises BoincClientError on a timeout (some commands poll forever on errors) or,
        with `check`, on a nonzero exit."""
        command = [self._boinccmd, "--host", f"127.0.0.1:{self.port}", "--passwd", self.password, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BoincClientError(f"boinccmd {' '.join(args)}: no answer within {timeout} s; "
                                   f"output so far:\n{_text(exc.stdout)}{_text(exc.stderr)}\n"
                                   f"client log:\n{self.log_tail()}") from None
        if check and done.returncode != 0:
            raise BoincClientError(f"boinccmd {' '.join(args)} exited {done.returncode}:\n"
                                   f"{done.stdout}{done.stderr}\nclient log:\n{self.log_tail()}")
        return done.stdout

    def log_text(self) -> str:
        """The client's own log (stdoutdae.txt), its stderr and early console output."""
        parts = []
        for name in ("console.txt", "stdoutdae.txt", "stderrdae.txt"):
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
                raise BoincClientError(f"no {pattern!r} in the client log within {timeout} s:\n"
                                       f"{self.log_tail()}")
            if not self.running:
                raise BoincClientError(f"the client exited while waiting for {pattern!r}:\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL)

    def project_dir(self, master_url: str) -> Path:
        return self.directory / "projects" / project_dir_name(master_url)

    # --- internals ------------------------------------------------------------------

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "gui_rpc_auth.cfg").write_text(self.password + "\n")
        root = etree.Element("cc_config")
        options = etree.SubElement(root, "options")
        base_options = {"no_info_fetch": "1", "dont_contact_ref_site": "1",
                        "network_test_url": self.server_url}
        for name, value in {**base_options, **self.cc_options}.items():
            etree.SubElement(options, name).text = value
        if self.log_flags:
            flags = etree.SubElement(root, "log_flags")
            for name, value in self.log_flags.items():
                etree.SubElement(flags, name).text = value
        etree.indent(root)
        (self.directory / "cc_config.xml").write_bytes(etree.tostring(root) + b"\n")

    def _launch(self) -> None:
        command = [self._boinc, "--dir", str(self.directory), "--allow_multiple_clients",
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
                raise BoincClientError(f"the client exited at start (code {self.process.returncode}):\n"
                                       f"{self.log_tail()}")
            if self._answers():
                return
            time.sleep(POLL_INTERVAL)
        raise BoincClientError(f"the client's GUI RPC port {self.port} did not answer within "
                               f"{START_TIMEOUT} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            self.boinccmd("--get_cc_status", timeout=10)
        except BoincClientError:
            return False
        return True

    @staticmethod
    def _lost_port_race(log: str) -> bool:
        return "bind" in log.lower() or "address already in use" in log.lower()


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
