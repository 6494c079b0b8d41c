"""project.xml: the platforms and apps a project offers, registered as BOINC's xadd does."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.xmlutil import XmlError, parse_xml_file

# The project.xml of this repository (the package lives next to it).
DEFAULT_PROJECT_XML = Path(__file__).resolve().parents[2] / "project.xml"


@dataclass(frozen=True)
class Platform:
    name: str
    user_friendly_name: str


@dataclass(frozen=True)
class App:
    name: str
    user_friendly_name: str
    min_version: int | None = None


@dataclass(frozen=True)
class ProjectXml:
    platforms: tuple[Platform, ...]
    apps: tuple[App, ...]

    @classmethod
    def load(cls, path: Path = DEFAULT_PROJECT_XML) -> "ProjectXml":
        root = parse_xml_file(path, "project.xml")
        if root.tag != "boinc":
            raise XmlError(f"{path}: the root element must be <boinc>")
        platforms = tuple(Platform(_required(e, "name", path), e.findtext("user_friendly_name", "").strip())
                          for e in root.findall("platform"))
        apps = tuple(App(_required(e, "name", path), e.findtext("user_friendly_name", "").strip(),
                         _optional_int(e.findtext("min_version"), path))
                     for e in root.findall("app"))
        return cls(platforms, apps)


def _required(element, tag: str, path: Path) -> str:
    value = (element.findtext(tag) or "").strip()
    if not value:
        raise XmlError(f"{path}: a <{element.tag}> has no <{tag}>")
    return value


def _optional_int(text: str | None, path: Path) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise XmlError(f"{path}: <min_version> must be an integer, not {text!r}") from None


def register(db, project_xml: ProjectXml) -> None:
    """Inserts missing platforms and apps; updates names and min_version; never deletes."""
    now = int(time.time())
    with db.transaction():
        for platform in project_xml.platforms:
            db.execute("insert into platform (create_time, name, user_friendly_name, deprecated) "
                       "values (%s, %s, %s, 0) on duplicate key update "
                       "user_friendly_name = values(user_friendly_name)",
                       (now, platform.name, platform.user_friendly_name))
        for app in project_xml.apps:
            db.execute("insert into app (create_time, name, user_friendly_name, min_version) "
                       "values (%s, %s, %s, %s) on duplicate key update "
                       "user_friendly_name = values(user_friendly_name), "
                       "min_version = if(%s, values(min_version), min_version)",
                       (now, app.name, app.user_friendly_name, app.min_version or 0,
                        app.min_version is not None))
