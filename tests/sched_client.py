"""Scheduler requests as Debian's boinc-client 7.20.5 sends them, for tests and benchmarks.

The text is the captured fetch-work request (shared/reference/client-interop) with the
account, host and reports put in; what a real client sends is tested end to end elsewhere.
"""
from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from xml.sax.saxutils import escape

from boinc_ext.boinc.schema import blank_row

CAPTURE = Path(__file__).parent / "data" / "scheduler_request_fetch_work.xml"


def _base() -> str:
    return CAPTURE.read_text()


def scheduler_request(authenticator: str, hostid: int = 0, rpc_seqno: int = 0, *, with_key: bool = False,
                      work_req_seconds: float = 100000.0, cpu_req_instances: float = 1.0,
                      host_cpid: str = "0123456789abcdef0123456789abcdef", reports: str = "",
                      platform: str = "x86_64-pc-linux-gnu", prefs_mod_time: float | None = None) -> bytes:
    text = _base()
    text = text.replace("AUTHENTICATOR_PLACEHOLDER", escape(authenticator))
    text = text.replace("HOST_CPID_PLACEHOLDER", host_cpid)
    text = re.sub(r"<hostid>\d+</hostid>", f"<hostid>{hostid}</hostid>", text)
    text = re.sub(r"<rpc_seqno>\d+</rpc_seqno>", f"<rpc_seqno>{rpc_seqno}</rpc_seqno>", text)
    text = re.sub(r"<work_req_seconds>[^<]*<", f"<work_req_seconds>{work_req_seconds:f}<", text)
    text = re.sub(r"<cpu_req_secs>[^<]*<", f"<cpu_req_secs>{work_req_seconds:f}<", text)
    text = re.sub(r"<cpu_req_instances>[^<]*<", f"<cpu_req_instances>{cpu_req_instances:f}<", text)
    text = text.replace("<platform_name>x86_64-pc-linux-gnu</platform_name>",
                        f"<platform_name>{platform}</platform_name>")
    if not with_key:
        text = re.sub(r"<code_sign_key>.*?</code_sign_key>\n", "", text, flags=re.S)
    if prefs_mod_time is not None:
        text = re.sub(r"<mod_time>[0-9.]+</mod_time>", f"<mod_time>{prefs_mod_time:f}</mod_time>", text)
    text = text.replace("<app_versions>", reports + "<app_versions>", 1)
    return text.encode()


def reported_result(name: str, output_name: str = "", *, exit_status: int = 0, state: int = 5,
                    stderr: str = "all fine") -> str:
    outputs = ""
    if output_name:
        outputs = (f"<file_info>\n    <name>{output_name}</name>\n    <nbytes>10.000000</nbytes>\n"
                   f"    <max_nbytes>100000.000000</max_nbytes>\n"
                   f"    <md5_cksum>00000000000000000000000000000000</md5_cksum>\n</file_info>\n")
    return (f"<result>\n    <name>{name}</name>\n    <final_cpu_time>1.5</final_cpu_time>\n"
            f"    <final_elapsed_time>2.0</final_elapsed_time>\n    <exit_status>{exit_status}</exit_status>\n"
            f"    <state>{state}</state>\n    <platform>x86_64-pc-linux-gnu</platform>\n"
            f"    <version_num>100</version_num>\n    <app_version_num>100</app_version_num>\n"
            f"<stderr_out>\n<core_client_version>7.20.5</core_client_version>\n<![CDATA[\n"
            f"<stderr_txt>\n{stderr}\n</stderr_txt>\n]]>\n</stderr_out>\n{outputs}</result>\n")


def now() -> int:
    return int(time.time())


def make_user(db, email="vol@example.org", global_prefs=""):
    row = blank_row("user")
    auth = secrets.token_hex(16)
    row.update(create_time=int(time.time()), email_addr=email, name=email.split("@")[0], authenticator=auth,
               cross_project_id=secrets.token_hex(16), passwd_hash="x" * 32, global_prefs=global_prefs)
    db.insert(f"insert into user ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})", tuple(row.values()))
    return auth
