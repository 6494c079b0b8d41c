"""Playing the BOINC client's side for the r_job wrapper, as client 7.20.5 does it.

A `FakeClient` builds `<root>/boinc/{projects/P, slots/N}` the way the client does
(client/app_start.cpp, boinc-server-facts §9.1): the app and the job's files live in the
project dir, the slot holds init_data.xml, an 8192-byte zeroed boinc_mmap_file and one
soft-link file per app file, input and output. It starts the built zipapp with the slot as
cwd and argv[0] a relative path into the project dir, reads app_status from shared memory
(with its own code, not the wrapper's), and writes control messages.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = "127.0.0.1_18080"
CHANNEL_SIZE = 1024
PROCESS_CONTROL_REQUEST = 0
HEARTBEAT = 4
APP_STATUS = 5
RSCRIPT = shutil.which("Rscript")


@dataclass
class StatusSample:
    at: float
    current_cpu_time: float
    checkpoint_cpu_time: float
    fraction_done: float | None


def parse_status(text: str) -> StatusSample:
    def number(tag):
        match = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
        return float(match.group(1)) if match else None

    return StatusSample(time.monotonic(), number("current_cpu_time"), number("checkpoint_cpu_time"),
                        number("fraction_done"))


class SharedMemoryView:
    """The client's view of boinc_mmap_file (lib/app_ipc.h channel rules)."""

    def __init__(self, path: Path):
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), 8 * CHANNEL_SIZE)
        self._lock = threading.Lock()

    def take(self, channel: int) -> str | None:
        base = channel * CHANNEL_SIZE
        with self._lock:
            if self._map[base] == 0:
                return None
            text = bytes(self._map[base + 1:base + CHANNEL_SIZE]).split(b"\0", 1)[0].decode()
            self._map[base] = 0
            return text

    def put(self, channel: int, text: str) -> bool:
        base = channel * CHANNEL_SIZE
        with self._lock:
            if self._map[base] != 0:
                return False
            data = text.encode() + b"\0"
            self._map[base + 1:base + 1 + len(data)] = data
            self._map[base] = 1
            return True

    def pending(self, channel: int) -> bool:
        return self._map[channel * CHANNEL_SIZE] != 0

    def close(self):
        self._map.close()


