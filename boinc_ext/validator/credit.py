"""How much credit a validated workunit is worth, and the decaying averages it feeds.

Modes (stock validator flags): `runtime` (--credit_from_runtime, and our default: stock's
default "adaptive" scheme is a large statistical model of app versions and hosts that
this validator does not implement), `wu` (--credit_from_wu) and `none` (--no_credit).
--max_granted_credit caps what one result can get.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from boinc_ext.boinc.xmlutil import XmlError, parse_fragment

COBBLESTONE_SCALE = 200 / 86400e9       # credit per floating-point operation
AVG_CPU_FPOPS = 4.3e9                   # stock's stand-in for a 1e9 (default) flops estimate
DEFAULT_FLOPS_ESTIMATE = 1e9
CREDIT_HALF_LIFE = 7 * 86400.0          # seconds, for expavg_credit
SECONDS_PER_DAY = 86400.0
DEFAULT_MAX_GRANTED_CREDIT = 200 * 1000 * 365.0  # one TeraFLOP-year, stock's default


class CreditMode(enum.Enum):
    RUNTIME = "runtime"
    FROM_WU = "wu"
    NONE = "none"


class CreditConfigError(ValueError):
    """Credit flags that do not go together."""


@dataclass(frozen=True)
class CreditRules:
    mode: CreditMode = CreditMode.RUNTIME
    max_granted_credit: float = DEFAULT_MAX_GRANTED_CREDIT  # 0 = no cap (not with RUNTIME)

    def __post_init__(self):
        if self.max_granted_credit < 0:
            raise CreditConfigError("--max_granted_credit must not be negative")
        if self.mode is CreditMode.RUNTIME and self.max_granted_credit == 0:
            raise CreditConfigError("runtime-based credit needs --max_granted_credit above 0")

    def workunit_credit(self, wu: Mapping[str, Any], valid_results: Sequence[Mapping[str, Any]]) -> float:
        """The credit each valid result of a newly validated workunit gets."""
        if self.mode is CreditMode.NONE:
            return 0.0
        if self.mode is CreditMode.FROM_WU:
            credit = credit_from_workunit(wu)
        else:
            claims = [c for c in (runtime_credit(r, wu["rsc_fpops_bound"]) for r in valid_results)
                      if 0 < c <= self.max_granted_credit]
            credit = low_average(claims) if claims else 0.0
        if self.max_granted_credit and credit > self.max_granted_credit:
            credit = self.max_granted_credit
        return credit


def runtime_credit(result: Mapping[str, Any], rsc_fpops_bound: float) -> float:
    """elapsed_time x flops_estimate in cobblestones; a claim far beyond the workunit's
    FLOP bound is cut to the bound (as stock does)."""
    flops = result["flops_estimate"]
    if flops == DEFAULT_FLOPS_ESTIMATE:
        flops = AVG_CPU_FPOPS
    fpops = flops * result["elapsed_time"]
    if fpops > 2 * rsc_fpops_bound:
        fpops = rsc_fpops_bound
    return fpops * COBBLESTONE_SCALE


def credit_from_workunit(wu: Mapping[str, Any]) -> float:
    """Stock create_work --credit stores the credit in canonical_credit; our create_work
    copies an input template's `<credit>` into xml_doc's `<workunit>`. Either counts."""
    if wu.get("canonical_credit"):
        return float(wu["canonical_credit"])
    return credit_in_xml_doc(wu.get("xml_doc") or "")


def credit_in_xml_doc(xml_doc: bytes | str) -> float:
    text = xml_doc.decode("utf-8", "replace") if isinstance(xml_doc, bytes) else xml_doc
    if "<credit>" not in text:
        return 0.0
    try:
        elements = parse_fragment(text, "workunit xml_doc")
    except XmlError:
        return 0.0
    for element in elements:
        if element.tag == "workunit":
            try:
                value = float((element.findtext("credit") or "0").strip())
            except ValueError:
                return 0.0
            return value if math.isfinite(value) and value > 0 else 0.0
    return 0.0


def low_average(values: Sequence[float]) -> float:
    """A mean in which each value is weighted by the sum of the others, so that one
    outlying high claim counts for little."""
    if len(values) == 1:
        return values[0]
    total = sum(values)
    return sum(v * (total - v) for v in values) / ((len(values) - 1) * total)


def update_average(now: float, work_start_time: float, work: float, avg: float, avg_time: float,
                   half_life: float = CREDIT_HALF_LIFE) -> tuple[float, float]:
    """BOINC's exponentially decaying "work per day" average; returns (avg, avg_time).

    With an existing average, the new work is spread over the time since the last update
    and blended in with a weight that halves the old average every `half_life` seconds.
    The first work sets the average to work per day since the work started."""
    if avg_time:
        elapsed = max(now - avg_time, 0.0)
        weight = math.exp(-elapsed * math.log(2) / half_life)
        avg *= weight
        if 1 - weight > 1e-6:
            avg += (1 - weight) * work / (elapsed / SECONDS_PER_DAY)
        else:  # elapsed ~ 0: the limit of the expression above
            avg += math.log(2) * work * SECONDS_PER_DAY / half_life
    elif work:
        days = (now - work_start_time) / SECONDS_PER_DAY
        avg = work / days if days > 0 else math.log(2) * work * SECONDS_PER_DAY / half_life
    return avg, now
