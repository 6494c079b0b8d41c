"""Starting, stopping and listing a real project's daemons as real processes."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from boinc_ext.boinc.config import CONFIG_FILE, DaemonEntry, ProjectConfig, append_daemon, write_tree
from boinc_ext.daemons.base import EVENT_STARTED, EVENT_STOPPED
from boinc_ext.daemons.control import (ALREADY_RUNNING, DISABLED, FAILED, NOT_RUNNING, RUNNING, STARTED, STOPPED,
                                 daemon_status, start_daemons, stop_daemons)
from boinc_ext.boinc.xmlutil import parse_xml_file


def wait_for_text(path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} within {timeout} s:\n{content}")


def with_daemons(config: ProjectConfig, *entries: DaemonEntry) -> ProjectConfig:
    path = config.project_dir / CONFIG_FILE
    root = parse_xml_file(path)
    for entry in entries:
        append_daemon(root.find("daemons"), entry)
    write_tree(path, root)
    return ProjectConfig.load(config.project_dir)


def only_file_deleter(config: ProjectConfig) -> ProjectConfig:
    """The project with just its file deleter in <daemons>, so that tests name one daemon."""
    path = config.project_dir / CONFIG_FILE
    root = parse_xml_file(path)
    daemons = root.find("daemons")
    for element in list(daemons):
        if not (element.findtext("cmd") or "").startswith("ext_file_deleter"):
            daemons.remove(element)
    write_tree(path, root)
    return ProjectConfig.load(config.project_dir)


@pytest.fixture
def running(project):
    """The project (file deleter only); any daemon still running at the end is stopped,
    then killed (by its pid)."""
    project = only_file_deleter(project)
    yield project
    leftovers = [r for r in stop_daemons(project, timeout=10) if r.state != STOPPED and r.pid]
    for result in leftovers:
        os.kill(result.pid, signal.SIGKILL)
    assert not leftovers


def by_name(results):
    return {r.name: r for r in results}


def test_start_status_stop(running):
    config = running
    started = start_daemons(config)
    assert [(r.name, r.state) for r in started] == [("ext_file_deleter", STARTED)]
    pid = started[0].pid
    assert (config.pid_dir / "ext_file_deleter.pid").read_text().strip() == str(pid)
    log = config.log_dir / "ext_file_deleter.log"
    wait_for_text(log, EVENT_STARTED)
    assert not config.stop_daemons_path.exists()
    assert [(s.name, s.state, s.pid) for s in daemon_status(config)] == [("ext_file_deleter", RUNNING, pid)]

    again = start_daemons(config)
    assert [(r.state, r.pid) for r in again] == [(ALREADY_RUNNING, pid)]
    assert daemon_status(config)[0].pid == pid

    began = time.monotonic()
    stopped = stop_daemons(config, timeout=15)
    assert [(r.name, r.state, r.pid) for r in stopped] == [("ext_file_deleter", STOPPED, pid)]
    assert time.monotonic() - began < 5
    assert not os.path.exists(f"/proc/{pid}")
    assert not (config.pid_dir / "ext_file_deleter.pid").exists()
    assert config.stop_daemons_path.read_text().strip() == "<stop/>"
    assert f"{EVENT_STOPPED} (exit 0)" in log.read_text()
    assert [(s.state, s.pid) for s in daemon_status(config)] == [(NOT_RUNNING, None)]
    assert [r.state for r in stop_daemons(config, timeout=1)] == [NOT_RUNNING]


def test_bogus_program_is_reported_and_the_others_start(running):
    config = with_daemons(running, DaemonEntry(cmd="no_such_daemon -d 2"),
                          DaemonEntry(cmd="ext_file_deleter --mod 2 1", pid_file="fd1.pid", output="fd1.log",
                                      disabled=True))
    results = start_daemons(config)
    assert [(r.name, r.state) for r in results] == [
        ("ext_file_deleter", STARTED), ("no_such_daemon", FAILED), ("ext_file_deleter", DISABLED)]
    assert "no_such_daemon: not found" in results[1].message
    wait_for_text(config.log_dir / "ext_file_deleter.log", EVENT_STARTED)
    assert [s.state for s in daemon_status(config)] == [RUNNING, NOT_RUNNING, DISABLED]


def test_force_stop_aborts(running):
    config = running
    pid = start_daemons(config)[0].pid
    wait_for_text(config.log_dir / "ext_file_deleter.log", EVENT_STARTED)
    assert [(r.state, r.pid) for r in stop_daemons(config, timeout=15, force=True)] == [(STOPPED, pid)]
    assert daemon_status(config)[0].state == NOT_RUNNING


def test_a_recycled_pid_is_never_signalled(running):
    config = running
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (config.pid_dir / "ext_file_deleter.pid").write_text(f"{stranger.pid}\n")
        assert daemon_status(config)[0].state == NOT_RUNNING
        assert [r.state for r in stop_daemons(config, timeout=1)] == [NOT_RUNNING]
        assert stranger.poll() is None
        assert not (config.pid_dir / "ext_file_deleter.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()
