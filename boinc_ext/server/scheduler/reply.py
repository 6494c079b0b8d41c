"""The scheduler reply document, laid out as BOINC clients read it.

Values we compute are escaped here; the stored documents (app_version.xml_doc,
workunit.xml_doc, result.xml_doc_in) are our own server-side text and go in verbatim with
the tags stock's scheduler splices into them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from boinc_ext.boinc.xmlutil import escape_text

SCHEDULER_VERSION = 720   # what we say we speak: 7.20


def element(tag: str, value: object) -> str:
    if isinstance(value, float):
        value = f"{value:.6f}"
    return f"<{tag}>{escape_text(str(value))}</{tag}>\n"


@dataclass
class SentJob:
    """What the reply needs for one result sent to the client."""

    result_name: str
    app_name: str
    app_friendly_name: str
    app_version_id: int
    app_version_xml: str           # app_version.xml_doc with platform/flops spliced in
    workunit_xml: str              # workunit.xml_doc with name/app_name/rsc_* spliced in
    result_xml: str                # result.xml_doc_in with name/wu_name/deadline spliced in


@dataclass
class SchedulerReply:
    master_url: str
    project_name: str
    messages: list[tuple[str, str]] = field(default_factory=list)   # (priority, text)
    request_delay: float | None = None
    next_rpc_delay: float | None = None
    project_is_down: bool = False
    user: dict | None = None
    host: dict | None = None
    new_hostid: int | None = None
    team_name: str = ""
    global_prefs: str | None = None
    code_sign_key: str | None = None
    acks: list[str] = field(default_factory=list)
    jobs: list[SentJob] = field(default_factory=list)

    def message(self, text: str, priority: str = "low") -> None:
        self.messages.append((priority, text))

    def render(self) -> bytes:
        out = ["<scheduler_reply>\n", element("scheduler_version", SCHEDULER_VERSION),
               element("master_url", self.master_url), element("project_name", self.project_name)]
        if self.request_delay is not None:
            out.append(element("request_delay", f"{self.request_delay:.0f}"))
        if self.next_rpc_delay is not None:
            out.append(element("next_rpc_delay", f"{self.next_rpc_delay:.0f}"))
        if self.project_is_down:
            out.append("<project_is_down/>\n")
        for priority, text in self.messages:
            out.append(f'<message priority="{priority}">{escape_text(text)}</message>\n')
        out.extend(self._account())
        if self.global_prefs:
            out.append(self.global_prefs.strip() + "\n")
        if self.code_sign_key:
            out.append(f"<code_sign_key>\n{self.code_sign_key.strip()}\n</code_sign_key>\n")
        out.extend(f"<result_ack>\n    <name>{escape_text(name)}</name>\n</result_ack>\n" for name in self.acks)
        out.extend(self._jobs())
        out.append("</scheduler_reply>\n")
        return "".join(out).encode("utf-8")

    def _account(self) -> list[str]:
        out: list[str] = []
        if self.user is not None:
            u = self.user
            out += [element("userid", u["id"]), element("user_name", u["name"] or ""),
                    element("user_total_credit", float(u["total_credit"])),
                    element("user_expavg_credit", float(u["expavg_credit"])),
                    element("user_create_time", u["create_time"]),
                    element("cross_project_id", u["cross_project_id"] or ""),
                    element("team_name", self.team_name)]
        if self.new_hostid is not None:
            out.append(element("hostid", self.new_hostid))
        if self.host is not None:
            h = self.host
            out += [element("host_total_credit", float(h["total_credit"])),
                    element("host_expavg_credit", float(h["expavg_credit"])),
                    element("host_venue", h["venue"] or ""), element("host_create_time", h["create_time"])]
        return out

    def _jobs(self) -> list[str]:
        out: list[str] = []
        apps_done: set[str] = set()
        versions_done: set[int] = set()
        for job in self.jobs:
            if job.app_name not in apps_done:
                apps_done.add(job.app_name)
                out.append(f"<app>\n    {element('name', job.app_name)}"
                           f"    {element('user_friendly_name', job.app_friendly_name)}</app>\n")
            if job.app_version_id not in versions_done:
                versions_done.add(job.app_version_id)
                out.append(job.app_version_xml)
        for job in self.jobs:
            out.append(job.workunit_xml)
            out.append(job.result_xml)
        return out


def splice_after(text: str, marker: str, insert: str) -> str:
    """Inserts `insert` right after the first `marker` (stock's layout puts a newline there)."""
    at = text.find(marker)
    if at < 0:
        raise ValueError(f"stored document lacks {marker!r}")
    at += len(marker)
    return text[:at] + insert + text[at:]


def splice_before_last(text: str, marker: str, insert: str) -> str:
    at = text.rfind(marker)
    if at < 0:
        raise ValueError(f"stored document lacks {marker!r}")
    return text[:at] + insert + text[at:]
