"""The job's command line: `--seed N [--rng-kind KIND]` (docs/r_job.md)."""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass

from .errors import BadCommandLine

DEFAULT_RNG_KIND = "Mersenne-Twister"
# R's RNGkind() kinds a job may choose (not "user-supplied", which needs compiled code).
RNG_KINDS = ("Wichmann-Hill", "Marsaglia-Multicarry", "Super-Duper", "Mersenne-Twister",
             "Knuth-TAOCP", "Knuth-TAOCP-2002", "L'Ecuyer-CMRG")
MAX_SEED = 2**31 - 1  # set.seed() takes an R integer


@dataclass(frozen=True)
class JobOptions:
    seed: int
    rng_kind: str
    seed_derived: bool  # no --seed: derived from the workunit name
    ignored: tuple[str, ...]  # arguments we do not know (logged, not fatal)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise BadCommandLine(f"command line: {message}")


def _parser() -> _Parser:
    parser = _Parser(prog="r_job", add_help=False, allow_abbrev=False)
    parser.add_argument("--seed", type=_seed)
    parser.add_argument("--rng-kind", "--rng_kind", dest="rng_kind", default=DEFAULT_RNG_KIND,
                        type=_rng_kind)
    return parser


def _seed(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed {text!r}: expected a whole number") from None
    if abs(value) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"--seed {value}: must lie within ±{MAX_SEED}")
    return value


def _rng_kind(text: str) -> str:
    if text not in RNG_KINDS:
        raise argparse.ArgumentTypeError(f"--rng-kind {text!r}: expected one of {', '.join(RNG_KINDS)}")
    return text


def derived_seed(wu_name: str) -> int:
    """A seed every replica of the workunit derives alike: md5 of its name."""
    return int(hashlib.md5(wu_name.encode()).hexdigest()[:8], 16) % MAX_SEED


def parse_job_options(argv: list[str], wu_name: str) -> JobOptions:
    namespace, unknown = _parser().parse_known_args(argv)
    if namespace.seed is None:
        return JobOptions(derived_seed(wu_name or "standalone"), namespace.rng_kind, True, tuple(unknown))
    return JobOptions(namespace.seed, namespace.rng_kind, False, tuple(unknown))
