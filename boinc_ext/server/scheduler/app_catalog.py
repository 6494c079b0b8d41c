"""The apps, platforms and app versions the scheduler can send, cached in memory.

Like stock's feeder, the cache is reloaded when `update_versions` (our `project
add-version`) touches the project's `reread_db` file, and at least every RELOAD_SECONDS.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database
from boinc_ext.server.scheduler.reply import element, splice_before_last

RELOAD_SECONDS = 60.0
REREAD_TRIGGER = "reread_db"


@dataclass(frozen=True)
class AppVersion:
    id: int
    appid: int
    app_name: str
    app_friendly_name: str
    platform: str
    version_num: int
    plan_class: str
    xml: str        # xml_doc with <platform>, <plan_class>, <avg_ncpus>, <flops> spliced in


class AppCatalog:
    def __init__(self, config: ProjectConfig):
        self.config = config
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._trigger_mtime: float | None = None
        self._best: dict[tuple[int, str], AppVersion] = {}
        self._apps: dict[int, tuple[str, str]] = {}

    def best_version(self, db: Database, appid: int, platforms: tuple[str, ...]) -> AppVersion | None:
        """The newest plain-CPU version of the app for the first of `platforms` that has one."""
        self._refresh(db)
        for platform in platforms:
            version = self._best.get((appid, platform))
            if version is not None:
                return version
        return None

    def app_ids(self, db: Database, platforms: tuple[str, ...]) -> list[int]:
        self._refresh(db)
        return sorted({appid for (appid, platform) in self._best if platform in platforms})

    def with_flops(self, version: AppVersion, flops: float) -> str:
        return splice_before_last(version.xml, "</app_version>", element("flops", flops))

    def _refresh(self, db: Database) -> None:
        trigger = self._trigger_mtime_now()
        if time.monotonic() - self._loaded_at < RELOAD_SECONDS and trigger == self._trigger_mtime:
            return
        with self._lock:
            rows = db.query(
                "select av.id, av.appid, av.version_num, av.plan_class, av.xml_doc, p.name as platform, "
                "a.name as app_name, a.user_friendly_name from app_version av "
                "join app a on a.id = av.appid join platform p on p.id = av.platformid "
                "where av.deprecated = 0 and a.deprecated = 0 and p.deprecated = 0 and av.plan_class = '' "
                "order by av.version_num")
            best = {}
            for row in rows:   # ascending version_num: the newest wins
                best[(row["appid"], row["platform"])] = _app_version(row)
            self._best = best
            self._loaded_at = time.monotonic()
            self._trigger_mtime = trigger

    def _trigger_mtime_now(self) -> float | None:
        try:
            return (self.config.project_dir / REREAD_TRIGGER).stat().st_mtime
        except OSError:
            return None


def _app_version(row: dict) -> AppVersion:
    xml = row["xml_doc"].decode() if isinstance(row["xml_doc"], bytes) else row["xml_doc"]
    extra = (element("platform", row["platform"]) + element("plan_class", row["plan_class"])
             + element("avg_ncpus", 1.0))
    return AppVersion(id=row["id"], appid=row["appid"], app_name=row["app_name"],
                      app_friendly_name=row["user_friendly_name"] or row["app_name"],
                      platform=row["platform"], version_num=row["version_num"], plan_class=row["plan_class"],
                      xml=splice_before_last(xml, "</app_version>", extra))
