"""The embedded server's process stops as the daemons do: a first SIGTERM or the
stop_daemons file lets requests in flight finish and exits 0; a second signal exits at
once with 128 + the signal number. Real subprocesses on a free port."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from boinc_ext.daemons.base import EVENT_ABORTED, EVENT_STARTED, EVENT_STOPPED

from boinc_ext.daemons.stopping import EVENT_STOPPING
from boinc_ext.local.volunteer import free_port
from boinc_ext.project.create import ProjectSpec, create_project
from boinc_ext.server.serve import EVENT_SERVING, listen_address
from server_fixture import SLOW_STARTED

FIXTURE = Path(__file__).parent.parent / "server_fixture.py"


@pytest.fixture
def project(tmp_path, db_settings):
    spec = ProjectSpec(project_dir=tmp_path / "proj", master_url=f"http://127.0.0.1:{free_port()}/test/",
                       name="test", db=db_settings)
    return create_project(spec)


def start(project, log_path: Path, module: bool = False) -> subprocess.Popen:
    command = ([sys.executable, "-m", "boinc_ext.server", "--project_dir", str(project.project_dir)] if module
               else [sys.executable, str(FIXTURE), str(project.project_dir)])
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    wait_for_log(log_path, EVENT_SERVING)
    return process


def wait_for_log(log_path: Path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = log_path.read_text() if log_path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in log within {timeout} s:\n{content}")


def slow_request(project, seconds: float, replies: list) -> threading.Thread:
    host, port = listen_address(project)

    def fetch():
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/slow?s={seconds}", timeout=60) as response:
                replies.append((response.status, response.read()))
        except OSError as exc:
            replies.append(exc)
    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def test_sigterm_exits_0_and_logs_the_stop(project, tmp_path):
    log = tmp_path / "server.log"
    process = start(project, log, module=True)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert EVENT_STARTED in text and f"{EVENT_STOPPING}: got SIGTERM" in text and f"{EVENT_STOPPED} (exit 0)" in text


def test_stop_daemons_file_stops_it(project, tmp_path):
    log = tmp_path / "server.log"
    process = start(project, log, module=True)
    project.stop_daemons_path.write_text("<stop/>\n")
    assert process.wait(timeout=10) == 0
    assert f"{EVENT_STOPPING}: trigger file" in log.read_text()


def test_first_sigterm_lets_a_request_in_flight_finish(project, tmp_path):
    log = tmp_path / "server.log"
    process = start(project, log)
    replies: list = []
    client = slow_request(project, 2.0, replies)
    wait_for_log(log, SLOW_STARTED)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    client.join(timeout=10)
    assert replies == [(200, b"slow done\n")]


def test_second_sigterm_exits_at_once(project, tmp_path):
    log = tmp_path / "server.log"
    process = start(project, log)
    client = slow_request(project, 30.0, [])
    wait_for_log(log, SLOW_STARTED)
    process.send_signal(signal.SIGTERM)
    wait_for_log(log, f"{EVENT_STOPPING}: got SIGTERM")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 3.0
    assert EVENT_ABORTED in log.read_text()
    client.join(timeout=1)
