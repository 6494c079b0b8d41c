"""The daemon base: BOINC's flags, the loop, two-stage stop, stop_daemons, --mod and DB loss.

Uses a real MariaDB and, for signals, real subprocesses running tests/daemon_fixture.py.
"""
from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from boinc_ext.daemons.base import DaemonConfigError, EVENT_ABORTED, EVENT_DB_BACKOFF, EVENT_DB_RECOVERED, EVENT_FAILED, EVENT_PASS_IDLE, EVENT_STARTED, EVENT_STOPPED, EXIT_USAGE, main_for

from boinc_ext.daemons.options import DaemonOptions, DaemonUsageError, parse_daemon_args

from boinc_ext.daemons.stopping import EVENT_STOPPING
from boinc_ext.boinc.db import Database, DbSettings
from daemon_fixture import PROCESSING, TABLE_DDL, ItemDaemon, ItemOptions, create_items

FIXTURE = Path(__file__).parent.parent / "daemon_fixture.py"


def options(*argv: str) -> DaemonOptions:
    return ItemOptions.parse(list(argv), ItemDaemon.name)


def spawn(project, log_path: Path, *argv: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, str(FIXTURE), "--project_dir", str(project.project_dir),
                                 *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_for_log(log_path: Path, text: str, count: int = 1, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log_path.read_text() if log_path.exists() else ""
        if content.count(text) >= count:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in log within {timeout} s:\n{content}")


def item_counts(db) -> dict[str, int]:
    with db.transaction():
        row = db.query_one("select count(*) total, coalesce(sum(done), 0) done, coalesce(sum(handled), 0) "
                           "handled, coalesce(sum(handled = 1 and done = 0), 0) half_done, "
                           "coalesce(sum(handled > 1), 0) twice from test_item")
    return {key: int(value) for key, value in row.items()}


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# --- flags ------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["-one_pass", "--one_pass"])
def test_one_pass_flag_in_both_forms(flag):
    assert parse_daemon_args([flag], "x").one_pass is True
    assert parse_daemon_args([], "x").one_pass is False


def test_debug_level_mod_app_and_sleep_interval():
    opts = parse_daemon_args(["-d", "3", "-mod", "3", "1", "--app", "r_job", "-sleep_interval", "2.5"], "x")
    assert (opts.debug_level, opts.mod, opts.app, opts.sleep_interval) == (3, (3, 1), "r_job", 2.5)
    assert DaemonOptions.parse(["--debug_level", "4"]).debug_level == 4
    assert DaemonOptions.parse([]).sleep_interval == 5
    # mod_clause and item_log need no project: the daemon is never run here.
    daemon = ItemDaemon(None, opts)
    assert daemon.mod_clause() == " and mod(id, 3) = 1"
    assert daemon.mod_clause("workunitid") == " and mod(workunitid, 3) = 1"
    assert ItemDaemon(None, DaemonOptions()).mod_clause() == ""


@pytest.mark.parametrize("argv, expected", [
    (["--mod", "3", "3"], "--mod 3 3: R must be between 0 and 2"),
    (["--mod", "0", "0"], "--mod 0 0: N must be at least 1"),
    (["-mod", "2", "-1"], "--mod 2 -1: R must be between 0 and 1"),
    (["--sleep_interval", "0"], "--sleep_interval 0: must be more than 0"),
    (["-d", "7"], "-d"),
    (["--bogus"], "--bogus"),
    (["-bogus"], "-bogus"),
    (["--one"], "--one"),  # no abbreviations: BOINC has none
])
def test_bad_flags_are_rejected_naming_the_flag(argv, expected):
    with pytest.raises(DaemonUsageError) as info:
        parse_daemon_args(argv, "x")
    assert expected in str(info.value)


def test_subclass_flags_and_usage_exit_code(capsys):
    assert options("-delay", "0.25").delay == 0.25
    assert main_for(ItemDaemon, ["--no_such_flag"]) == EXIT_USAGE
    assert "--no_such_flag" in capsys.readouterr().err


def test_item_log_prefixes_the_item(caplog):
    caplog.set_level(logging.INFO)
    ItemDaemon(None, DaemonOptions()).item_log("WU", 12, "wu_a").info("deleted %s", "f")
    assert "[WU#12 wu_a] deleted f" in messages(caplog)


# --- the loop ---------------------------------------------------------------------------
def test_one_pass_handles_everything(project, project_db, caplog):
    caplog.set_level(logging.DEBUG)
    create_items(project_db, 5)
    assert ItemDaemon(project, options("--one_pass")).run() == 0
    assert item_counts(project_db) == {"total": 5, "done": 5, "handled": 5, "half_done": 0, "twice": 0}
    logged = messages(caplog)
    assert logged[0].startswith(EVENT_STARTED)
    assert logged[-1].startswith(EVENT_STOPPED)
    assert "[ITEM#3 item3] " + PROCESSING in logged


def test_sigterm_finishes_the_current_item_and_exits_0(project, project_db, tmp_path):
    create_items(project_db, 6)
    log = tmp_path / "daemon.log"
    process = spawn(project, log, "--delay", "0.8")
    wait_for_log(log, PROCESSING, count=2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    text = log.read_text()
    counts = item_counts(project_db)
    assert counts["done"] == text.count(PROCESSING) == 2
    assert counts["half_done"] == 0 and counts["handled"] == 2
    assert f"{EVENT_STOPPING}: got SIGTERM" in text
    assert f"{EVENT_STOPPED} (exit 0)" in text


def test_second_sigterm_aborts_rolls_back_and_a_restart_finishes(project, project_db, tmp_path):
    create_items(project_db, 5)
    log = tmp_path / "daemon.log"
    process = spawn(project, log, "--delay", "3")
    wait_for_log(log, PROCESSING, count=2)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert EVENT_ABORTED in log.read_text()
    # Item 1 was committed; item 2 was interrupted and rolled back.
    assert item_counts(project_db) == {"total": 5, "done": 1, "handled": 1, "half_done": 0, "twice": 0}

    process = spawn(project, log, "--one_pass")
    assert process.wait(timeout=30) == 0
    assert item_counts(project_db) == {"total": 5, "done": 5, "handled": 5, "half_done": 0, "twice": 0}


def test_stop_daemons_file_stops_an_idle_daemon(project, project_db, tmp_path):
    project_db.execute(TABLE_DDL)
    log = tmp_path / "daemon.log"
    process = spawn(project, log, "-d", "3", "--sleep_interval", "60")
    wait_for_log(log, EVENT_PASS_IDLE)
    project.stop_daemons_path.write_text("<stop/>\n")
    started = time.monotonic()
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 2.0
    text = log.read_text()
    assert f"{EVENT_STOPPING}: trigger file" in text and EVENT_STOPPED in text


def test_mod_splits_items_between_two_instances(project, project_db, tmp_path):
    create_items(project_db, 20)
    processes = [spawn(project, tmp_path / f"mod{r}.log", "--one_pass", "--mod", "2", str(r), "--delay", "0.05")
                 for r in (0, 1)]
    assert [p.wait(timeout=60) for p in processes] == [0, 0]
    assert item_counts(project_db) == {"total": 20, "done": 20, "handled": 20, "half_done": 0, "twice": 0}
    with project_db.transaction():
        wrong = project_db.scalar("select count(*) from test_item where handled_by != mod(id, 2)")
    assert wrong == 0


def test_lost_connection_backs_off_and_recovers(project, project_db, caplog):
    caplog.set_level(logging.INFO)
    create_items(project_db, 3)
    daemon = ItemDaemon(project, options("--one_pass"))
    connection_id = daemon.db.scalar("select connection_id()")
    project_db.execute(f"kill connection {int(connection_id)}")
    assert daemon.run() == 0
    logged = messages(caplog)
    assert any(m.startswith(EVENT_DB_BACKOFF) for m in logged)
    assert EVENT_DB_RECOVERED in logged
    assert item_counts(project_db)["done"] == 3


def test_unreachable_database_backs_off_until_stopped(project, caplog):
    caplog.set_level(logging.INFO)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    nowhere = Database(DbSettings(name=project.db_name, host="127.0.0.1", port=closed_port, user="x"))
    daemon = ItemDaemon(project, options(), database=nowhere)
    timer = threading.Timer(3.5, project.stop_daemons_path.write_text, ("<stop/>\n",))
    timer.start()
    try:
        assert daemon.run() == 0
    finally:
        timer.cancel()
    backoffs = [m for m in messages(caplog) if m.startswith(EVENT_DB_BACKOFF)]
    assert len(backoffs) >= 2
    assert backoffs[0].endswith("retrying in 1 s") and backoffs[1].endswith("retrying in 2 s")
    assert any(m.startswith(EVENT_STOPPING) for m in messages(caplog))


def test_permanent_db_error_exits_non_zero_with_traceback(project, caplog):
    caplog.set_level(logging.INFO)
    # No test_item table in this database: a permanent error, not one to retry.
    assert ItemDaemon(project, options()).run() == 1
    failed = [r for r in caplog.records if r.getMessage().startswith(EVENT_FAILED)]
    assert failed and failed[0].exc_info is not None
    assert "PermanentDbError" in failed[0].getMessage()
    assert caplog.records[-1].getMessage() == f"{EVENT_STOPPED} (exit 1)"


# --- typed options of the daemons -------------------------------------------------------
def test_daemons_options_are_typed_with_their_flags_in_both_forms():
    from boinc_ext.assimilator.daemon import AssimilatorOptions
    from boinc_ext.validator.credit import CreditMode
    from boinc_ext.validator.daemon import ValidatorOptions
    opts = ValidatorOptions.parse(["--app", "r_job", "-credit_from_wu", "-one_pass_N_WU", "3",
                                   "--policy_option", "a=1", "-policy_option", "b=2", "-dry_run"])
    assert (opts.credit_mode, opts.one_pass_N_WU, opts.policy_option, opts.dry_run) == (
        CreditMode.FROM_WU, 3, (("a", "1"), ("b", "2")), True)
    assert opts.runs_once and not ValidatorOptions().runs_once
    assert AssimilatorOptions().sleep_interval == 10.0
    assert AssimilatorOptions.parse(["-dont_update_db"]).dry_run is True
    assert AssimilatorOptions.parse(["--one_pass_N_WU", "2"]).runs_once


@pytest.mark.parametrize("argv, expected", [
    (["--one_pass_N_WU", "0"], "--one_pass_N_WU: '0': must be a whole number of at least 1"),
    (["--credit_from_wu", "--no_credit"], "not allowed with argument"),
    (["--max_granted_credit", "x"], "--max_granted_credit"),
])
def test_bad_daemon_flags_name_the_flag(argv, expected):
    from boinc_ext.validator.daemon import ValidatorOptions
    with pytest.raises(DaemonUsageError) as info:
        ValidatorOptions.parse(argv, "ext_validator")
    assert expected in str(info.value)


def test_config_options_out_of_range_are_errors_naming_the_option(project):
    from dataclasses import replace
    from types import MappingProxyType

    from boinc_ext.boinc.config import ConfigError
    config = replace(project, options=MappingProxyType({**project.options, "max_wus_to_send": "0",
                                                        "ext_min_rpc_delay": "0.5", "daily_result_quota": "2.5"}))
    for read, expected in ((lambda: config.option_int("max_wus_to_send", 50, minimum=1),
                            "<max_wus_to_send> must be at least 1, not 0"),
                           (lambda: config.option_float("ext_min_rpc_delay", 5.0, minimum=1.0),
                            "<ext_min_rpc_delay> must be at least 1, not 0.5"),
                           (lambda: config.option_int("daily_result_quota", 0),
                            "<daily_result_quota> must be a whole number")):
        with pytest.raises(ConfigError) as info:
            read()
        assert expected in str(info.value)
    assert config.option_int("absent", 7, minimum=1) == 7


def test_a_failing_setup_is_reported_and_teardown_still_runs(caplog):
    calls = []

    class Broken(ItemDaemon):
        def setup(self):
            raise DaemonConfigError("no key")

        def teardown(self):
            calls.append("teardown")
    caplog.set_level(logging.INFO)
    assert Broken(None, ItemOptions(one_pass=True)).run() == 1
    assert calls == ["teardown"]
    assert f"{EVENT_FAILED}: no key" in messages(caplog)
