"""The local volunteer (a real BOINC client): it starts, answers, restarts, and leaves nothing behind."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from boinc_ext.local.volunteer import (
    Volunteer,
    VolunteerError,
    _end_session,
    _session_members,
    boinc_available,
    project_dir_name,
)
from boinc_ext.boinc.xmlutil import parse_xml_file

needs_boinc = pytest.mark.skipif(boinc_available() is not None, reason=str(boinc_available()))


def test_project_dir_name_is_the_clients():
    assert project_dir_name("http://127.0.0.1:8766/test/") == "127.0.0.1_8766_test"


@needs_boinc
def test_client_starts_answers_and_stops_without_leftovers(tmp_path):
    client = Volunteer(tmp_path / "c", network_test_url="http://127.0.0.1:9/",
                       cc_options={"report_results_immediately": "1"}, log_flags={"task_debug": "1"})
    with client:
        pid = client.process.pid
        assert client.running
        assert "network connection status" in client.boinccmd("--get_cc_status")
        client.wait_for_log(r"Initialization completed", timeout=10)
        config = parse_xml_file(tmp_path / "c" / "cc_config.xml")
        options = config.find("options")
        assert options.findtext("no_info_fetch") == "1"
        assert options.findtext("network_test_url") == "http://127.0.0.1:9/"
        assert options.findtext("report_results_immediately") == "1"
        assert config.find("log_flags").findtext("task_debug") == "1"
        with pytest.raises(VolunteerError):
            Volunteer(tmp_path / "other", port=client.port).boinccmd("--get_cc_status", timeout=10)
    assert not client.running
    assert not os.path.exists(f"/proc/{pid}")
    assert client.stop() is None  # stopping twice is harmless
    assert "Exiting" in client.log_text()


@needs_boinc
def test_a_killed_client_restarts_on_its_port_with_its_state(tmp_path):
    client = Volunteer(tmp_path / "c").start()
    try:
        port, pid = client.port, client.process.pid
        client.kill()
        assert not client.running and not os.path.exists(f"/proc/{pid}")
        client.start()
        assert client.port == port and client.process.pid != pid
        client.wait_for_log(r"Initialization completed", timeout=10)
        assert client.log_text().count("Starting BOINC client") == 2
    finally:
        client.stop()


def test_tasks_left_in_the_clients_session_are_ended(tmp_path):
    """What stop() does after the client exits: its session's leftovers (here a shell that
    stands in for the client and a grandchild that ignores SIGTERM) are ended by PID."""
    leader = subprocess.Popen(["sh", "-c", "sh -c 'trap \"\" TERM; sleep 60' & sleep 60"],
                              start_new_session=True)
    time.sleep(0.3)
    members = _session_members(leader.pid)
    assert leader.pid in members and len(members) >= 3
    _end_session(leader.pid, timeout=1)
    leader.wait(5)
    assert _session_members(leader.pid) == []
