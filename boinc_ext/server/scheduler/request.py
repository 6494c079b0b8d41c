"""A scheduler request from a BOINC client, parsed into plain values.

Clients are parsed leniently (unknown elements are ignored, missing numbers are 0) but
nothing they send is trusted: the document size is bounded by the caller, the parser never
expands entities, and every string that reaches the database is length-limited.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from boinc_ext.boinc.xmlutil import XmlError, child_text, escape_text, flag, parse_xml, serialize

MAX_REQUEST_BYTES = 16 * 1024 * 1024   # 64 reports with 64 KB of stderr each fit comfortably
MAX_REPORTED_RESULTS = 1000
STDERR_LIMIT = 65535                   # result.stderr_out is a 64 KB blob
XML_DOC_OUT_LIMIT = 65535
VARCHAR_LIMIT = 254

# host_info / time_stats / net_stats / disk_usage element -> host column (all doubles or ints).
HOST_NUMBERS = {
    "host_info": ("timezone", "p_ncpus", "p_fpops", "p_iops", "p_membw", "m_nbytes", "m_cache",
                  "m_swap", "d_total", "d_free"),
    "time_stats": ("on_frac", "connected_frac", "active_frac", "gpu_active_frac"),
}
HOST_STRINGS = ("domain_name", "p_vendor", "p_model", "os_name", "os_version", "product_name")


class BadRequest(XmlError):
    """The request cannot be handled at all (malformed, oversized, not a scheduler request)."""


@dataclass(frozen=True)
class ReportedResult:
    name: str
    state: int
    exit_status: int
    cpu_time: float
    elapsed_time: float
    app_version_num: int
    peak_working_set_size: float
    peak_swap_size: float
    peak_disk_usage: float
    stderr_out: str
    xml_doc_out: str


@dataclass(frozen=True)
class SchedulerRequest:
    authenticator: str = field(repr=False)
    hostid: int
    rpc_seqno: int
    platforms: tuple[str, ...]
    work_req_seconds: float
    cpu_req_instances: float
    dont_send_work: bool
    has_code_sign_key: bool
    client_version: int                  # major*10000 + minor*100 + release
    prefs_mod_time: float
    host_cpid: str
    host_values: dict = field(default_factory=dict)   # host columns from host_info etc.
    results: tuple[ReportedResult, ...] = ()
    other_results: tuple[str, ...] = ()

    @property
    def wants_work(self) -> bool:
        return not self.dont_send_work and self.work_req_seconds > 0


def parse_request(body: bytes) -> SchedulerRequest:
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request of {len(body)} bytes is over the {MAX_REQUEST_BYTES}-byte limit")
    start = body.find(b"<scheduler_request")
    if start < 0:
        raise BadRequest("not a scheduler request: no <scheduler_request> element")
    root = parse_xml(body[start:], "scheduler request")
    results = root.findall("result")
    if len(results) > MAX_REPORTED_RESULTS:
        raise BadRequest(f"{len(results)} reported results; at most {MAX_REPORTED_RESULTS} per request")
    host_info = root.find("host_info")
    return SchedulerRequest(
        authenticator=_text(root, "authenticator")[:VARCHAR_LIMIT],
        hostid=_int(root, "hostid"),
        rpc_seqno=_int(root, "rpc_seqno"),
        platforms=_platforms(root),
        work_req_seconds=max(_float(root, "work_req_seconds"), _float(root, "cpu_req_secs")),
        cpu_req_instances=_float(root, "cpu_req_instances"),
        dont_send_work=flag(root, "dont_send_work"),
        has_code_sign_key=bool(_text(root, "code_sign_key")),
        client_version=(_int(root, "core_client_major_version") * 10000
                        + _int(root, "core_client_minor_version") * 100 + _int(root, "core_client_release")),
        prefs_mod_time=_prefs_mod_time(root),
        host_cpid=_text(host_info, "host_cpid")[:VARCHAR_LIMIT] if host_info is not None else "",
        host_values=_host_values(root),
        results=tuple(_reported(r) for r in results),
        other_results=tuple(_text(o, "name") for o in root.iterfind("other_results/other_result")),
    )


def _platforms(root: etree._Element) -> tuple[str, ...]:
    names = [_text(root, "platform_name")]
    names += [_text(alt, "name") for alt in root.iterfind("alt_platform")]
    return tuple(dict.fromkeys(n for n in names if n))


def _prefs_mod_time(root: etree._Element) -> float:
    prefs = root.find("working_global_preferences/global_preferences")
    if prefs is None:
        prefs = root.find("global_preferences")
    return _float(prefs, "mod_time") if prefs is not None else 0.0


def _host_values(root: etree._Element) -> dict:
    values: dict = {}
    for section, names in HOST_NUMBERS.items():
        element = root.find(section)
        if element is not None:
            for name in names:
                if element.find(name) is not None:
                    values[name] = _float(element, name)
    host_info = root.find("host_info")
    if host_info is not None:
        for name in HOST_STRINGS:
            if host_info.find(name) is not None:
                values[name] = _text(host_info, name)[:VARCHAR_LIMIT]
    if "p_ncpus" in values:
        values["p_ncpus"] = int(values["p_ncpus"])
    if "timezone" in values:
        values["timezone"] = int(values["timezone"])
    disk = root.find("disk_usage")
    if disk is not None:
        values["d_boinc_used_total"] = _float(disk, "d_boinc_used_total")
        values["d_boinc_used_project"] = _float(disk, "d_boinc_used_project")
        values["d_boinc_max"] = _float(disk, "d_project_share")
    net = root.find("net_stats")
    if net is not None:
        values["n_bwup"] = _float(net, "bwup")
        values["n_bwdown"] = _float(net, "bwdown")
    dcf = root.find("duration_correction_factor")
    if dcf is not None:
        values["duration_correction_factor"] = _float(root, "duration_correction_factor")
    return values


def _reported(element: etree._Element) -> ReportedResult:
    stderr = element.find("stderr_out")
    stderr_text = _inner_text(stderr) if stderr is not None else ""
    outputs = "".join(serialize(f) + "\n" for f in element.findall("file_info"))
    return ReportedResult(
        name=_text(element, "name")[:VARCHAR_LIMIT],
        state=_int(element, "state"),
        exit_status=_int(element, "exit_status"),
        cpu_time=_float(element, "final_cpu_time"),
        elapsed_time=_float(element, "final_elapsed_time"),
        app_version_num=_int(element, "app_version_num") or _int(element, "version_num"),
        peak_working_set_size=_float(element, "final_peak_working_set_size"),
        peak_swap_size=_float(element, "final_peak_swap_size"),
        peak_disk_usage=_float(element, "final_peak_disk_usage"),
        stderr_out=_tail_bytes(stderr_text, STDERR_LIMIT),
        xml_doc_out=_tail_bytes(outputs, XML_DOC_OUT_LIMIT),
    )


def _inner_text(element: etree._Element) -> str:
    """stderr_out as stock stores it: the element's content, the app's text inside CDATA."""
    parts = [_as_cdata(element.text or "")]
    for child in element:
        parts.append(f"<{child.tag}>{escape_text(child.text or '')}</{child.tag}>")
        parts.append(_as_cdata(child.tail or ""))
    return "".join(parts).strip()


def _as_cdata(text: str) -> str:
    if not text.strip():
        return text
    return "\n<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>\n"


def _tail_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", "ignore")


def _text(element: etree._Element | None, tag: str) -> str:
    if element is None:
        return ""
    return child_text(element, tag, "") or ""


def _float(element: etree._Element | None, tag: str) -> float:
    text = _text(element, tag)
    try:
        value = float(text) if text else 0.0
    except ValueError:
        return 0.0
    return value if value == value and abs(value) != float("inf") else 0.0


def _int(element: etree._Element | None, tag: str) -> int:
    value = _float(element, tag)
    return int(max(min(value, 2**31 - 1), -2**31))
