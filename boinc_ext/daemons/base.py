"""The one base of every daemon of ours: BOINC's flags, the main loop, stopping and logging.

A daemon subclasses `Daemon`, implements `do_pass()` (one transaction per item, calling
`should_stop()` between items) and ends its module with
`if __name__ == "__main__": sys.exit(main_for(TheDaemon))`. Its own flags are the fields
of a frozen `DaemonOptions` subclass named by `options_class`: each field's default is
written there once, with `option(default, flag(...))` giving its command-line flag(s).
Work done once (keys, policies, templates) goes in `setup()`, released in `teardown()`.

Stopping is two-stage (`StopControl`, shared with the embedded server's process). The
first SIGTERM/SIGINT/SIGHUP, or the project's `stop_daemons` file, lets the current item
finish and the daemon exit 0 at its next check. A second signal raises `DaemonAborted`
wherever the daemon is, so the open transaction rolls back, and the process exits with
128 + the signal number.
"""
from __future__ import annotations

import abc
import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
STOP_FILE_POLL = 1.0  # seconds between looks for the stop_daemons file while sleeping

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


# --- two-stage stop -----------------------------------------------------------------------
class StopControl:
    """The two-stage stop of every long-running process of ours.

    `install()` takes SIGTERM/SIGINT/SIGHUP (from the main thread; elsewhere the caller
    handles signals). `should_stop()` is True once a first signal arrived or `stop_file`
    exists, logging why once. A second signal raises DaemonAborted in the main thread,
    and any further one kills the process outright.
    """

    def __init__(self, stop_file: Path | None, log: logging.Logger):
        self.stop_file = stop_file
        self.log = log
        self.reason: str | None = None
        self._signum: int | None = None
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        try:
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: the caller handles signals
            self.restore()

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()

    def should_stop(self) -> bool:
        if self.reason is None:
            if self._signum is not None:
                self.reason = f"got {signal.Signals(self._signum).name}"
            elif self.stop_file is not None and self.stop_file.exists():
                self.reason = f"trigger file {self.stop_file} is present"
            else:
                return False
            self.log.info("%s: %s", EVENT_STOPPING, self.reason)
        return True

    def sleep(self, seconds: float) -> None:
        """Sleeps `seconds`, or less when told to stop (a signal cuts a short nap short)."""
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(STOP_FILE_POLL, remaining))

    def _on_signal(self, signum: int, frame) -> None:
        if self._signum is None:
            self._signum = signum  # logged at the next should_stop()
            return
        # From here on a further signal kills the process outright.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        raise DaemonAborted(signum)


# --- typed options ------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse names the flag)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number of at least 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number more than 0")
    return value


@dataclass(frozen=True)
class Flag:
    """One argparse argument of an option field; no names means `--<field name>`."""

    names: tuple[str, ...]
    kwargs: dict[str, Any]


def flag(*names: str, **argparse_kwargs) -> Flag:
    return Flag(names, argparse_kwargs)


def option(default: Any, *flags: Flag) -> Any:
    """A field of an options dataclass: its default (written here, nowhere else) and its
    flag(s), `--<field name>` if none is given; several flags set the same field and
    exclude each other (say `--credit_from_wu` | `--no_credit`). A bool defaulting to
    False with no action is a store_true flag."""
    return field(default=default, metadata={"flags": flags or (flag(),)})


def sleep_interval_option(default: float) -> Any:
    """A daemon's --sleep_interval with its own default."""
    return option(default, flag(type=float, metavar="S",
                                help=f"seconds to sleep when a pass found no work (default {default:g})"))


def one_pass_n_wu_option(verb: str) -> Any:
    """Stock's --one_pass_N_WU N: handle at most N workunits, then exit."""
    return option(None, flag("--one_pass_N_WU", type=positive_int, metavar="N",
                             help=f"{verb} at most N workunits, then exit"))


def dry_run_option(*names: str, help: str) -> Any:
    """A dry run: decide and log, but leave the database unchanged."""
    return option(False, flag(*names, help=help))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise DaemonUsageError(f"{self.prog}: {message}")


