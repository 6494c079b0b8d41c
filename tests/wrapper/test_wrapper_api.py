"""The wrapper's BOINC app API pieces on real files: init data, soft links, shared memory."""
from __future__ import annotations

import os
import subprocess

import pytest

from wrapper import events
from wrapper.client_session import (HEARTBEAT_GIVEUP_SECONDS, ClientSession, ControlRequest,
                                    format_status, parse_control_message)
from wrapper.command_line import derived_seed, parse_job_options
from wrapper.errors import BadCommandLine, BadSlot
from wrapper.finish import slot_lock
from wrapper.init_data import InitData, load_init_data
from wrapper.logical_names import discover_inputs, resolve
from wrapper.shmem import APP_STATUS, SHMEM_SIZE, SharedMemory
from wrapper_harness import FakeClient, SharedMemoryView, parse_status


@pytest.fixture
def client(tmp_path):
    wrapper = tmp_path / "r_job_wrapper_1.00_x.pyz"
    wrapper.write_text("#!/bin/sh\n")
    fake = FakeClient(tmp_path, wrapper, wu_name="wu_api", checkpoint_period=30)
    fake.write_init_data()
    (fake.slot / "boinc_mmap_file").write_bytes(bytes(SHMEM_SIZE))
    yield fake
    fake.close()


def test_init_data_as_the_client_writes_it(client):
    init = load_init_data(client.slot)
    assert init.wu_name == "wu_api" and init.result_name == "wu_api_r0"
    assert init.project_dir == str(client.project_dir) and init.boinc_dir == str(client.boinc_dir)
    assert init.client_pid == os.getpid()
    assert init.checkpoint_period == 30.0
    assert init.app_files == ("r_job_wrapper_1.00_x.pyz",)
    assert init.scaled_fraction(0.5) == 0.5
    assert InitData(fraction_done_start=0.2, fraction_done_end=0.6).scaled_fraction(0.5) == pytest.approx(0.4)


def test_no_init_data_means_standalone_and_garbage_is_a_clear_error(tmp_path):
    assert load_init_data(tmp_path) is None
    (tmp_path / "init_data.xml").write_text("<app_init_data><wu_name>x</app_init")
    with pytest.raises(BadSlot, match="init_data.xml"):
        load_init_data(tmp_path)


def test_soft_links_resolve_to_the_project_file(client):
    physical = client.add_input("data.csv", "1,2\n")
    assert resolve(client.slot, "data.csv").resolve() == physical.resolve()
    (client.slot / "plain.txt").write_text("a copy_file input\n")
    assert resolve(client.slot, "plain.txt") == client.slot / "plain.txt"
    assert resolve(client.slot, "missing") == client.slot / "missing"


def test_inputs_are_the_slots_logical_names_but_not_boinc_or_output_files(client):
    client.add_script("1\n")
    client.add_input("data.csv", "1\n")
    (client.slot / "copied.txt").write_text("copy_file input\n")
    (client.slot / "stderr.txt").write_text("log\n")
    (client.slot / "boinc_lockfile").write_text("")

    found = discover_inputs(client.slot, exclude={"result.rds", "stdout.txt", client.app_file})

    assert sorted(found) == ["copied.txt", "data.csv", "script.R"]


def test_shared_memory_channels_match_the_clients_view(client):
    ours = SharedMemory(client.slot / "boinc_mmap_file")
    theirs = SharedMemoryView(client.slot / "boinc_mmap_file")
    try:
        assert ours.send(APP_STATUS, format_status(12.5, 10.0, 0.25))
        assert not ours.send(APP_STATUS, "second")  # the first is unread
        sample = parse_status(theirs.take(APP_STATUS))
        assert (sample.current_cpu_time, sample.checkpoint_cpu_time, sample.fraction_done) == (12.5, 10.0, 0.25)
        assert ours.send(APP_STATUS, "second")

        assert theirs.put(0, "<quit/>")
        assert ours.receive(0) == "<quit/>"
        assert ours.receive(0) is None
        assert theirs.put(0, "<suspend/>")  # the channel was freed
    finally:
        ours.close()
        theirs.close()


