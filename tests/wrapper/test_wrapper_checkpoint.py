"""Checkpoint and restart: a task quit by the client resumes where it was and gives the same result."""
from __future__ import annotations

import re

from wrapper import events
from wrapper_harness import (EVERY_CHANCE, line_count, make_client, r_identical, r_value,  # noqa: F401
                             requires_r, wait_for, wrapper_pyz)

pytestmark = requires_r

SEED = ("--seed", "20240601")

LOOP_SCRIPT = """
x <- rnorm(2)
boinc_for(i, 1:12, {
  x <- c(x, rnorm(1), sample(1000, 1))
  cat(i, "\\n", file = "iterations.log", append = TRUE)
  cat("iteration", i, "\\n")
  Sys.sleep(0.25)
})
y <- runif(1)
list(x = x, y = y)
"""

NESTED_SCRIPT = """
res <- list()
boinc_for(i, 1:3, {
  offset <- runif(1)
  inner <- numeric()
  boinc_for(j, 1:4, {
    inner <- c(inner, offset + rnorm(1))
    cat(i, j, "\\n", file = "iterations.log", append = TRUE)
    Sys.sleep(0.1)
  })
  res[[i]] <- inner
})
res
"""

STEPS_SCRIPT = "".join(
    f'{{ v{k} <- rnorm(1); cat("step {k}\\n"); cat({k}, "\\n", file = "iterations.log", append = TRUE); '
    f'Sys.sleep(0.3) }}\n' for k in range(1, 7)) + "c(v1, v2, v3, v4, v5, v6, runif(1))\n"


def uninterrupted(make_client, script):
    client = make_client("uninterrupted", wu_name="wu_straight", script=script)
    assert client.run(*SEED, env=EVERY_CHANCE) == 0
    return client


def interrupted(make_client, script: str, lines: int):
    """A task of `script`, started, let log `lines` iterations and sent <quit/> as the client does."""
    client = make_client("interrupted", script=script)
    client.start(*SEED, env=EVERY_CHANCE)
    log = client.work_dir / "iterations.log"
    wait_for(lambda: line_count(log) >= lines, 30, f"{lines} iterations")
    wait_for(lambda: any(s.checkpoint_cpu_time > 0 for s in client.statuses), 10,
             "a status report after a checkpoint")
    client.send_control("quit")
    assert client.wait(30) == 0
    assert not client.finish_file.exists()
    assert events.QUIT in client.stderr_text()
    return client


def resume(client) -> None:
    """Restarts the quit task, as the client does, and lets it finish."""
    assert client.restart(*SEED, env=EVERY_CHANCE).wait(60) == 0
    client.wait()


def resumed_position(stderr: str) -> tuple[int, int]:
    match = re.search(rf"{events.CHECKPOINT_RESTORED} at expression (\d+), iteration (\d+)", stderr)
    assert match, stderr
    return int(match.group(1)), int(match.group(2))


def test_quit_then_restart_resumes_and_matches_an_uninterrupted_run(make_client):
    client = interrupted(make_client, LOOP_SCRIPT, 5)
    done_before_quit = line_count(client.work_dir / "iterations.log")
    checkpoint_cpu = max(s.checkpoint_cpu_time for s in client.statuses)
    assert checkpoint_cpu > 0

    resume(client)

    assert client.finish_file.read_text() == "0\n"
    expression, iteration = resumed_position(client.stderr_text())
    assert expression == 2 and iteration >= done_before_quit
    executed = line_count(client.work_dir / "iterations.log")
    assert 12 <= executed <= 13  # at most the iteration in progress at the quit ran twice
    assert min(s.current_cpu_time for s in client.statuses) >= checkpoint_cpu

    straight = uninterrupted(make_client, LOOP_SCRIPT)
    assert r_identical(client.output("result.rds"), straight.output("result.rds"))
    # Output printed after the checkpoint and printed again is not duplicated.
    assert client.output("stdout.txt").read_text() == straight.output("stdout.txt").read_text()


def test_nested_loops_with_draws_before_the_inner_loop_resume_exactly(make_client):
    client = interrupted(make_client, NESTED_SCRIPT, 6)

    resume(client)

    expression, iteration = resumed_position(client.stderr_text())
    assert expression == 2 and iteration >= 1
    assert line_count(client.work_dir / "iterations.log") <= 12 + 1
    straight = uninterrupted(make_client, NESTED_SCRIPT)
    assert r_identical(client.output("result.rds"), straight.output("result.rds"))