def _add_flags(parser: argparse.ArgumentParser, options_field: dataclasses.Field) -> None:
    flags = options_field.metadata.get("flags", ())
    target = parser.add_mutually_exclusive_group() if len(flags) > 1 else parser
    for spec in flags:
        kwargs = dict(spec.kwargs)
        if options_field.default is False and "action" not in kwargs:
            kwargs["action"] = "store_true"
        # Absent flags leave the field to its dataclass default.
        target.add_argument(*(spec.names or (f"--{options_field.name}",)), dest=options_field.name,
                            default=argparse.SUPPRESS, **kwargs)


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


@dataclass(frozen=True)
class DaemonOptions:
    """BOINC's flags of every daemon; a daemon's own options subclass this."""

    one_pass: bool = option(False, flag(help="do one pass, then exit"))
    sleep_interval: float = sleep_interval_option(DEFAULT_SLEEP_INTERVAL)
    debug_level: int = option(2, flag("-d", "--d", "--debug_level", type=int, choices=sorted(DEBUG_LEVELS),
                                      metavar="N", help="1 critical, 2 normal, 3 debug, 4 detail (default 2)"))
    app: str | None = option(None, flag(metavar="NAME", help="handle only this app's rows"))
    mod: tuple[int, int] | None = option(None, flag(type=int, nargs=2, metavar=("N", "R"),
                                                    help="handle only rows with id %% N = R"))
    project_dir: str | None = option(None, flag(metavar="DIR", help="the project (default: BOINC's lookup)"))

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

    @property
    def runs_once(self) -> bool:
        """True if the daemon ends after one pass (subclasses add their debugging runs)."""
        return self.one_pass

    @classmethod
    def parser(cls, prog: str = "daemon") -> argparse.ArgumentParser:
        parser = _Parser(prog=prog, allow_abbrev=False,
                         description="A BOINC daemon; flags may be written -x or --x.")
        for options_field in dataclasses.fields(cls):
            _add_flags(parser, options_field)
        return parser

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> "DaemonOptions":
        values = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in vars(namespace).items()}
        return cls(**values)

    @classmethod
    def parse(cls, argv: Sequence[str] | None, prog: str = "daemon") -> "DaemonOptions":
        """Parses and validates the flags; raises DaemonUsageError naming a bad one."""
        parser = cls.parser(prog)
        return cls.from_namespace(parser.parse_args(_normalise(sys.argv[1:] if argv is None else argv, parser)))

    @classmethod
    def from_base(cls, options: "DaemonOptions") -> "DaemonOptions":
        """These base options, the rest of cls's at their defaults."""
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(DaemonOptions)})


def parse_daemon_args(argv: Sequence[str] | None, prog: str,
                      options_class: type[DaemonOptions] = DaemonOptions) -> DaemonOptions:
    """Parses BOINC's daemon flags plus the daemon's own; raises DaemonUsageError."""
    return options_class.parse(argv, prog)


_STOPPED = object()  # what _retrying() returns when told to stop while backing off


class _ItemLogAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"{self.extra['prefix']} {msg}", kwargs


