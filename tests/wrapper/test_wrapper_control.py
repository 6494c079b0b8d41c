"""The client's control requests and the client's death, and R never outliving the wrapper."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from wrapper import events
from wrapper.finish import EXIT_ABORTED_BY_CLIENT
from wrapper_harness import (line_count, make_client, process_alive, process_state,  # noqa: F401
                             requires_r, wait_for, wrapper_pyz)

pytestmark = requires_r

TICKING_SCRIPT = """
writeLines(as.character(Sys.getpid()), "r.pid")
n <- 0
boinc_for(i, 1:TICKS, { n <- n + 1; cat(i, "\\n", file = "ticks.log", append = TRUE); Sys.sleep(0.05) })
n
"""
UNCONFINED = {"R_JOB_BWRAP": ""}


def start_ticking(client, ticks: int = 400, env=None) -> int:
    """Starts a task that ticks every 50 ms; returns R's pid once it ticks."""
    client.add_script(TICKING_SCRIPT.replace("TICKS", str(ticks)))
    client.start("--seed", "3", env=env)
    pid_file = client.work_dir / "r.pid"
    wait_for(lambda: line_count(client.work_dir / "ticks.log") >= 3, 30, "R to tick")
    return int(pid_file.read_text())


def test_suspend_stops_r_and_resume_continues_it(make_client):
    client = make_client()
    pid = start_ticking(client, ticks=60)
    ticks = client.work_dir / "ticks.log"

    client.send_control("suspend")
    wait_for(lambda: process_state(pid) == "T", 5, "R to stop")
    assert not client.control_pending()  # taken off the channel at once
    time.sleep(0.3)  # a status sent just before the suspend may still be on its way
    stopped_at = line_count(ticks)
    reports = len(client.statuses)
    time.sleep(1.5)
    assert line_count(ticks) == stopped_at
    assert len(client.statuses) == reports  # no status reports while suspended

    client.send_control("resume")
    wait_for(lambda: line_count(ticks) > stopped_at, 5, "R to tick again")
    assert client.wait(30) == 0
    assert client.finish_file.exists()
    stderr = client.stderr_text()
    assert events.SUSPENDED in stderr and events.CONTINUED in stderr


def test_abort_kills_r_and_fails_the_task(make_client):
    client = make_client()
    pid = start_ticking(client)

    client.send_control("abort")

    assert client.wait(10) == EXIT_ABORTED_BY_CLIENT
    assert not process_alive(pid)
    assert not client.finish_file.exists()
    assert events.ABORTED in client.stderr_text()


def test_quit_while_suspended_still_stops_promptly(make_client):
    client = make_client()
    pid = start_ticking(client)
    client.send_control("suspend")
    wait_for(lambda: process_state(pid) == "T", 5, "R to stop")

    client.send_control("quit")

    assert client.wait(10) == 0
    assert not process_alive(pid)
    assert not client.finish_file.exists()


def test_client_gone_makes_wrapper_and_r_exit(make_client):
    stand_in = subprocess.Popen(["sleep", "600"])  # plays the client process
    try:
        client = make_client(client_pid=stand_in.pid)
        pid = start_ticking(client)
    finally:
        stand_in.kill()
        stand_in.wait()

    assert client.wait(10) == 0
    assert not process_alive(pid)
    assert not client.finish_file.exists()
    assert events.CLIENT_GONE in client.stderr_text()


@pytest.mark.parametrize("env", [None, UNCONFINED], ids=["confined", "unconfined"])
def test_r_dies_with_a_killed_wrapper(make_client, env):
    client = make_client()
    pid = start_ticking(client, env=env)

    os.kill(client.process.pid, signal.SIGKILL)  # the wrapper alone, as the client's kill does

    wait_for(lambda: not process_alive(pid), 5, "R to die with the wrapper")


def test_sigterm_stops_r_and_the_wrapper_dies_of_it(make_client):
    client = make_client()
    pid = start_ticking(client)

    client.process.send_signal(signal.SIGTERM)

    assert client.wait(10) == -signal.SIGTERM
    assert not process_alive(pid)
    assert events.SIGNALLED in client.stderr_text()
