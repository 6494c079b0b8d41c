"""Why a workunit failed, in words: its error_mask bits and what its failed tasks wrote to stderr.

A task's stderr_out is what the client reported: a `<core_client_version>` line, then
(inside CDATA) an optional `<message>` (the client's own words, e.g. the exit code) and
`<stderr_txt>` (the app's stderr, where R's error message is).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from boinc_ext.boinc.states import (OUTCOME_CLIENT_ERROR, OUTCOME_VALIDATE_ERROR, WU_ERROR_CANCELLED,
                      WU_ERROR_COULDNT_SEND_RESULT, WU_ERROR_NO_CANONICAL_RESULT, WU_ERROR_TOO_MANY_ERROR_RESULTS,
                      WU_ERROR_TOO_MANY_SUCCESS_RESULTS, WU_ERROR_TOO_MANY_TOTAL_RESULTS)

ERROR_MASK_TEXT = {
    WU_ERROR_COULDNT_SEND_RESULT: "a task could not be sent to any computer",
    WU_ERROR_TOO_MANY_ERROR_RESULTS: "too many tasks failed",
    WU_ERROR_TOO_MANY_SUCCESS_RESULTS: "too many tasks finished without agreeing on a result",
    WU_ERROR_TOO_MANY_TOTAL_RESULTS: "too many tasks were needed in all",
    WU_ERROR_CANCELLED: "the workunit was cancelled",
    WU_ERROR_NO_CANONICAL_RESULT: "no valid result",
}
MAX_REPORTED_TASKS = 5
MAX_STDERR_CHARS = 4000   # per task: the end, where R's error message is

_MESSAGE = re.compile(r"<message>(.*?)</message>", re.DOTALL)
_STDERR_TXT = re.compile(r"<stderr_txt>(.*?)(?:</stderr_txt>|$)", re.DOTALL)
_CORE_VERSION = re.compile(r"<core_client_version>.*?</core_client_version>", re.DOTALL)
_CDATA = re.compile(r"<!\[CDATA\[|\]\]>")


def describe_error_mask(mask: int) -> str:
    parts = [text for bit, text in ERROR_MASK_TEXT.items() if mask & bit]
    unknown = mask & ~sum(ERROR_MASK_TEXT)
    if unknown:
        parts.append(f"unknown error bits {unknown}")
    return "; ".join(parts) or "no error bits set"


def task_stderr(stderr_out: bytes | str | None) -> str:
    """The client's message and the app's stderr from a result's stderr_out, as plain text."""
    if isinstance(stderr_out, bytes):
        stderr_out = stderr_out.decode("utf-8", errors="replace")
    text = stderr_out or ""
    parts = [m.strip() for m in _MESSAGE.findall(text)] + [m.strip("\n") for m in _STDERR_TXT.findall(text)]
    if not parts:  # not the client's layout: keep all of it but the wrapping
        parts = [_CDATA.sub("", _CORE_VERSION.sub("", text)).strip()]
    return "\n".join(p for p in parts if p)


def failure_message(wu: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """A user-readable account of a failed workunit; R's error message is in it."""
    lines = [f"workunit {wu['name']} failed: {describe_error_mask(wu['error_mask'])} "
             f"(error_mask {wu['error_mask']})"]
    seen: dict[str, str] = {}
    failed = [r for r in results if r["outcome"] in (OUTCOME_CLIENT_ERROR, OUTCOME_VALIDATE_ERROR)]
    for result in failed[:MAX_REPORTED_TASKS]:
        lines.append("")
        lines.append(f"task {result['name']}: {_outcome_text(result)}")
        stderr = _tail(task_stderr(result["stderr_out"]))
        if not stderr:
            continue
        if stderr in seen:
            lines.append(f"(stderr as for {seen[stderr]})")
        else:
            seen[stderr] = result["name"]
            lines.append(stderr)
    if len(failed) > MAX_REPORTED_TASKS:
        lines.append(f"\n({len(failed) - MAX_REPORTED_TASKS} more failed tasks not shown)")
    return "\n".join(lines)


def _outcome_text(result: dict[str, Any]) -> str:
    if result["outcome"] == OUTCOME_VALIDATE_ERROR:
        return "its output could not be validated"
    return f"failed on the volunteer's computer (exit status {result['exit_status']})"


def _tail(text: str) -> str:
    return text if len(text) <= MAX_STDERR_CHARS else "…" + text[-MAX_STDERR_CHARS:]
