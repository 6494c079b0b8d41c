"""The one base of every daemon of ours: BOINC's flags, the main loop, stopping and logging.

A daemon subclasses `Daemon`, implements `do_pass()` (one transaction per item, calling
`should_stop()` between items) and ends its module with
`if __name__ == "__main__": sys.exit(main_for(TheDaemon))`.

Stopping is two-stage. The first SIGTERM/SIGINT/SIGHUP, or the project's `stop_daemons`
file, lets the current item finish and the daemon exit 0 at its next check. A second
signal raises `DaemonAborted` wherever the daemon is, so the open transaction rolls back,
and the process exits with 128 + the signal number.
"""
from __future__ import annotations

import abc
import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from boinc_ext.boinc.config import ConfigError, ProjectConfig, find_project_dir
from boinc_ext.boinc.db import Database, TransientDbError

EVENT_STARTED = "daemon started"
EVENT_STOPPING = "daemon stopping"
EVENT_STOPPED = "daemon stopped"
EVENT_ABORTED = "daemon aborted"
EVENT_FAILED = "daemon failed"
EVENT_PASS_IDLE = "pass idle"
EVENT_DB_BACKOFF = "database unavailable, backing off"
EVENT_DB_RECOVERED = "database recovered"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_SLEEP_INTERVAL = 5.0
MAX_BACKOFF = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

LOG_DETAIL = 5  # BOINC's level 4 (MSG_DETAIL), below logging.DEBUG
logging.addLevelName(LOG_DETAIL, "DETAIL")
# BOINC's -d levels: 1 critical, 2 normal, 3 debug, 4 detail.
DEBUG_LEVELS = {1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG, 4: LOG_DETAIL}


class DaemonUsageError(ValueError):
    """Bad command-line flags; the message names the flag and what it expects."""


class DaemonConfigError(RuntimeError):
    """The daemon cannot run with this project (for example an unknown --app)."""


class DaemonAborted(BaseException):
    """A second stop signal: leave at once, rolling back the open transaction."""

    def __init__(self, signum: int):
        super().__init__(f"second stop signal ({signal.Signals(signum).name})")
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise DaemonUsageError(f"{self.prog}: {message}")


def _build_parser(prog: str, default_sleep_interval: float,
                  add_arguments: Callable[[argparse.ArgumentParser], None] | None) -> _Parser:
    parser = _Parser(prog=prog, allow_abbrev=False,
                     description="A BOINC daemon; flags may be written -x or --x.")
    parser.add_argument("--one_pass", action="store_true", help="do one pass, then exit")
    parser.add_argument("--sleep_interval", type=float, default=default_sleep_interval, metavar="S",
                        help=f"seconds to sleep when a pass found no work (default {default_sleep_interval:g})")
    parser.add_argument("-d", "--d", "--debug_level", dest="debug_level", type=int, default=2,
                        choices=sorted(DEBUG_LEVELS), metavar="N",
                        help="1 critical, 2 normal, 3 debug, 4 detail (default 2)")
    parser.add_argument("--app", metavar="NAME", help="handle only this app's rows")
    parser.add_argument("--mod", type=int, nargs=2, metavar=("N", "R"),
                        help="handle only rows with id %% N = R")
    parser.add_argument("--project_dir", metavar="DIR", help="the project (default: BOINC's lookup)")
    if add_arguments is not None:
        add_arguments(parser)
    return parser