def test_checkpoints_between_top_level_expressions(make_client):
    client = interrupted(make_client, STEPS_SCRIPT, 3)

    resume(client)

    expression, iteration = resumed_position(client.stderr_text())
    assert expression >= 3 and iteration == 0
    assert line_count(client.work_dir / "iterations.log") <= 7
    straight = uninterrupted(make_client, STEPS_SCRIPT)
    assert r_identical(client.output("result.rds"), straight.output("result.rds"))
    assert client.output("stdout.txt").read_text() == "".join(f"step {k}\n" for k in range(1, 7)) + \
        straight.output("stdout.txt").read_text().split("step 6\n", 1)[1]


def test_torn_checkpoint_is_ignored_and_the_task_starts_over(make_client):
    client = interrupted(make_client, LOOP_SCRIPT, 3)
    checkpoint = client.slot / ".r_job" / "checkpoint.rds"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])

    resume(client)

    stderr = client.stderr_text()
    assert events.CHECKPOINT_IGNORED in stderr
    assert events.CHECKPOINT_RESTORED not in stderr
    straight = uninterrupted(make_client, LOOP_SCRIPT)
    assert r_identical(client.output("result.rds"), straight.output("result.rds"))


def test_checkpoint_for_another_script_is_not_used(make_client):
    client = interrupted(make_client, LOOP_SCRIPT, 3)
    client.add_script(LOOP_SCRIPT.replace("1:12", "1:4"))

    resume(client)

    assert "written for another script" in client.stderr_text()
    assert r_value("length(readRDS(path[1])$x)", client.output("result.rds")) == "10"


def test_boinc_for_supports_next_break_and_lists(make_client):
    client = make_client()
    client.add_script("""
out <- c()
boinc_for(i, 1:10, { if (i %% 2 == 0) next; if (i > 7) break; out <- c(out, i) })
names <- character()
boinc_for("item", list(a = "x", b = "y"), names <- c(names, item))
list(out = out, names = names, loop_value = boinc_for(k, 1:2, NULL), k = k,
     leftovers = grep("^[.]boinc", ls(all.names = TRUE), value = TRUE))
""")
    assert client.run(*SEED, env=EVERY_CHANCE) == 0

    expected = 'list(out = c(1L, 3L, 5L, 7L), names = c("x", "y"), loop_value = NULL, k = 2L, leftovers = character())'
    assert r_value(f"identical(readRDS(path[1]), {expected})", client.output("result.rds")) == "TRUE"


def test_checkpoints_follow_the_clients_period(make_client):
    client = make_client(checkpoint_period=60, script="boinc_for(i, 1:3, Sys.sleep(0.1))\n1\n")
    assert client.run(*SEED) == 0
    assert events.CHECKPOINT_SAVED not in client.stderr_text()
    assert "checkpoint period 60 s" in client.stderr_text()

    frequent = make_client("frequent", checkpoint_period=60, script="boinc_for(i, 1:3, Sys.sleep(0.1))\n1\n")
    assert frequent.run(*SEED, env=EVERY_CHANCE) == 0
    assert events.CHECKPOINT_SAVED in frequent.stderr_text()


def test_restart_restores_attached_packages_options_and_working_directory(make_client):
    script = """
library(tools)
options(digits = 3, r_job_test_option = "kept")
dir.create("sub")
setwd("sub")
boinc_for(i, 1:12, {
  cat(i, "\\n", file = "../iterations.log", append = TRUE)
  Sys.sleep(0.25)
})
print(pi)
list(tools = "package:tools" %in% search(), digits = getOption("digits"),
     option = getOption("r_job_test_option"), wd = basename(getwd()),
     ext = file_ext("a.csv"))
"""
    client = interrupted(make_client, script, 5)

    resume(client)

    assert events.CHECKPOINT_RESTORED in client.stderr_text()
    expected = 'list(tools = TRUE, digits = 3L, option = "kept", wd = "sub", ext = "csv")'
    assert r_value(f"identical(readRDS(path[1]), {expected})", client.output("result.rds")) == "TRUE"
    assert "[1] 3.14\n" in client.output("stdout.txt").read_text()
