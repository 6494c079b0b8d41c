"""Database handles for the embedded server's request handlers.

The server runs under waitress with several worker threads, and a `Database` must never be
shared between threads, so each thread keeps its own connection and reuses it across
requests. A connection the server dropped meanwhile (restart, idle timeout, KILL) shows up
as a TransientDbError on first use; `run` then retries the operation once on a fresh
connection. Operations passed to `run` must therefore be safe to repeat.
"""
from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database, DbSettings, TransientDbError

log = logging.getLogger("boinc_ext.server.http_db")

T = TypeVar("T")

EVENT_RECONNECT = "database connection lost, reconnecting"


class ThreadDatabases:
    """One lazily opened `Database` per thread, for one project."""

    def __init__(self, settings: DbSettings):
        self._settings = settings
        self._local = threading.local()
        self._open: weakref.WeakSet[Database] = weakref.WeakSet()
        self._open_lock = threading.Lock()

    @classmethod
    def for_project(cls, config: ProjectConfig) -> "ThreadDatabases":
        return cls(DbSettings.from_config(config))

    def run(self, operation: Callable[[Database], T]) -> T:
        """Runs `operation` with this thread's connection; raises TransientDbError if the
        database stays unreachable."""
        db = self._for_this_thread()
        try:
            return operation(db)
        except TransientDbError as exc:
            # Database closed the broken connection; the next statement reconnects.
            log.info("%s: %s", EVENT_RECONNECT, exc)
            return operation(db)

    def get(self) -> Database:
        """This thread's connection, for handlers that retry on their own."""
        return self._for_this_thread()

    def close_all(self) -> None:
        """Closes every thread's connection (at server shutdown); later use reconnects."""
        with self._open_lock:
            databases = list(self._open)
        for db in databases:
            db.close()

    def _for_this_thread(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = Database(self._settings)
            self._local.db = db
            with self._open_lock:
                self._open.add(db)
        return db
