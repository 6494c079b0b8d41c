"""A private MariaDB server owned by the project: own datadir, unix socket and loopback port.

It never touches a system-wide server: every file lives under the directory it is given,
and only the process whose pid file is there is ever signalled.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import MySQLdb

from boinc_ext.boinc.db import DbSettings

log = logging.getLogger("boinc_ext.local.mariadb")

ADMIN_USER = "boincadm"
STATE_FILE = "server.json"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
# A unix socket path must fit in sockaddr_un (108 bytes).
_MAX_SOCKET_PATH = 100


class DbServerError(RuntimeError):
    """The private server could not be initialised, started or stopped."""


@dataclass(frozen=True)
class ServerState:
    port: int
    socket: str
    admin_passwd: str = field(repr=False)


def _find_program(*names: str) -> str:
    for name in names:
        for directory in (None, "/usr/sbin", "/usr/bin"):
            found = shutil.which(name, path=directory)
            if found:
                return found
    raise DbServerError(f"none of {', '.join(names)} found: install Debian's mariadb-server")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _socket_path(base: Path) -> str:
    path = str(base / "mysqld.sock")
    if len(path) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.md5(str(base).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"boinc-ext-db-{digest}.sock")


class MariaDBServer:
    """`init()` once, then `start()`/`stop()`; `settings()` gives admin connection settings."""

    def __init__(self, base_dir: str | Path):
        self.base_dir = Path(base_dir).resolve()
        self.data_dir = self.base_dir / "data"
        self.pid_path = self.base_dir / "mariadbd.pid"
        self.error_log = self.base_dir / "mariadbd.err"
        self.state_path = self.base_dir / STATE_FILE

    # --- state -------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return self.state_path.is_file() and (self.data_dir / "mysql").is_dir()

    def state(self) -> ServerState:
        try:
            return ServerState(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DbServerError(f"{self.state_path}: unreadable server state ({exc}); "
                                f"is {self.base_dir} a database directory made by `db start`?") from None

    def settings(self, database: str = "") -> DbSettings:
        state = self.state()
        return DbSettings(name=database, host="127.0.0.1", port=state.port,
                          user=ADMIN_USER, passwd=state.admin_passwd)

    def running_pid(self) -> int | None:
        """The server's pid if our pid file names a live mariadbd, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if b"mariadbd" not in cmdline and b"mysqld" not in cmdline:
            return None
        return pid if str(self.data_dir).encode() in cmdline else None

    # --- lifecycle ---------------------------------------------------------------------
    def init(self) -> None:
        """Creates the datadir and system tables (first time only)."""
        if self.initialised:
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DbServerError(f"{self.data_dir} exists but was not made by `db start`; "
                                f"remove it or choose another --dir")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        install_db = _find_program("mariadb-install-db", "mysql_install_db")
        command = [install_db, "--no-defaults", f"--datadir={self.data_dir}",
                   "--auth-root-authentication-method=socket", "--skip-test-db",
                   f"--user={_run_as_user()}"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise DbServerError(f"mariadb-install-db failed ({result.returncode}):\n{result.stderr[-2000:]}")
        state = ServerState(port=_free_loopback_port(), socket=_socket_path(self.base_dir),
                            admin_passwd=secrets.token_hex(12))
        self._write_state(state)
        self.start()
        self._create_admin_user(state)

    def start(self) -> ServerState:
        """Starts the server unless it already runs; waits until it accepts connections."""
        if not self.initialised:
            raise DbServerError(f"{self.base_dir}: not initialised")
        state = self.state()
        if self.running_pid():
            return state
        if not _port_is_free(state.port):
            state = ServerState(_free_loopback_port(), state.socket, state.admin_passwd)
            self._write_state(state)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state.socket)
        command = [
            _find_program("mariadbd", "mysqld"), "--no-defaults",
            f"--datadir={self.data_dir}", f"--socket={state.socket}", f"--port={state.port}",
            "--bind-address=127.0.0.1", f"--pid-file={self.pid_path}", f"--log-error={self.error_log}",
            f"--user={_run_as_user()}", "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci", "--innodb-buffer-pool-size=256M",
            "--innodb-log-file-size=256M", "--max-connections=500", "--skip-name-resolve",
        ]
        with open(os.devnull, "wb") as devnull:
            process = subprocess.Popen(command, stdin=devnull, stdout=devnull, stderr=devnull,
                                       start_new_session=True)
        self._wait_until_ready(state, process)
        return state

    def stop(self) -> bool:
        """Shuts the server down cleanly; returns False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return True
            time.sleep(0.1)
        raise DbServerError(f"mariadbd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")

    # --- helpers -----------------------------------------------------------------------
    def _write_state(self, state: ServerState) -> None:
        self.state_path.write_text(json.dumps(state.__dict__))
        os.chmod(self.state_path, 0o600)

    def _wait_until_ready(self, state: ServerState, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DbServerError(f"mariadbd exited with {process.returncode}; see {self.error_log}:\n"
                                    + _tail(self.error_log))
            try:
                MySQLdb.connect(unix_socket=state.socket, user="root", connect_timeout=2).close()
                return
            except MySQLdb.OperationalError:
                time.sleep(0.2)
        raise DbServerError(f"mariadbd did not accept connections within {START_TIMEOUT:.0f} s; "
                            f"see {self.error_log}")

    def _create_admin_user(self, state: ServerState) -> None:
        conn = MySQLdb.connect(unix_socket=state.socket, user="root")
        try:
            cur = conn.cursor()
            for host in ("localhost", "127.0.0.1"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{host}' IDENTIFIED BY %s",
                            (state.admin_passwd,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION")
            conn.commit()
        finally:
            conn.close()


def _run_as_user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _tail(path: Path, nbytes: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-nbytes:]
    except OSError:
        return "(no log)"
