"""The wrapper's program: one BOINC task of the r_job app, from slot to finish file.

Run by the client with the slot as working directory and the workunit's command line
(`--seed N [--rng-kind KIND]`); without init_data.xml it runs standalone in the current
directory. Exit codes follow the client's rules (see wrapper.finish).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import WRAPPER_VERSION, events
from .client_session import ClientSession, StandaloneSession
from .command_line import JobOptions, parse_job_options
from .confinement import Confinement, choose_confinement
from .errors import PermanentError, RKilled, StopSignal, TransientError
from .finish import (EXIT_ABORTED_BY_CLIENT, EXIT_FAILURE, EXIT_SUCCESS, STATUS_READ_WAIT,
                     slot_lock, wait_until, write_finish_file, write_temporary_exit_file)
from .init_data import InitData, load_init_data
from .logs import configure_logging
from .r_process import RProcess
from .slot_layout import SCRIPT_NAME, SlotLayout
from .supervisor import Outcome, RunResult, Supervisor

log = logging.getLogger("wrapper")

CHECKPOINT_PERIOD_ENV = "R_JOB_CHECKPOINT_PERIOD"  # seconds; overrides the client's (tests)
RSCRIPT_ENV = "R_JOB_RSCRIPT"
MAX_TEMPORARY_EXITS = 5  # then a recurring "temporary" failure fails the task
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    argv = sys.argv[1:] if argv is None else argv
    try:
        with _stop_signals_raise():
            return run_task(Path.cwd(), argv)
    except StopSignal as stop:
        log.warning("%s (%s): R stopped", events.SIGNALLED, signal.Signals(stop.signum).name)
        _die_of(stop.signum)
        return 128 + stop.signum


def run_task(slot: Path, argv: list[str]) -> int:
    try:
        init = load_init_data(slot)
        options = parse_job_options(argv, init.wu_name if init else "")
        _log_start(slot, init, options)
        layout = SlotLayout.for_slot(slot)
        try:
            with slot_lock(slot), _open_session(init, slot) as session:
                return _run_in_session(layout, init or InitData(), options, session)
        except (TransientError, OSError) as exc:
            return _temporary_exit(layout, exc)
    except PermanentError as exc:
        log.error("%s: %s", events.FAILED, exc)
        return EXIT_FAILURE


def _run_in_session(layout: SlotLayout, init: InitData, options: JobOptions, session) -> int:
    inputs = layout.find_inputs(init.app_files)
    layout.prepare(inputs)
    rscript = _find_rscript()
    confinement = choose_confinement(layout, inputs, init.boinc_dir, rscript)
    _log_confinement(confinement)
    period = _checkpoint_period(init)

    def command(status_fd: int) -> list[str]:
        return confinement.wrap(_r_command(rscript, layout, inputs[SCRIPT_NAME], options, period,
                                           status_fd))

    with RProcess(command, cwd=str(layout.work_dir), env=_r_environment(init, confinement)) as r:
        log.info("%s (pid %d, checkpoint period %g s)", events.R_STARTED, r.pid, period)
        supervisor = Supervisor(r, session, wu_cpu_time=init.wu_cpu_time,
                                confined=confinement.confined)
        result = supervisor.run()
        return _conclude(result, layout, session, supervisor)


def _conclude(result: RunResult, layout: SlotLayout, session, supervisor: Supervisor) -> int:
    outcome = result.outcome
    if outcome is Outcome.FINISHED:
        return _finish(layout, session, supervisor)
    if outcome is Outcome.SCRIPT_FAILED:
        log.error("%s: %s", events.SCRIPT_FAILED, result.detail)
        return EXIT_FAILURE
    if outcome is Outcome.R_KILLED:
        raise RKilled(result.detail)
    if outcome is Outcome.ABORTED:
        return EXIT_ABORTED_BY_CLIENT
    return EXIT_SUCCESS  # QUIT or CLIENT_GONE: no finish file, so the task restarts


def _finish(layout: SlotLayout, session, supervisor: Supervisor) -> int:
    written = layout.copy_outputs()
    log.info("%s: %s", events.OUTPUTS_WRITTEN, ", ".join(f"{n} -> {p}" for n, p in written.items()))
    session.report_final_status(supervisor.cpu_time(), supervisor.checkpoint_cpu_time)
    wait_until(session.status_read, STATUS_READ_WAIT)
    write_finish_file(layout.slot)
    layout.checkpoint.unlink(missing_ok=True)  # done: a later run in this directory starts afresh
    log.info(events.FINISHED)
    return EXIT_SUCCESS


def _temporary_exit(layout: SlotLayout, exc: Exception) -> int:
    count = _count_temporary_exit(layout)
    if count > MAX_TEMPORARY_EXITS:
        log.error("%s: %s (temporary failure number %d, giving up)", events.FAILED, exc, count)
        return EXIT_FAILURE
    log.warning("%s: %s", events.TEMPORARY_EXIT, exc)
    write_temporary_exit_file(layout.slot, str(exc))
    return EXIT_SUCCESS


def _count_temporary_exit(layout: SlotLayout) -> int:
    try:
        count = int(layout.temporary_exits.read_text() or 0) + 1
    except (OSError, ValueError):
        count = 1
    try:
        layout.temporary_exits.write_text(f"{count}\n")
    except OSError:
        pass
    return count


@contextmanager
def _open_session(init: InitData | None, slot: Path) -> Iterator[object]:
    session = ClientSession(init, slot) if init else StandaloneSession()
    try:
        yield session
    finally:
        session.close()


def _r_command(rscript: str, layout: SlotLayout, script: Path, options: JobOptions, period: float,
               status_fd: int) -> list[str]:
    return [rscript, "--vanilla", str(layout.driver),
            f"--script={script}", f"--checkpoint={layout.checkpoint}", f"--result={layout.result}",
            f"--stdout={layout.stdout}", f"--seed={options.seed}", f"--rng-kind={options.rng_kind}",
            f"--checkpoint-period={period:g}", f"--status-file=/dev/fd/{status_fd}"]


def _r_environment(init: InitData, confinement: Confinement) -> dict[str, str]:
    env = dict(os.environ)
    if confinement.confined:
        env["TMPDIR"] = "/tmp"  # the sandbox's private tmpfs; anything else is read-only there
    threads = str(max(1, int(init.ncpus)))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    return env


def _find_rscript() -> str:
    rscript = os.environ.get(RSCRIPT_ENV) or shutil.which("Rscript")
    if not rscript:
        raise PermanentError("Rscript not found: this host needs R installed to run r_job tasks")
    return rscript


def _checkpoint_period(init: InitData) -> float:
    text = os.environ.get(CHECKPOINT_PERIOD_ENV)
    if text is None:
        return init.checkpoint_period
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        log.warning("ignoring %s=%r: expected seconds >= 0", CHECKPOINT_PERIOD_ENV, text)
        return init.checkpoint_period
    return value


def _log_start(slot: Path, init: InitData | None, options: JobOptions) -> None:
    if init:
        log.info("%s: r_job wrapper %s, workunit %s, result %s, slot %s", events.STARTED,
                 WRAPPER_VERSION, init.wu_name, init.result_name, slot)
    else:
        log.info("%s: r_job wrapper %s", events.STARTED, WRAPPER_VERSION)
        log.info(events.STANDALONE)
    origin = "derived from the workunit name" if options.seed_derived else "from the command line"
    log.info("%s %d (%s), RNG kind %s", events.SEED, options.seed, origin, options.rng_kind)
    if options.ignored:
        log.warning("ignoring unknown arguments: %s", " ".join(options.ignored))


def _log_confinement(confinement: Confinement) -> None:
    if confinement.confined:
        log.info("%s: no network, only the task's state directory writable", events.CONFINED)
    else:
        log.warning("%s: %s", events.UNCONFINED, confinement.reason)


@contextmanager
def _stop_signals_raise() -> Iterator[None]:
    def raise_stop(signum, _frame):
        raise StopSignal(signum)

    previous = {signum: signal.signal(signum, raise_stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _die_of(signum: int) -> None:
    """Ends the process by the signal it got, so the client sees what really happened."""
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    sys.exit(main())
