"""How outputs are compared: the pluggable policy interface and the policy registry.

A policy turns one result's output files into a handle (`prepare`, called once per result
and workunit) and says whether two handles agree (`same`, which must be symmetric). It
raises TransientValidationError or PermanentValidationError (errors.py) when it cannot.
Policies compare outputs only: no database, no HTTP.

`--policy` takes a built-in name (`bitwise`, `rds`) or `package.module:ClassName` for a
project's own policy (stock BOINC links its validator with project hooks; we import them).
Built-in policy modules are imported only when chosen, so that the daemon starts without
R when R is not needed.
"""
from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from boinc_ext.validator.errors import PolicyConfigError
from boinc_ext.validator.output_files import OutputFile

BUILTIN_POLICIES = {
    "bitwise": "boinc_ext.validator.bitwise:BitwisePolicy",
    "rds": "boinc_ext.validator.rds:RdsPolicy",
}
DEFAULT_POLICY = "bitwise"


class ValidationPolicy(abc.ABC):
    """Subclasses set `name` and `settings` (the option names they accept, with their
    parsers) and implement `prepare` and `same`."""

    name: ClassVar[str] = "policy"
    # option name -> function turning the option's text into its value
    settings: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **options: Any):
        self.options = options

    @classmethod
    def from_settings(cls, raw: Mapping[str, str]) -> ValidationPolicy:
        """Builds the policy from option texts; unknown names and bad values are refused."""
        values = {}
        for key, text in raw.items():
            parse = cls.settings.get(key)
            if parse is None:
                known = ", ".join(sorted(cls.settings)) or "none"
                raise PolicyConfigError(f"policy {cls.name}: unknown option {key!r} (it takes: {known})")
            try:
                values[key] = parse(text)
            except (TypeError, ValueError) as exc:
                raise PolicyConfigError(f"policy {cls.name}: option {key}={text!r}: {exc}") from None
        return cls(**values)

    @abc.abstractmethod
    def prepare(self, files: Sequence[OutputFile]) -> Any:
        """Reads one result's output files into something `same` can compare."""

    @abc.abstractmethod
    def same(self, a: Any, b: Any) -> bool:
        """Whether two prepared results agree. Must be symmetric."""

    def release(self, handle: Any) -> None:
        """Frees what `prepare` holds; called once the workunit is decided."""


def load_policy(spec: str, raw_settings: Mapping[str, str] | None = None) -> ValidationPolicy:
    """The policy named by `spec` (a built-in name or `module:Class`), configured."""
    target = BUILTIN_POLICIES.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise PolicyConfigError(f"--policy {spec}: use {', '.join(BUILTIN_POLICIES)} "
                                f"or package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyConfigError(f"--policy {spec}: cannot import {module_name}: {exc}") from None
    policy_class = getattr(module, class_name, None)
    if not (isinstance(policy_class, type) and issubclass(policy_class, ValidationPolicy)):
        raise PolicyConfigError(f"--policy {spec}: {class_name} is not a ValidationPolicy in {module_name}")
    return policy_class.from_settings(raw_settings or {})


def compare_by_name(a: Mapping[str, Any], b: Mapping[str, Any], same_value) -> bool:
    """Two {open name: value} maps agree when they have the same names and each pair agrees."""
    if a.keys() != b.keys():
        return False
    return all(same_value(a[name], b[name]) for name in a)