def _normalise(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """BOINC accepts `-one_pass` as well as `--one_pass`: rewrite the single-dash forms."""
    known = set(parser._option_string_actions)
    result = []
    for arg in argv:
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name not in known and f"-{name}" in known:
            arg = "-" + arg
        result.append(arg)
    return result


def parse_daemon_args(argv: Sequence[str] | None, prog: str,
                      add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                      default_sleep_interval: float = DEFAULT_SLEEP_INTERVAL) -> argparse.Namespace:
    """Parses BOINC's daemon flags (plus the subclass's); raises DaemonUsageError."""
    parser = _build_parser(prog, default_sleep_interval, add_arguments)
    namespace = parser.parse_args(_normalise(sys.argv[1:] if argv is None else argv, parser))
    DaemonOptions.from_namespace(namespace)  # validates
    return namespace


@dataclass(frozen=True)
class DaemonOptions:
    one_pass: bool = False
    sleep_interval: float = DEFAULT_SLEEP_INTERVAL
    debug_level: int = 2
    app: str | None = None
    mod: tuple[int, int] | None = None
    project_dir: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self):
        if not self.sleep_interval > 0:
            raise DaemonUsageError(f"--sleep_interval {self.sleep_interval:g}: must be more than 0 seconds")
        if self.debug_level not in DEBUG_LEVELS:
            raise DaemonUsageError(f"-d {self.debug_level}: must be 1, 2, 3 or 4")
        if self.mod is not None:
            n, r = self.mod
            if n <= 0:
                raise DaemonUsageError(f"--mod {n} {r}: N must be at least 1")
            if not 0 <= r < n:
                raise DaemonUsageError(f"--mod {n} {r}: R must be between 0 and {n - 1}")

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> "DaemonOptions":
        values = dict(vars(namespace))
        own = {name: values.pop(name) for name in
               ("one_pass", "sleep_interval", "debug_level", "app", "mod", "project_dir")}
        if own["mod"] is not None:
            own["mod"] = tuple(own["mod"])
        return cls(**own, extra=MappingProxyType(values))

    @classmethod
    def parse(cls, argv: Sequence[str], prog: str = "daemon", **kwargs) -> "DaemonOptions":
        return cls.from_namespace(parse_daemon_args(argv, prog, **kwargs))


class _ItemLogAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"{self.extra['prefix']} {msg}", kwargs


