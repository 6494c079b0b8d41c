"""Result rows made from a workunit's output template, as stock BOINC's transitioner makes them.

`process_result_template` fills an output template into a result's xml_doc_in (what
tools/process_result_template.cpp produces); `create_result_rows` inserts the rows
(tools/backend_lib.cpp create_result), and `new_result_rows` + `insert_result_rows` do the
same for many workunits in one statement. Output file names carry a random number so that a
volunteer cannot upload a file in the name of a wingman's result.
"""
from __future__ import annotations

import random
import re
import secrets
from pathlib import Path
from typing import Any

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.crypto import PrivateKey, sign_upload_certificate
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.states import (
    FILE_DELETE_INIT,
    OUTCOME_INIT,
    SERVER_STATE_INACTIVE,
    SERVER_STATE_UNSENT,
    VALIDATE_STATE_INIT,
)

XML_DOC_IN_LIMIT = 65535  # result.xml_doc_in is a 64 KB blob
RANDOM_LIMIT = 2 ** 31    # lrand48's range

_OUTFILE_MACRO = re.compile(r"<OUTFILE_([^/>]*)/>")
_UPLOAD_URL_MACRO = "<UPLOAD_URL/>"
_FILE_INFO = re.compile(r"<file_info>(.*?)</file_info>", re.DOTALL)
_NAME = re.compile(r"<name>(.*?)</name>", re.DOTALL)
_MAX_NBYTES = re.compile(r"<max_nbytes>(.*?)</max_nbytes>", re.DOTALL)

_RESULT_COLUMNS = (
    "create_time", "workunitid", "server_state", "outcome", "client_state", "hostid", "userid",
    "report_deadline", "sent_time", "received_time", "name", "cpu_time", "xml_doc_in", "xml_doc_out",
    "stderr_out", "batch", "file_delete_state", "validate_state", "claimed_credit", "granted_credit",
    "opaque", "random", "app_version_num", "appid", "exit_status", "teamid", "priority",
    "elapsed_time", "flops_estimate", "app_version_id", "runtime_outlier", "size_class",
    "peak_working_set_size", "peak_swap_size", "peak_disk_usage",
)
_INSERT_RESULT = f"insert into result ({', '.join(_RESULT_COLUMNS)})"


class ResultTemplateError(ValueError):
    """An output template cannot be turned into a result's xml_doc_in."""


def process_result_template(template_text: str, result_name: str, upload_url: str,
                            upload_key: PrivateKey | None) -> str:
    """The result's xml_doc_in: macros filled, upload certificates added (unless
    `upload_key` is None), the outer <output_template> tags stripped, the text trimmed."""
    base_name = f"{result_name}_r{secrets.randbelow(RANDOM_LIMIT)}_"
    text = _OUTFILE_MACRO.sub(lambda m: base_name + m.group(1), template_text)
    text = text.replace(_UPLOAD_URL_MACRO, upload_url)
    if upload_key is not None:
        text = _FILE_INFO.sub(lambda m: _signed_file_info(m.group(1), upload_key, result_name), text)
    return _newline_after_result_tag(_strip_output_template_tags(text).strip())


def _strip_output_template_tags(text: str) -> str:
    """What lies inside <output_template>…</output_template>, if the tags are there."""
    start = text.find("<output_template>")
    if start < 0:
        return text
    inner = text[start + len("<output_template>"):]
    end = inner.find("</output_template>")
    return inner if end < 0 else inner[:end]


def _signed_file_info(body: str, key: PrivateKey, result_name: str) -> str:
    """One `<file_info>` with an `<xml_signature>` appended to its content."""
    name = _NAME.search(body)
    max_nbytes = _MAX_NBYTES.search(body)
    if name is None or max_nbytes is None:
        raise ResultTemplateError(f"result {result_name}: an output <file_info> lacks <name> or <max_nbytes>")
    try:
        nbytes = float(max_nbytes.group(1).strip())
    except ValueError:
        raise ResultTemplateError(f"result {result_name}: <max_nbytes> {max_nbytes.group(1)!r} "
                                  f"is not a number") from None
    signature = sign_upload_certificate(name.group(1).strip(), nbytes, key)
    return f"<file_info>{body}<xml_signature>\n{signature}</xml_signature>\n</file_info>"


