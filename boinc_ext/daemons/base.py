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
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from boinc_ext.boinc.config import ConfigError, ProjectConfig, find_project_dir
from boinc_ext.boinc.db import Database, TransientDbError
from boinc_ext.daemons.options import DEBUG_LEVELS, DaemonOptions, DaemonUsageError
from boinc_ext.daemons.stopping import DaemonAborted, StopControl

EVENT_STARTED = "daemon started"
EVENT_STOPPED = "daemon stopped"
EVENT_ABORTED = "daemon aborted"
EVENT_FAILED = "daemon failed"
EVENT_PASS_IDLE = "pass idle"
EVENT_DB_BACKOFF = "database unavailable, backing off"
EVENT_DB_RECOVERED = "database recovered"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

MAX_BACKOFF = 60.0



class DaemonConfigError(RuntimeError):
    """The daemon cannot run with this project (for example an unknown --app)."""


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
