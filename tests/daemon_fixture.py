"""A test-only daemon on boinc_ext.daemons.base's base, used in-process and as a real subprocess.

It handles rows of `test_item`, one per transaction: it counts the handling, holds the
transaction open for --delay seconds (so that tests can signal it mid-item), then marks
the row done and records which --mod remainder handled it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dataclasses import dataclass

from boinc_ext.daemons.base import Daemon, main_for

from boinc_ext.daemons.options import DaemonOptions, flag, option

TABLE_DDL = """create table test_item (
    id integer not null auto_increment primary key,
    done tinyint not null default 0,
    handled integer not null default 0,
    handled_by integer not null default -1
) engine=InnoDB"""

PROCESSING = "processing item"


def kill_after_progress(command: list[str], progress, beyond: int, delay: float, timeout: float = 60.0) -> None:
    """Runs a daemon's command and SIGKILLs it `delay` seconds after `progress()` first
    exceeds `beyond` (or after it ended by itself: then the kill is harmless)."""
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while progress() <= beyond and process.poll() is None:
        assert time.monotonic() < deadline, f"no progress past {beyond} within {timeout} s"
        time.sleep(0.005)
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def create_items(db, count: int) -> None:
    db.execute(TABLE_DDL)
    with db.transaction():
        db.executemany("insert into test_item (done) values (%s)", [(0,)] * count)


@dataclass(frozen=True)
class ItemOptions(DaemonOptions):
    delay: float = option(0.0, flag(type=float, metavar="S", help="seconds to hold each item"))


class ItemDaemon(Daemon):
    name = "test_items"
    options_class = ItemOptions

    def do_pass(self) -> bool:
        with self.db.transaction():
            ids = [row["id"] for row in self.db.query(
                f"select id from test_item where done = 0{self.mod_clause()} order by id limit 100")]
        for item_id in ids:
            if self.should_stop():
                break
            self._handle(item_id)
        return bool(ids)

    def _handle(self, item_id: int) -> None:
        remainder = self.options.mod[1] if self.options.mod else -1
        with self.db.transaction():
            if not self.db.execute("update test_item set handled = handled + 1 where id = %s and done = 0",
                                   (item_id,)):
                return
            self.item_log("ITEM", item_id, f"item{item_id}").info(PROCESSING)
            time.sleep(self.options.delay)
            self.db.execute("update test_item set done = 1, handled_by = %s where id = %s",
                            (remainder, item_id))


if __name__ == "__main__":
    sys.exit(main_for(ItemDaemon))