def _newline_after_result_tag(text: str) -> str:
    """The scheduler splices its tags in after the literal `<result>` + newline."""
    return re.sub(r"<result>(?!\n)[ \t]*", "<result>\n", text)


def read_result_template(config: ProjectConfig, relative_path: str) -> str:
    """A workunit's result_template_file, which is relative to the project directory."""
    path = Path(relative_path)
    if not path.is_absolute():
        path = config.project_dir / path
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultTemplateError(f"result template {path}: cannot read it ({exc})") from None


def create_result_rows(db: Database, wu_row: dict[str, Any], count: int, first_suffix: int, now: int,
                       config: ProjectConfig, upload_key: PrivateKey | None,
                       template_text: str | None = None, priority_increase: int = 0) -> list[str]:
    """Inserts `count` results `<wu>_<first_suffix>`…; returns their names.

    `upload_key` None means no upload certificates. The caller holds the transaction."""
    if count <= 0:
        return []
    if template_text is None:
        template_text = read_result_template(config, wu_row["result_template_file"])
    names, rows = new_result_rows(wu_row, count, first_suffix, now, config, upload_key, template_text,
                                  priority_increase)
    insert_result_rows(db, rows)
    return names


def new_result_rows(wu_row: dict[str, Any], count: int, first_suffix: int, now: int, config: ProjectConfig,
                    upload_key: PrivateKey | None, template_text: str,
                    priority_increase: int = 0) -> tuple[list[str], list[tuple]]:
    """Names and column values of `count` new results `<wu>_<first_suffix>`…, for insert_result_rows."""
    names = [f"{wu_row['name']}_{first_suffix + i}" for i in range(count)]
    rows = [_result_values(wu_row, name, now, config, upload_key, template_text, priority_increase)
            for name in names]
    return names, rows


def insert_result_rows(db: Database, rows: list[tuple]) -> None:
    """Rows from new_result_rows, in multi-row INSERTs."""
    if rows:
        db.insert_rows(_INSERT_RESULT, rows)


def _result_values(wu_row: dict[str, Any], name: str, now: int, config: ProjectConfig,
                   upload_key: PrivateKey | None, template_text: str, priority_increase: int) -> tuple:
    xml_doc_in = process_result_template(template_text, name, config.upload_url, upload_key)
    if len(xml_doc_in.encode()) > XML_DOC_IN_LIMIT:
        raise ResultTemplateError(f"result {name}: xml_doc_in is {len(xml_doc_in.encode())} bytes; "
                                  f"BOINC's limit is {XML_DOC_IN_LIMIT}")
    size_class = int(wu_row.get("size_class", -1))
    server_state = SERVER_STATE_UNSENT if size_class < 0 else SERVER_STATE_INACTIVE
    values = {
        "create_time": now, "workunitid": wu_row["id"], "server_state": server_state,
        "outcome": OUTCOME_INIT, "client_state": 0, "hostid": 0, "userid": 0, "report_deadline": 0,
        "sent_time": 0, "received_time": 0, "name": name, "cpu_time": 0.0,
        "xml_doc_in": xml_doc_in.encode(), "xml_doc_out": b"", "stderr_out": b"",
        "batch": wu_row["batch"], "file_delete_state": FILE_DELETE_INIT,
        "validate_state": VALIDATE_STATE_INIT, "claimed_credit": 0.0, "granted_credit": 0.0,
        "opaque": 0.0, "random": random.randrange(RANDOM_LIMIT), "app_version_num": 0,
        "appid": wu_row["appid"], "exit_status": 0, "teamid": 0,
        "priority": wu_row["priority"] + priority_increase, "elapsed_time": 0.0,
        "flops_estimate": 0.0, "app_version_id": 0, "runtime_outlier": 0, "size_class": size_class,
        "peak_working_set_size": 0.0, "peak_swap_size": 0.0, "peak_disk_usage": 0.0,
    }
    return tuple(values[column] for column in _RESULT_COLUMNS)
