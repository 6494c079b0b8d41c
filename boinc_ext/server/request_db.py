"""One database connection per server thread, reused across requests.

The embedded server runs its request handlers on a pool of threads (waitress); a
`Database` is not shareable between threads, so each thread keeps its own and reconnects
after a lost connection (the Database reconnects on next use once it has been closed).
"""
from __future__ import annotations

import threading

from ..config import ProjectConfig
from ..db import Database, DbSettings


class ThreadDatabases:
    def __init__(self, config: ProjectConfig):
        self.settings = DbSettings.from_config(config)
        self._local = threading.local()
        self._all: list[Database] = []
        self._lock = threading.Lock()

    def get(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = Database(self.settings)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close_all(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