def test_final_status_replaces_an_unread_one(client):
    session = ClientSession(load_init_data(client.slot), client.slot)
    view = SharedMemoryView(client.slot / "boinc_mmap_file")
    try:
        assert session.report_status(5.0, 2.0, 0.5)
        session.report_final_status(6.0, 2.0)      # the client has not read the first yet
        assert not session.status_read()
        sample = parse_status(view.take(APP_STATUS))
        assert (sample.current_cpu_time, sample.checkpoint_cpu_time, sample.fraction_done) == (6.0, 2.0, 1.0)
        assert view.take(APP_STATUS) is None and session.status_read()
    finally:
        session.close()
        view.close()


def test_status_text_matches_the_boinc_api_format():
    assert format_status(1.5, 0.0, None) == ("<current_cpu_time>1.500000e+00</current_cpu_time>\n"
                                             "<checkpoint_cpu_time>0.000000e+00</checkpoint_cpu_time>\n"
                                             "<want_network>0</want_network>\n")
    assert format_status(1.5, 0.0, 0.5).endswith("<fraction_done>5.000000e-01</fraction_done>\n")


def test_control_messages():
    assert parse_control_message("<suspend/>") == [ControlRequest.SUSPEND]
    assert parse_control_message("<resume/>") == [ControlRequest.RESUME]
    assert parse_control_message("<quit/>") == [ControlRequest.QUIT]
    assert parse_control_message("<abort/>") == [ControlRequest.ABORT]
    assert parse_control_message("<reread_app_info/>") == []


def test_session_takes_control_requests_and_heartbeats(client):
    session = ClientSession(load_init_data(client.slot), client.slot)
    view = SharedMemoryView(client.slot / "boinc_mmap_file")
    try:
        view.put(0, "<suspend/>")
        view.put(4, "<heartbeat/><wss>1</wss><max_wss>2</max_wss>")
        assert session.control_requests() == [ControlRequest.SUSPEND]
        assert not view.pending(0) and not view.pending(4)
        assert session.gone_reason() is None  # the client pid (this test) is alive
    finally:
        session.close()
        view.close()


def test_client_pid_gone_and_missing_heartbeats(client):
    stand_in = subprocess.Popen(["true"])
    stand_in.wait()
    client.client_pid = stand_in.pid
    client.write_init_data()
    session = ClientSession(load_init_data(client.slot), client.slot)
    assert session.gone_reason() == events.CLIENT_GONE
    session.close()

    client.client_pid = 0  # no pid: the API falls back to heartbeats
    client.write_init_data()
    now = [1000.0]
    session = ClientSession(load_init_data(client.slot), client.slot, clock=lambda: now[0])
    view = SharedMemoryView(client.slot / "boinc_mmap_file")
    try:
        now[0] += HEARTBEAT_GIVEUP_SECONDS - 1
        view.put(4, "<heartbeat/>")
        session.control_requests()
        now[0] += HEARTBEAT_GIVEUP_SECONDS - 1
        assert session.gone_reason() is None
        now[0] += 2
        assert session.gone_reason() == events.NO_HEARTBEAT
    finally:
        session.close()
        view.close()


def test_command_line():
    options = parse_job_options(["--seed", "42", "--rng-kind", "Knuth-TAOCP-2002"], "wu")
    assert (options.seed, options.rng_kind, options.seed_derived) == (42, "Knuth-TAOCP-2002", False)
    derived = parse_job_options(["--extra"], "wu_7")
    assert derived.seed == derived_seed("wu_7") and derived.seed_derived
    assert derived.rng_kind == "Mersenne-Twister" and derived.ignored == ("--extra",)
    assert derived_seed("wu_7") == derived_seed("wu_7") != derived_seed("wu_8")
    with pytest.raises(BadCommandLine, match="whole number"):
        parse_job_options(["--seed", "1.5"], "wu")
    with pytest.raises(BadCommandLine, match="expected one of"):
        parse_job_options(["--seed", "1", "--rng-kind", "user-supplied"], "wu")


def test_slot_lock_keeps_a_second_instance_out(tmp_path):
    with slot_lock(tmp_path):
        holder = subprocess.run(
            ["python3", "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
             "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(tmp_path / "boinc_lockfile")],
            capture_output=True)
        assert holder.returncode != 0  # another process cannot take it
    with slot_lock(tmp_path):  # released on exit
        pass


def test_missing_shared_memory_file_is_a_clear_permanent_error(client):
    (client.slot / "boinc_mmap_file").unlink()
    with pytest.raises(BadSlot, match="api_version"):
        ClientSession(load_init_data(client.slot), client.slot)
