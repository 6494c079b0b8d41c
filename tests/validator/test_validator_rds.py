"""The rds policy with real .rds files written by Rscript and read through rpy2: R objects
compared within a tolerance, structure, types and NA/NaN, bitwise fallback for other
files, and the stream guard that keeps code-carrying files away from R. Ends with the
daemon using the policy against the real database, and stopping cleanly on SIGTERM."""
import gzip
import shutil
import signal
import subprocess
import sys
import time

import pytest

from boinc_ext.daemons.base import EXIT_OK
from boinc_ext.boinc.states import (
    OUTCOME_VALIDATE_ERROR,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_VALID,
)
from boinc_ext.validator.errors import PermanentValidationError
from boinc_ext.validator.output_files import OutputFile
from boinc_ext.validator.rds_guard import UnsafeRds, check_serialized, decompress_rds

from validator_fixture import Lab

RSCRIPT = shutil.which("Rscript")
pytestmark = pytest.mark.skipif(RSCRIPT is None, reason="Rscript not found: install Debian's r-base-core")

# name -> R expression; each becomes NAME.rds
VALUES = {
    "one": "1", "one_close": "1 * (1 + 1e-12)", "one_off": "1.001",
    "vec": "c(1.5, 2.5, 1e6)", "vec_close": "c(1.5, 2.5, 1e6) * (1 + 1e-11)",
    "int": "1L", "big_int": "100000000L", "big_int_next": "100000001L",
    "list_a": "list(a = 1, b = 'x')", "list_b": "list(b = 1, a = 'x')", "list_a2": "list(a = 1, b = 'y')",
    "mat": "matrix(c(1, 2, 3, 4), 2)", "flat": "c(1, 2, 3, 4)",
    "na": "c(1, NA)", "na_again": "c(1, NA)", "nan": "c(1, NaN)", "two": "c(1, 2)",
    "na_int": "c(1L, NA)", "na_chr": "c('a', NA)", "na_chr2": "c('a', 'NA')",
    "df": "data.frame(x = c(1, 2), f = factor(c('u', 'v')))",
    "df_close": "data.frame(x = c(1, 2) * (1 + 1e-12), f = factor(c('u', 'v')))",
    "df_chr": "data.frame(x = c(1, 2), f = c('u', 'v'))",
    "named": "c(a = 1, b = 2)", "renamed": "c(a = 1, c = 2)",
    "glm": "{set.seed(4); d <- data.frame(x = rnorm(40), y = rbinom(40, 1, .5)); glm(y ~ x, binomial, d)}",
    "glm_again": "{set.seed(4); d <- data.frame(x = rnorm(40), y = rbinom(40, 1, .5)); glm(y ~ x, binomial, d)}",
}
WRITER = """
args <- commandArgs(TRUE); dir <- args[1]
values <- list({values})
for (name in names(values)) saveRDS(values[[name]], file.path(dir, paste0(name, ".rds")))
saveRDS(1, file.path(dir, "xz.rds"), compress = "xz")
saveRDS(1, file.path(dir, "plain.rds"), compress = FALSE)
saveRDS(1, file.path(dir, "ascii.rds"), ascii = TRUE)
e <- new.env(); delayedAssign("x", stop("code ran"), assign.env = e); saveRDS(e, file.path(dir, "promise.rds"))
a <- new.env(); makeActiveBinding("y", function() stop("code ran"), a); saveRDS(a, file.path(dir, "active.rds"))
saveRDS(rnorm(2e5), file.path(dir, "big.rds"))
"""


@pytest.fixture(scope="module")
def rds_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rds")
    values = ",\n".join(f"`{name}` = {expr}" for name, expr in VALUES.items())
    script = directory / "write.R"
    script.write_text(WRITER.format(values=values))
    subprocess.run([RSCRIPT, str(script), str(directory)], check=True, capture_output=True, timeout=120)
    return directory


@pytest.fixture(scope="module")
def policy():
    try:
        from boinc_ext.validator.rds import RdsPolicy
        return RdsPolicy()
    except (ImportError, RuntimeError, OSError) as exc:  # rpy2 missing, or R cannot start embedded
        pytest.skip(f"rpy2 cannot start R here: {exc}")


def load(policy, rds_dir, name, open_name="result.rds"):
    return policy.prepare([OutputFile(f"{name}.rds", open_name, rds_dir / f"{name}.rds")])


def same(policy, rds_dir, a, b):
    return policy.same(load(policy, rds_dir, a), load(policy, rds_dir, b))


@pytest.mark.parametrize("a, b", [("one", "one_close"), ("vec", "vec_close"), ("df", "df_close"),
                                  ("na", "na_again"), ("glm", "glm_again"), ("one", "xz"), ("one", "plain")])
def test_equal_within_tolerance(policy, rds_dir, a, b):
    assert same(policy, rds_dir, a, b)


