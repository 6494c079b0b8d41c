"""A daemon's flags as a frozen dataclass: BOINC's own (`DaemonOptions`) plus each daemon's.

Each field's default is written once, in the dataclass; `option(default, flag(...))`
gives its command-line flag(s), from which the argparse parser is generated. BOINC's
single-dash spellings (`-one_pass`) are accepted as well as `--one_pass`.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SLEEP_INTERVAL = 5.0

LOG_DETAIL = 5  # BOINC's level 4 (MSG_DETAIL), below logging.DEBUG
logging.addLevelName(LOG_DETAIL, "DETAIL")
# BOINC's -d levels: 1 critical, 2 normal, 3 debug, 4 detail.
DEBUG_LEVELS = {1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG, 4: LOG_DETAIL}


class DaemonUsageError(ValueError):
    """Bad command-line flags; the message names the flag and what it expects."""


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
