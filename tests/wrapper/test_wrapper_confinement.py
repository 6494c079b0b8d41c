"""Confinement of R by bubblewrap, and the unconfined fallback that says so."""
from __future__ import annotations

import socket

import pytest

from wrapper import events
from wrapper_harness import (bwrap_unusable_reason, make_client, r_value, requires_r,  # noqa: F401
                             wrapper_pyz)

pytestmark = requires_r

PROBE_SCRIPT = """
# The places to attack come in an input file, one a line: paths never go into R code.
target <- readLines("targets.txt")
attempt <- function(expr) tryCatch({ force(expr); "succeeded" },
                                   error = function(e) conditionMessage(e),
                                   warning = function(w) conditionMessage(w))
list(
  outside = attempt(writeLines("x", target[1])),
  project = attempt(writeLines("x", target[2])),
  input = attempt(writeLines("overwritten", "data.csv")),
  account = attempt(readLines(target[3])),
  network = attempt({
    con <- socketConnection("127.0.0.1", as.integer(target[4]), open = "r+b", blocking = TRUE, timeout = 3)
    close(con)
  }),
  work_dir = attempt(writeLines("x", "scratch.txt")),
  tmp = attempt(writeLines("x", tempfile()))
)
"""


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    yield server
    server.close()


def accepted_connection(server) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def run_probe(make_client, tmp_path, listener, env=None):
    client = make_client()
    outside = tmp_path / "outside" / "escaped.txt"
    outside.parent.mkdir()
    account = client.boinc_dir / "account_127.0.0.1_18080.xml"
    account.write_text("<account><authenticator>secret</authenticator></account>\n")
    data = client.add_input("data.csv", "x\n1\n")
    targets = [outside, client.project_dir / "planted.txt", account, listener.getsockname()[1]]
    client.add_input("targets.txt", "".join(f"{target}\n" for target in targets))
    client.add_script(PROBE_SCRIPT)
    assert client.run("--seed", "1", env=env) == 0
    result = client.output("result.rds")
    outcome = {name: r_value(f"readRDS(path[1])${name}", result)
               for name in ("outside", "project", "input", "account", "network", "work_dir", "tmp")}
    return client, outcome, outside, data


def test_confined_r_cannot_write_outside_read_boinc_files_or_use_the_network(
        make_client, tmp_path, listener):
    reason = bwrap_unusable_reason()
    if reason:
        pytest.skip(f"bubblewrap cannot confine R here: {reason}")

    client, outcome, outside, data = run_probe(make_client, tmp_path, listener)

    assert events.CONFINED in client.stderr_text()
    for blocked in ("outside", "project", "input", "account", "network"):
        assert outcome[blocked] != "succeeded", (blocked, outcome)
    assert outcome["work_dir"] == "succeeded" and outcome["tmp"] == "succeeded"
    assert not outside.exists()
    assert not (client.project_dir / "planted.txt").exists()
    assert data.read_text() == "x\n1\n"
    assert not accepted_connection(listener)


@pytest.mark.parametrize("bwrap, reason", [
    ("", "bubblewrap (bwrap) is not installed"),
    ("/bin/false", "bubblewrap does not work here"),
])
def test_without_working_bwrap_r_runs_unconfined_and_says_so(make_client, tmp_path, listener,
                                                             bwrap, reason):
    client, outcome, outside, _ = run_probe(make_client, tmp_path, listener,
                                            env={"R_JOB_BWRAP": bwrap})

    stderr = client.stderr_text()
    assert f"{events.UNCONFINED}: {reason}" in stderr
    assert events.CONFINED not in stderr
    # Nothing stops R now, which shows the confined test above is not vacuous.
    assert outcome["outside"] == "succeeded" and outside.exists()
    assert outcome["network"] == "succeeded" and accepted_connection(listener)
    assert client.finish_file.exists()