class Daemon(abc.ABC):
    """Subclasses set `name` (and `options_class`), implement `do_pass()` and may
    override `setup()` / `teardown()`; `run()` is the loop."""

    name: str = "daemon"
    options_class: ClassVar[type[DaemonOptions]] = DaemonOptions

    def __init__(self, config: ProjectConfig, options: DaemonOptions | None = None,
                 database: Database | None = None):
        self.config = config
        self.options = self._own_options(options)
        self.log = logging.getLogger(f"boinc_ext.daemon.{self.name}")
        self._db = database
        self.stop = StopControl(config.stop_daemons_path if config is not None else None, self.log)
        self.app_id: int | None = None

    @classmethod
    def _own_options(cls, options: DaemonOptions | None) -> DaemonOptions:
        if options is None:
            return cls.options_class()
        if isinstance(options, cls.options_class):
            return options
        if type(options) is DaemonOptions:
            return cls.options_class.from_base(options)
        raise TypeError(f"{cls.__name__} takes {cls.options_class.__name__}, not {type(options).__name__}")

    # --- for subclasses -----------------------------------------------------------------
    def setup(self) -> None:
        """Work done once before the first pass: keys, policies, templates, app ids.
        A failure ends the daemon (EVENT_FAILED); a lost database is retried as a pass is.
        Overrides call super().setup() first."""
        if self.options.app:
            with self.db.transaction():
                app_id = self.db.scalar("select id from app where name = %s", (self.options.app,))
            if app_id is None:
                raise DaemonConfigError(f"--app {self.options.app}: no such app in the database")
            self.app_id = int(app_id)

    @abc.abstractmethod
    def do_pass(self) -> bool:
        """Handles a bounded batch of work; True if it did anything."""

    def teardown(self) -> None:
        """Releases the daemon's own resources; runs even when setup() failed
        (the db is closed by run())."""

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database.for_project(self.config)
        return self._db

    def should_stop(self) -> bool:
        """True once a stop signal arrived or the project's stop_daemons file exists."""
        return self.stop.should_stop()

    def mod_clause(self, column: str = "id") -> str:
        """` and mod(id, N) = R` for --mod N R, else "". mod() rather than `%`, which
        MySQLdb would read as a parameter marker."""
        if self.options.mod is None:
            return ""
        n, r = self.options.mod
        return f" and mod({column}, {int(n)}) = {int(r)}"

    def app_clause(self, column: str = "appid") -> str:
        """` and appid = ID` for --app NAME (looked up by setup()), else ""."""
        if not self.options.app:
            return ""
        if self.app_id is None:
            raise RuntimeError("app_clause() before setup()")
        return f" and {column} = {self.app_id}"

    def item_log(self, kind: str, item_id: int, name: str) -> logging.LoggerAdapter:
        """A logger whose lines start with `[WU#12 name]` / `[RESULT#34 name]`."""
        return _ItemLogAdapter(self.log, {"prefix": f"[{kind}#{item_id} {name}]"})

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> int:
        """setup(), then passes until stopped (or one pass), then teardown(); the exit code."""
        code = EXIT_FAILED
        self.stop.install()
        try:
            self.log.info("%s (pid %d, project %s)", EVENT_STARTED, os.getpid(),
                          self.config.project_dir if self.config is not None else None)
            if self._retrying(self.setup) is not _STOPPED:
                self._loop()
            code = EXIT_OK
        except DaemonAborted as exc:
            self.log.error("%s: %s; any open transaction was rolled back", EVENT_ABORTED, exc)
            code = 128 + exc.signum
        except (DaemonConfigError, ConfigError) as exc:
            self.log.error("%s: %s", EVENT_FAILED, exc)
        except Exception as exc:
            self.log.exception("%s: %s: %s", EVENT_FAILED, type(exc).__name__, exc)  # PermanentDbError too
        finally:
            self._teardown()
            self.log.info("%s (exit %d)", EVENT_STOPPED, code)
        return code

    def _loop(self) -> None:
        while not self.should_stop():
            did_work = self._retrying(self.do_pass)
            if did_work is _STOPPED or self.options.runs_once:
                return
            if not did_work:
                self.log.debug("%s: sleeping %g s", EVENT_PASS_IDLE, self.options.sleep_interval)
                self.stop.sleep(self.options.sleep_interval)

    def _retrying(self, step: Callable[[], Any]) -> Any:
        """`step()`, again and again while the database is lost (backing off); its result,
        or _STOPPED if told to stop first."""
        backoff = 0.0
        while not self.should_stop():
            try:
                result = step()
            except TransientDbError as exc:
                backoff = min(max(1.0, backoff * 2), MAX_BACKOFF)
                self.log.warning("%s: %s; retrying in %g s", EVENT_DB_BACKOFF, exc, backoff)
                self.db.close()
                self.stop.sleep(backoff)
                continue
            if backoff:
                self.log.info("%s", EVENT_DB_RECOVERED)
            return result
        return _STOPPED

    def _teardown(self) -> None:
        try:
            self.teardown()
        except Exception:
            self.log.exception("teardown() failed")
        finally:
            if self._db is not None:
                self._db.close()
            self.stop.restore()


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
        options = daemon_class.options_class.parse(argv, prog)
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
