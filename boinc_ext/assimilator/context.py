"""What an assimilation handler gets, and how it says "not now"."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database


class AssimilationDeferred(Exception):
    """The handler cannot finish now (for example a file system is unavailable). The workunit
    goes back to assimilate_state INIT, as stock BOINC's DEFER_ASSIMILATION does, and the
    transitioner makes it READY again."""


@dataclass(frozen=True)
class AssimilationContext:
    """One workunit to assimilate. The handler runs inside the workunit's transaction (its
    row is locked): database changes made through `db` commit together with
    assimilate_state DONE, or not at all. File effects must be idempotent, since after a
    crash the handler runs again."""

    config: ProjectConfig
    db: Database
    app_name: str
    wu: dict[str, Any]
    results: list[dict[str, Any]]
    canonical: dict[str, Any] | None   # None: the workunit failed (error_mask says how)
    now: int
    log: logging.LoggerAdapter


Handler = Callable[[AssimilationContext], None]