class FakeClient:
    """One task of the r_job app in a client-like directory tree."""

    def __init__(self, root: Path, wrapper: Path, *, wu_name: str = "wu_1", slot_number: int = 0,
                 checkpoint_period: float = 60.0, client_pid: int | None = None):
        self.root = root
        self.boinc_dir = root / "boinc"
        self.project_dir = self.boinc_dir / "projects" / PROJECT
        self.slot = self.boinc_dir / "slots" / str(slot_number)
        self.wu_name = wu_name
        self.result_name = f"{wu_name}_r0"
        self.checkpoint_period = checkpoint_period
        self.client_pid = os.getpid() if client_pid is None else client_pid
        self.wu_cpu_time = 0.0
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self.slot.mkdir(parents=True, exist_ok=True)
        self.app_file = wrapper.name
        shutil.copy2(wrapper, self.project_dir / self.app_file)
        self._link(self.app_file, self.app_file)
        self.outputs = {"result.rds": f"{self.result_name}_0", "stdout.txt": f"{self.result_name}_1"}
        for name, physical in self.outputs.items():
            self._link(name, physical)
        self.process: subprocess.Popen | None = None
        self.statuses: list[StatusSample] = []
        self._shm: SharedMemoryView | None = None
        self._monitor: threading.Thread | None = None
        self._stop_monitor = threading.Event()
        self.send_heartbeats = False

    # ---- files ---------------------------------------------------------------------------

    def add_input(self, name: str, content: str | bytes) -> Path:
        """An input file, stored in the project dir under a content-addressed name."""
        data = content.encode() if isinstance(content, str) else content
        physical = f"{hashlib.md5(data).hexdigest()}_{name}"
        (self.project_dir / physical).write_bytes(data)
        self._link(name, physical)
        return self.project_dir / physical

    def add_script(self, text: str) -> Path:
        return self.add_input("script.R", text)

    def _link(self, name: str, physical: str) -> None:
        (self.slot / name).write_text(f"<soft_link>../../projects/{PROJECT}/{physical}</soft_link>\n")

    def output(self, name: str) -> Path:
        return self.project_dir / self.outputs[name]

    @property
    def finish_file(self) -> Path:
        return self.slot / "boinc_finish_called"

    @property
    def work_dir(self) -> Path:
        return self.slot / ".r_job" / "work"

    def stderr_text(self) -> str:
        path = self.slot / "stderr.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def write_init_data(self) -> None:
        (self.slot / "init_data.xml").write_text(f"""<app_init_data>
<major_version>7</major_version>
<minor_version>20</minor_version>
<release>5</release>
<app_version>100</app_version>
<userid>1</userid>
<teamid>0</teamid>
<hostid>1</hostid>
<app_name>r_job</app_name>
<project_preferences>
<max_jobs>2</max_jobs>
</project_preferences>
<project_dir>{self.project_dir}</project_dir>
<boinc_dir>{self.boinc_dir}</boinc_dir>
<authenticator>0123456789abcdef0123456789abcdef</authenticator>
<wu_name>{self.wu_name}</wu_name>
<result_name>{self.result_name}</result_name>
<shm_key>-1</shm_key>
<slot>0</slot>
<client_pid>{self.client_pid}</client_pid>
<wu_cpu_time>{self.wu_cpu_time:f}</wu_cpu_time>
<starting_elapsed_time>0.000000</starting_elapsed_time>
<using_sandbox>0</using_sandbox>
<checkpoint_period>{self.checkpoint_period:f}</checkpoint_period>
<fraction_done_start>0.000000</fraction_done_start>
<fraction_done_end>1.000000</fraction_done_end>
<ncpus>1.000000</ncpus>
<rsc_fpops_est>1000000000000.000000</rsc_fpops_est>
<rsc_disk_bound>100000000.000000</rsc_disk_bound>
<host_info>
<p_ncpus>2</p_ncpus>
<p_vendor>GenuineIntel</p_vendor>
</host_info>
<global_preferences>
<disk_interval>{self.checkpoint_period:f}</disk_interval>
</global_preferences>
<app_file>{self.app_file}</app_file>
</app_init_data>
""")

    # ---- running -------------------------------------------------------------------------

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Starts the wrapper as the client does: fresh init data and shared memory."""
        assert self.process is None or self.process.poll() is not None, "task still running"
        self.stop_monitor()
        self.statuses = []  # this run's reports only
        self.write_init_data()
        (self.slot / "boinc_mmap_file").write_bytes(bytes(8 * CHANNEL_SIZE))
        self._shm = SharedMemoryView(self.slot / "boinc_mmap_file")
        run_env = dict(os.environ)
        run_env.update(env or {})
        with open(self.slot / "stderr.txt", "ab") as stderr:
            self.process = subprocess.Popen(
                [f"../../projects/{PROJECT}/{self.app_file}", *args], cwd=self.slot, env=run_env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)
        self._stop_monitor.clear()
        self._monitor = threading.Thread(target=self._watch, daemon=True)
        self._monitor.start()
        return self.process

    def restart(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """As the client restarts a task: wu_cpu_time is the last checkpoint's CPU time."""
        if self.statuses:
            self.wu_cpu_time = max(s.checkpoint_cpu_time for s in self.statuses)
        return self.start(*args, env=env)

    def _watch(self) -> None:
        last_heartbeat = 0.0
        while not self._stop_monitor.is_set():
            text = self._shm.take(APP_STATUS)
            if text:
                self.statuses.append(parse_status(text))
            if self.send_heartbeats and time.monotonic() - last_heartbeat >= 1.0:
                self._shm.put(HEARTBEAT, "<heartbeat/><wss>0</wss><max_wss>0</max_wss>")
                last_heartbeat = time.monotonic()
            time.sleep(0.05)

    def stop_monitor(self) -> None:
        self._stop_monitor.set()
        if self._monitor:
            self._monitor.join()
            self._monitor = None
        if self._shm:
            self._shm.close()
            self._shm = None

    def send_control(self, tag: str, timeout: float = 5.0) -> None:
        """Queues `<tag/>` on process_control_request once the channel is free."""
        deadline = time.monotonic() + timeout
        while not self._shm.put(PROCESS_CONTROL_REQUEST, f"<{tag}/>"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process_control_request still busy; <{tag}/> not sent")
            time.sleep(0.05)

    def control_pending(self) -> bool:
        return self._shm.pending(PROCESS_CONTROL_REQUEST)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.kill()
        time.sleep(0.15)  # let the monitor take the last status message
        self.stop_monitor()
        return code

    def kill(self) -> None:
        """Kills the wrapper's whole session (the test's own cleanup, not the client's)."""
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def close(self) -> None:
        self.kill()
        self.stop_monitor()

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> int:
        self.start(*args, env=env)
        return self.wait(timeout)

    def fractions(self) -> list[float]:
        return [s.fraction_done for s in self.statuses if s.fraction_done is not None]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(interval)


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def r_value(expression: str, *paths: Path, timeout: float = 60.0) -> str:
    """What Rscript prints for `cat(expression)`: for comparing R objects in tests.

    The expression sees `paths` as the character vector `path` (path[1], path[2], ...):
    paths are passed as arguments, never written into R code."""
    code = f"path <- commandArgs(trailingOnly = TRUE); cat({expression})"
    arguments = [str(Path(p).absolute()) for p in paths]
    completed = subprocess.run([RSCRIPT, "--vanilla", "-e", code, *arguments],
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise AssertionError(f"Rscript failed: {completed.stderr}")
    return completed.stdout.strip()


def r_identical(rds_a: Path, rds_b: Path) -> bool:
    return r_value("identical(readRDS(path[1]), readRDS(path[2]))", rds_a, rds_b) == "TRUE"


def bwrap_unusable_reason() -> str | None:
    """Why bubblewrap cannot confine R here, or None when it can."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bwrap is not installed"
    completed = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                "--tmpfs", "/tmp", "--unshare-net", "--die-with-parent", "true"],
                               capture_output=True, text=True, timeout=30)
    if completed.returncode != 0:
        return f"bwrap does not work here: {completed.stderr.strip()}"
    return None


# ---- pytest fixtures (import them into a test module to use them) ---------------------------

import pytest  # noqa: E402

requires_r = pytest.mark.skipif(RSCRIPT is None, reason="Rscript (R) is not installed")
EVERY_CHANCE = {"R_JOB_CHECKPOINT_PERIOD": "0"}  # checkpoint at every opportunity


@pytest.fixture(scope="session")
def wrapper_pyz(tmp_path_factory) -> Path:
    from wrapper.build import build_zipapp
    return build_zipapp(tmp_path_factory.mktemp("wrapper_build"))


@pytest.fixture
def make_client(tmp_path, wrapper_pyz):
    """make_client(name, script=None, **FakeClient options): a fake client in its own tree,
    given `script` as its script.R if one is given; cleaned up after."""
    clients = []

    def make(name: str = "task", script: str | None = None, **options) -> FakeClient:
        client = FakeClient(tmp_path / name, wrapper_pyz, **options)
        clients.append(client)
        if script is not None:
            client.add_script(script)
        return client

    yield make
    for client in clients:
        client.close()