@pytest.mark.parametrize("a, b", [("one", "one_off"), ("list_a", "list_a2"), ("big_int", "big_int_next")])
def test_different_values(policy, rds_dir, a, b):
    assert not same(policy, rds_dir, a, b)


@pytest.mark.parametrize("a, b", [("one", "int"), ("list_a", "list_b"), ("mat", "flat"), ("df", "df_chr"),
                                  ("named", "renamed"), ("one", "vec")])
def test_different_structure(policy, rds_dir, a, b):
    assert not same(policy, rds_dir, a, b)


@pytest.mark.parametrize("a, b", [("na", "nan"), ("na", "two"), ("na_chr", "na_chr2")])
def test_na_is_only_equal_to_na(policy, rds_dir, a, b):
    assert not same(policy, rds_dir, a, b)
    assert same(policy, rds_dir, "na_int", "na_int") and same(policy, rds_dir, "nan", "nan")


def test_tolerance_option(rds_dir):
    from boinc_ext.validator.rds import RdsPolicy
    loose = RdsPolicy.from_settings({"rel_tolerance": "0.01"})
    assert same(loose, rds_dir, "one", "one_off")
    strict = RdsPolicy.from_settings({"rel_tolerance": "1e-14"})
    assert not same(strict, rds_dir, "one", "one_close")


def test_other_files_are_compared_bitwise(policy, rds_dir, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("x\n1.0\n")
    second.write_text("x\n1.00\n")  # equal as numbers, not as bytes
    handle = policy.prepare([OutputFile("a.csv", "table.csv", first)])
    assert policy.same(handle, policy.prepare([OutputFile("a.csv", "table.csv", first)]))
    assert not policy.same(handle, policy.prepare([OutputFile("b.csv", "table.csv", second)]))


@pytest.mark.parametrize("name, reason", [("promise", "unevaluated promise of a call"),
                                          ("active", "active binding"), ("ascii", "ASCII")])
def test_code_carrying_and_odd_files_are_refused(policy, rds_dir, name, reason):
    with pytest.raises(PermanentValidationError, match=reason):
        load(policy, rds_dir, name)


def test_malformed_files_are_refused(policy, rds_dir, tmp_path):
    raw = decompress_rds(rds_dir / "vec.rds", 1 << 20)
    for what, data in (("truncated", raw[:-3]), ("trailing", raw + b"\x00\x00\x00\xfe"),
                       ("garbage", b"X\n" + b"\xff" * 40)):
        with pytest.raises(UnsafeRds):
            check_serialized(data, what)
    broken = tmp_path / "broken.rds"
    broken.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(PermanentValidationError):
        policy.prepare([OutputFile("broken.rds", "result.rds", broken)])


def test_size_limit(rds_dir):
    from boinc_ext.validator.rds import RdsPolicy
    small = RdsPolicy.from_settings({"max_bytes": "100000"})
    with pytest.raises(PermanentValidationError, match="max_bytes"):
        load(small, rds_dir, "big")


# --- the daemon with the rds policy ---------------------------------------------------------------
@pytest.fixture
def lab(project, project_db, tmp_path):
    return Lab(project, project_db, tmp_path)


def test_daemon_with_rds_policy(lab, rds_dir, policy):
    users = [lab.user() for _ in range(3)]
    hosts = [lab.host(u) for u in users]
    wu_id = lab.workunit("rds_wu", target_nresults=3, max_success_results=3)
    content = {name: (rds_dir / f"{name}.rds").read_bytes() for name in ("df", "df_close", "promise")}
    lab.report("rds_wu_0", hosts[0], {"result.rds": content["df"]})
    lab.report("rds_wu_1", hosts[1], {"result.rds": content["df_close"]})   # other bytes, same value
    lab.report("rds_wu_2", hosts[2], {"result.rds": content["promise"]})
    assert lab.run(policy=policy) == EXIT_OK
    results = lab.results(wu_id)
    assert results["rds_wu_0"]["validate_state"] == VALIDATE_STATE_VALID
    assert results["rds_wu_1"]["validate_state"] == VALIDATE_STATE_VALID
    assert (results["rds_wu_2"]["validate_state"], results["rds_wu_2"]["outcome"]) == (
        VALIDATE_STATE_INVALID, OUTCOME_VALIDATE_ERROR)
    assert lab.wu(wu_id)["canonical_resultid"] == results["rds_wu_0"]["id"]


def test_daemon_with_rds_policy_stops_on_sigterm(project):
    """R runs embedded in the daemon; the daemon's own signal handling must still work."""
    process = subprocess.Popen([sys.executable, "-m", "boinc_ext.validator", "--app", "r_job", "--policy", "rds",
                                "--sleep_interval", "1", "--project_dir", str(project.project_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "policy rds" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        assert "policy rds" in line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == EXIT_OK
    finally:
        if process.poll() is None:
            process.kill()
