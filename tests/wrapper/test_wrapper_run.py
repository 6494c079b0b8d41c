"""The r_job wrapper end to end, as the BOINC client runs it: real zipapp, real R."""
from __future__ import annotations

import pytest

from wrapper import events
from wrapper.finish import slot_lock
from wrapper_harness import make_client, r_identical, r_value, requires_r, wrapper_pyz  # noqa: F401

pytestmark = requires_r

OK_SCRIPT = """
data <- read.csv("data.csv")
cat("rows:", nrow(data), "\\n")
draws <- runif(3)
for_total <- 0
boinc_for(i, seq_len(nrow(data)), {
  for_total <- for_total + data$x[i]
  boinc_progress(i / nrow(data))
  Sys.sleep(0.3)
})
print(for_total)
list(total = for_total, draws = draws, mean = mean(data$x))
"""
DATA_CSV = "x\n1\n2\n3\n4\n"


def test_ok_job_writes_result_stdout_and_finish_file(make_client):
    client = make_client(script=OK_SCRIPT)
    client.add_input("data.csv", DATA_CSV)

    assert client.run("--seed", "7") == 0

    assert client.finish_file.read_text() == "0\n"
    expected = 'set.seed(7); list(total = 10, draws = runif(3), mean = 2.5)'
    assert r_value(f"identical(readRDS(path[1]), {{{expected}}})", client.output("result.rds")) == "TRUE"
    # Visible top-level values are printed, as Rscript prints them.
    assert client.output("stdout.txt").read_text().startswith("rows: 4 \n[1] 10\n$total\n[1] 10\n")
    stderr = client.stderr_text()
    for event in (events.STARTED, events.SEED, events.R_STARTED, events.OUTPUTS_WRITTEN,
                  events.FINISHED):
        assert event in stderr
    assert "random seed 7 (from the command line), RNG kind Mersenne-Twister" in stderr
    # The soft-link files are intact: outputs went to the link targets.
    assert (client.slot / "result.rds").read_text().startswith("<soft_link>")


def test_fraction_done_and_cpu_time_are_reported(make_client):
    client = make_client(script="boinc_for(i, 1:5, { boinc_progress(i / 5); Sys.sleep(0.5) })\n")

    assert client.run("--seed", "7") == 0

    fractions = client.fractions()
    assert any(0 < f < 1 for f in fractions), fractions
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert all(s.current_cpu_time is not None and s.current_cpu_time >= 0 for s in client.statuses)
    assert max(s.current_cpu_time for s in client.statuses) > 0


def test_failing_script_exits_nonzero_with_r_message(make_client):
    client = make_client(script='x <- 1\nstop("the data are bad: ", x + 1)\n"never"\n')

    assert client.run("--seed", "1") == 1

    stderr = client.stderr_text()
    assert "the data are bad: 2" in stderr
    assert "expression 2 (line 2)" in stderr
    assert events.SCRIPT_FAILED in stderr
    assert not client.finish_file.exists()
    assert not client.output("result.rds").exists()


def test_script_that_does_not_parse_fails_clearly(make_client):
    client = make_client(script="x <- (1 + \n")

    assert client.run("--seed", "1") == 1

    assert "script.R does not parse" in client.stderr_text()
    assert not client.finish_file.exists()


def test_script_calling_quit_is_a_failure_not_a_result(make_client):
    client = make_client(script="x <- 1\nquit(status = 0)\nx\n")

    assert client.run("--seed", "1") == 1

    assert "before the script finished" in client.stderr_text()
    assert not client.finish_file.exists()


@pytest.mark.parametrize("args, message", [
    (("--seed", "many"), "expected a whole number"),
    (("--seed", "99999999999"), "must lie within"),
    (("--seed", "1", "--rng-kind", "Dice"), "expected one of"),
])
def test_bad_command_line_fails_clearly_and_touches_nothing(make_client, args, message):
    client = make_client()
    script = client.add_script("1\n")
    before = sorted(p.name for p in client.slot.iterdir())

    assert client.run(*args) == 1

    assert message in client.stderr_text()
    assert script.read_text() == "1\n"
    after = sorted(p.name for p in client.slot.iterdir())
    assert set(after) - set(before) <= {"stderr.txt", "init_data.xml", "boinc_mmap_file"}


def test_missing_script_fails_clearly(make_client):
    client = make_client()
    client.add_input("data.csv", DATA_CSV)

    assert client.run("--seed", "1") == 1

    assert "input script.R is missing" in client.stderr_text()


def test_same_seed_gives_identical_results_and_other_seeds_differ(make_client):
    script = "x <- rnorm(5)\nboinc_for(i, 1:3, x <- c(x, sample(100, 1)))\nx\n"
    runs = {}
    for name, seed in (("a", "11"), ("b", "11"), ("c", "12")):
        client = make_client(name, wu_name=f"wu_{name}", script=script)
        assert client.run("--seed", seed, env={"R_JOB_CHECKPOINT_PERIOD": "0"}) == 0
        runs[name] = client.output("result.rds")

    assert r_identical(runs["a"], runs["b"])
    assert not r_identical(runs["a"], runs["c"])


def test_rng_kind_and_derived_seed(make_client):
    client = make_client(wu_name="wu_kind", script="runif(2)\n")
    assert client.run("--rng-kind", "L'Ecuyer-CMRG") == 0

    stderr = client.stderr_text()
    seed = int(stderr.split(f"{events.SEED} ")[1].split()[0])
    assert "derived from the workunit name" in stderr
    expected = f'RNGkind("L\'Ecuyer-CMRG"); set.seed({seed}); runif(2)'
    assert r_value(f"identical(readRDS(path[1]), {{{expected}}})", client.output("result.rds")) == "TRUE"


def test_warnings_and_messages_go_to_stderr_not_stdout(make_client):
    client = make_client(script='message("note to self")\nx <- as.integer("a")\nprint("out")\n')

    assert client.run("--seed", "1") == 0

    stderr = client.stderr_text()
    assert "note to self" in stderr
    assert "Warning at script.R expression 2 (line 2): NAs introduced by coercion" in stderr
    assert client.output("stdout.txt").read_text() == '[1] "out"\n'


def test_r_killed_by_a_signal_is_a_temporary_exit_until_it_recurs_too_often(make_client):
    client = make_client(script="x <- 1\ntools::pskill(Sys.getpid(), tools::SIGKILL)\nx\n")

    assert client.run("--seed", "1") == 0

    assert client.slot.joinpath("boinc_temporary_exit").read_text().startswith("60\nR was killed by signal 9")
    assert not client.finish_file.exists()
    assert events.TEMPORARY_EXIT in client.stderr_text()

    (client.slot / ".r_job" / "temporary_exits").write_text("5\n")
    assert client.run("--seed", "1") == 1
    assert "giving up" in client.stderr_text()


def test_busy_slot_is_a_temporary_exit(make_client):
    client = make_client(script="1\n")
    with slot_lock(client.slot):  # as if an earlier instance still ran here
        assert client.run("--seed", "1") == 0
    assert client.slot.joinpath("boinc_temporary_exit").exists()
    assert not client.finish_file.exists()
