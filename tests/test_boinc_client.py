"""The test helper that runs a real BOINC client: it starts, answers, and leaves nothing behind."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from boinc_client import BoincClient, BoincClientError, _end_session, _session_members, project_dir_name
from boinc_ext.xmlutil import parse_xml_file


def test_project_dir_name_is_the_clients():
    assert project_dir_name("http://127.0.0.1:8766/test/") == "127.0.0.1_8766_test"


def test_client_starts_answers_and_stops_without_leftovers(tmp_path):
    client = BoincClient(tmp_path / "c", server_url="http://127.0.0.1:9/",
                         cc_options={"report_results_immediately": "1"}, log_flags={"http_debug": "0"})
    with client:
        pid = client.process.pid
        assert client.running
        assert "network connection status" in client.boinccmd("--get_cc_status")
        client.wait_for_log(r"Initialization completed", timeout=10)
        options = parse_xml_file(tmp_path / "c" / "cc_config.xml").find("options")
        assert options.findtext("no_info_fetch") == "1"
        assert options.findtext("network_test_url") == "http://127.0.0.1:9/"
        assert options.findtext("report_results_immediately") == "1"
        with pytest.raises(BoincClientError):
            BoincClient(tmp_path / "other", port=client.port).boinccmd("--get_cc_status", timeout=10)
    assert not client.running
    assert not os.path.exists(f"/proc/{pid}")
    assert client.stop() is None  # stopping twice is harmless
    assert "Exiting" in client.log_text()


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
