"""File deleter: what stock BOINC's sched/file_deleter does, as a daemon of ours.

Results with file_delete_state READY lose their output files (the `<file_info>`s of
xml_doc_in) from the upload hierarchy; workunits with READY lose their input files (of
xml_doc) from the download hierarchy, with their `.gz` and `.md5` siblings. `<no_delete/>`
file_infos and workunits whose name contains "nodelete" keep their files. A file already
gone counts as deleted. Each row then becomes DONE, or ERROR when a deletion failed; rows
in ERROR are tried again at start and every hour (unless --dont_retry_errors), as stock does.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.daemons.base import Daemon, main_for

from boinc_ext.daemons.options import DaemonOptions, flag, option
from boinc_ext.boinc.hierarchy import BadFileName, check_file_name, hier_path
from boinc_ext.boinc.xmlutil import XmlError, parse_fragment
from boinc_ext.boinc.xmlutil import flag as xml_flag

FILE_DELETE_READY = 1
FILE_DELETE_DONE = 2
FILE_DELETE_ERROR = 3

RESULTS_PER_PASS = 1500
WUS_PER_PASS = 500
ERROR_RETRY_INTERVAL = 3600.0
WU_SIBLING_SUFFIXES = (".gz", ".md5")


class DeletionFailed(Exception):
    """A file of the row could not be deleted, or its XML names no safe file."""


@dataclass(frozen=True)
class _Table:
    """What differs between results and workunits."""

    table: str
    kind: str          # for log lines: [RESULT#id name] / [WU#id name]
    xml_column: str
    batch: int


_RESULTS = _Table("result", "RESULT", "xml_doc_in", RESULTS_PER_PASS)
_WORKUNITS = _Table("workunit", "WU", "xml_doc", WUS_PER_PASS)


def file_names(xml_doc: bytes | str | None, what: str) -> list[str]:
    """Names of the `<file_info>`s to delete (not `<no_delete/>`), each checked as safe."""
    if isinstance(xml_doc, bytes):
        try:
            xml_doc = xml_doc.decode("utf-8")
        except UnicodeDecodeError:
            raise DeletionFailed(f"{what}: not UTF-8") from None
    try:
        elements = parse_fragment(xml_doc or "", what)
    except XmlError as exc:
        raise DeletionFailed(str(exc)) from None
    names = []
    for element in elements:
        for info in element.iter("file_info"):
            if xml_flag(info, "no_delete"):
                continue
            name = (info.findtext("name") or "").strip()
            try:
                names.append(check_file_name(name, f"{what}: <file_info> name"))
            except BadFileName as exc:
                raise DeletionFailed(str(exc)) from None
    return names


def unlink_if_present(path: Path) -> bool:
    """Deletes `path`; False if it was already gone. Other failures raise DeletionFailed."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DeletionFailed(f"cannot delete {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class FileDeleterOptions(DaemonOptions):
    dont_retry_errors: bool = option(False, flag(help="never retry rows left in file_delete_state ERROR"))


class FileDeleter(Daemon):
    name = "ext_file_deleter"
    options_class = FileDeleterOptions

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_error_retry: float | None = None if self.options.dont_retry_errors else 0.0

    def do_pass(self) -> bool:
        states = [FILE_DELETE_READY]
        if self._next_error_retry is not None and time.monotonic() >= self._next_error_retry:
            states.append(FILE_DELETE_ERROR)
            self._next_error_retry = time.monotonic() + ERROR_RETRY_INTERVAL
        did_work = False
        for state in states:
            for table in (_RESULTS, _WORKUNITS):
                did_work |= self._handle_batch(table, state)
                if self.should_stop():
                    return did_work
        return did_work

    def _handle_batch(self, table: _Table, state: int) -> bool:
        with self.db.transaction():
            rows = self.db.query(
                f"select id from {table.table} where file_delete_state = %s"
                f"{self.mod_clause()}{self.app_clause()} order by id limit %s", (state, table.batch))
        changed = False
        for row in rows:
            if self.should_stop():
                break
            changed |= self._handle_row(table, row["id"], state)
        return changed

    def _handle_row(self, table: _Table, row_id: int, state: int) -> bool:
        """One row in one transaction; True if its file_delete_state changed."""
        with self.db.transaction():
            # The row lock keeps a second instance off this row until we commit.
            row = self.db.query_one(
                f"select name, {table.xml_column} as xml from {table.table} "
                f"where id = %s and file_delete_state = %s for update", (row_id, state))
            if row is None:
                return False
            log = self.item_log(table.kind, row_id, row["name"])
            try:
                deleted = self._delete_files(table, row["name"], row["xml"], log)
                new_state = FILE_DELETE_DONE
                log.debug("deleted %d file(s)", deleted)
            except DeletionFailed as exc:
                log.error("file deletion failed: %s", exc)
                new_state = FILE_DELETE_ERROR
            if new_state == state:
                return False
            self.db.execute(f"update {table.table} set file_delete_state = %s "
                            f"where id = %s and file_delete_state = %s", (new_state, row_id, state))
        return True

    def _delete_files(self, table: _Table, name: str, xml_doc, log) -> int:
        if table is _WORKUNITS and "nodelete" in name:
            log.debug("name contains 'nodelete': keeping its files")
            return 0
        names = file_names(xml_doc, f"{table.table} {name} {table.xml_column}")
        if table is _RESULTS:
            root, suffixes = self.config.upload_dir, ("",)
        else:
            root, suffixes = self.config.download_dir, ("",) + WU_SIBLING_SUFFIXES
        if names and not root.is_dir():
            raise DeletionFailed(f"{root}: directory missing (not mounted?)")
        deleted = 0
        for file_name in names:
            path = hier_path(file_name, root, self.config.uldl_dir_fanout)
            for suffix in suffixes:
                target = path.with_name(path.name + suffix)
                if unlink_if_present(target):
                    deleted += 1
                    log.info("deleted %s", target)
                elif not suffix:
                    log.debug("%s already gone", target)
        return deleted


if __name__ == "__main__":
    sys.exit(main_for(FileDeleter))