class Daemon(abc.ABC):
    """Subclasses set `name` and implement `do_pass()`; `run()` is the loop."""

    name: str = "daemon"
    default_sleep_interval: float = DEFAULT_SLEEP_INTERVAL

    def __init__(self, config: ProjectConfig, options: DaemonOptions, database: Database | None = None):
        self.config = config
        self.options = options
        self.log = logging.getLogger(f"boinc_ext.daemon.{self.name}")
        self._db = database
        self._stop_reason: str | None = None
        self._stop_signal: int | None = None
        self._app_id: int | None = None
        self._saved_handlers: dict[int, Any] = {}

    # --- for subclasses -----------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Override to accept flags of the daemon's own; they land in options.extra."""

    @abc.abstractmethod
    def do_pass(self) -> bool:
        """Handles a bounded batch of work; True if it did anything."""

    def close(self) -> None:
        """Override to release the daemon's own resources (the db is closed by run())."""

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database.for_project(self.config)
        return self._db

    def should_stop(self) -> bool:
        """True once a stop signal arrived or the project's stop_daemons file exists."""
        if self._stop_reason is None:
            if self._stop_signal is not None:
                self._stop_reason = f"got {signal.Signals(self._stop_signal).name}"
            elif self.config.stop_daemons_path.exists():
                self._stop_reason = f"trigger file {self.config.stop_daemons_path} is present"
            else:
                return False
            self.log.info("%s: %s", EVENT_STOPPING, self._stop_reason)
        return True

    def mod_clause(self, column: str = "id") -> str:
        """` and mod(id, N) = R` for --mod N R, else "". mod() rather than `%`, which
        MySQLdb would read as a parameter marker."""
        if self.options.mod is None:
            return ""
        n, r = self.options.mod
        return f" and mod({column}, {int(n)}) = {int(r)}"

    def app_clause(self, column: str = "appid") -> str:
        """` and appid = ID` for --app NAME, else ""; an unknown app is a DaemonConfigError."""
        if not self.options.app:
            return ""
        if self._app_id is None:
            with self.db.transaction():
                app_id = self.db.scalar("select id from app where name = %s", (self.options.app,))
            if app_id is None:
                raise DaemonConfigError(f"--app {self.options.app}: no such app in the database")
            self._app_id = int(app_id)
        return f" and {column} = {self._app_id}"

    def item_log(self, kind: str, item_id: int, name: str) -> logging.LoggerAdapter:
        """A logger whose lines start with `[WU#12 name]` / `[RESULT#34 name]`."""
        return _ItemLogAdapter(self.log, {"prefix": f"[{kind}#{item_id} {name}]"})

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> int:
        """Runs until stopped (or one pass with --one_pass); returns the exit code."""
        code = EXIT_FAILED
        self._install_signal_handlers()
        try:
            self.log.info("%s (pid %d, project %s)", EVENT_STARTED, os.getpid(), self.config.project_dir)
            self._loop()
            code = EXIT_OK
        except DaemonAborted as exc:
            self.log.error("%s: %s; any open transaction was rolled back", EVENT_ABORTED, exc)
            code = 128 + exc.signum
        except DaemonConfigError as exc:
            self.log.error("%s: %s", EVENT_FAILED, exc)
        except Exception as exc:
            self.log.exception("%s: %s: %s", EVENT_FAILED, type(exc).__name__, exc)  # PermanentDbError too
        finally:
            self._teardown()
            self.log.info("%s (exit %d)", EVENT_STOPPED, code)
        return code

    def _loop(self) -> None:
        backoff = 0.0
        while not self.should_stop():
            try:
                did_work = self.do_pass()
            except TransientDbError as exc:
                backoff = min(max(1.0, backoff * 2), MAX_BACKOFF)
                self.log.warning("%s: %s; retrying in %g s", EVENT_DB_BACKOFF, exc, backoff)
                self.db.close()
                self._sleep(backoff)
                continue
            if backoff:
                self.log.info("%s", EVENT_DB_RECOVERED)
                backoff = 0.0
            if self.options.one_pass:
                return
            if not did_work:
                self.log.debug("%s: sleeping %g s", EVENT_PASS_IDLE, self.options.sleep_interval)
                self._sleep(self.options.sleep_interval)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(1.0, remaining))

    def _teardown(self) -> None:
        try:
            self.close()
        except Exception:
            self.log.exception("close() failed")
        finally:
            if self._db is not None:
                self._db.close()
            self._restore_signal_handlers()

    # --- signals -----------------------------------------------------------------------
    def _on_signal(self, signum: int, frame) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum  # logged at the next should_stop()
            return
        # From here on a further signal kills the process outright.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        raise DaemonAborted(signum)

    def _install_signal_handlers(self) -> None:
        try:
            for sig in STOP_SIGNALS:
                self._saved_handlers[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: the caller handles signals
            self._restore_signal_handlers()

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved_handlers.clear()


def configure_logging(name: str, debug_level: int = 2, stream=None) -> None:
    """One line per event to stderr: `2026-11-22 10:00:00.123 [name] LEVEL message`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s.%(msecs)03d [{name}] %(levelname)s %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(DEBUG_LEVELS[debug_level])


def main_for(daemon_class: type[Daemon], argv: Sequence[str] | None = None) -> int:
    """Entry point of a daemon module: flags, config, logging, then run()."""
    prog = daemon_class.name
    try:
        options = DaemonOptions.from_namespace(parse_daemon_args(
            argv, prog, daemon_class.add_arguments, daemon_class.default_sleep_interval))
    except DaemonUsageError as exc:
        print(exc, file=sys.stderr)
        print(f"run `{prog} --help` for the flags", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(prog, options.debug_level)
    try:
        config = ProjectConfig.load(find_project_dir(options.project_dir))
    except ConfigError as exc:
        logging.getLogger(f"boinc_ext.daemon.{prog}").error("%s: %s", EVENT_FAILED, exc)
        return EXIT_FAILED
    try:
        return daemon_class(config, options).run()
    except DaemonAborted as exc:  # a second signal during teardown
        return 128 + exc.signum
