"""Installing app versions, as BOINC's update_versions does.

Every file is copied flat into download/ (immutable: the same name with other content is
refused), signed with the code-signing key, and described in the app_version row's
xml_doc, which the scheduler sends to clients as is.
"""
from __future__ import annotations

import filecmp
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc import crypto
from boinc_ext.boinc.config import REREAD_DB_FILE, ProjectConfig
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.hierarchy import check_file_name
from boinc_ext.boinc.xmlutil import escape_text

log = logging.getLogger("boinc_ext.project.app_versions")

DEFAULT_PLATFORM = "x86_64-pc-linux-gnu"
_API_VERSION = re.compile(rb"API_VERSION_(\d+\.\d+\.\d+)")


class AppVersionError(ValueError):
    """The app version cannot be installed as asked."""


@dataclass(frozen=True)
class AppFile:
    path: Path
    logical_name: str | None = None
    main_program: bool = False
    copy_file: bool = False


def parse_version_num(text: str) -> int:
    """"M.mm" becomes 100*M + mm, as update_versions reads version directories."""
    match = re.fullmatch(r"(\d+)(?:\.(\d{1,2}))?", text.strip())
    if not match:
        raise AppVersionError(f"version {text!r}: expected M.mm (e.g. 1.05) or an integer")
    if match.group(2) is None:
        return int(match.group(1))
    return int(match.group(1)) * 100 + int(match.group(2))


def detect_api_version(path: Path) -> str | None:
    match = _API_VERSION.search(path.read_bytes())
    return match.group(1).decode() if match else None


def add_app_version(config: ProjectConfig, app_name: str, version: str, files: list[AppFile], *,
                    platform: str = DEFAULT_PLATFORM, plan_class: str = "",
                    api_version: str | None = None) -> int:
    """Installs one app version and returns its id."""
    if not files:
        raise AppVersionError("an app version needs at least one file")
    version_num = parse_version_num(version)
    files = _with_main_program(files)
    for f in files:
        if not f.path.is_file():
            raise AppVersionError(f"{f.path}: no such file")
        check_file_name(f.path.name, "app file name")
    main = next(f for f in files if f.main_program)
    api_version = api_version or detect_api_version(main.path)
    key = crypto.read_private_key(config.key_dir / "code_sign_private")

    with Database.for_project(config) as db:
        app_id, platform_id = _lookup_ids(db, app_name, platform)
        _refuse_duplicate(db, app_id, platform_id, version_num, plan_class, app_name, version)
        staged = _stage_files(config, files)
        try:
            xml_doc = app_version_xml(config, app_name, version_num, files, key, api_version)
            with db.transaction():
                version_id = db.insert(
                    "insert into app_version (create_time, appid, version_num, platformid, xml_doc, "
                    "plan_class) values (%s, %s, %s, %s, %s, %s)",
                    (int(time.time()), app_id, version_num, platform_id, xml_doc, plan_class))
        except BaseException:
            for path in staged:
                path.unlink(missing_ok=True)
            raise
    _keep_record(config, app_name, version, platform, plan_class, files)
    (config.project_dir / REREAD_DB_FILE).touch()
    log.info("installed %s %s for %s%s (app_version %d)", app_name, version, platform,
             f" [{plan_class}]" if plan_class else "", version_id)
    return version_id


def app_version_xml(config: ProjectConfig, app_name: str, version_num: int, files: list[AppFile],
                    key: crypto.PrivateKey, api_version: str | None) -> str:
    parts = []
    for f in files:
        executable = f.main_program or bool(os.stat(f.path).st_mode & 0o100)
        parts.append(
            "<file_info>\n"
            f"    <name>{escape_text(f.path.name)}</name>\n"
            f"    <url>{escape_text(config.download_url)}/{escape_text(f.path.name)}</url>\n"
            + ("    <executable/>\n" if executable else "")
            + "    <file_signature>\n"
            + crypto.sign_file(f.path, key).strip() + "\n"
            "    </file_signature>\n"
            f"    <nbytes>{f.path.stat().st_size}</nbytes>\n"
            "</file_info>\n")
    parts.append("<app_version>\n"
                 f"    <app_name>{escape_text(app_name)}</app_name>\n"
                 f"    <version_num>{version_num}</version_num>\n")
    if api_version:
        parts.append(f"    <api_version>{escape_text(api_version)}</api_version>\n")
    for f in files:
        parts.append("    <file_ref>\n"
                     f"        <file_name>{escape_text(f.path.name)}</file_name>\n")
        if f.logical_name:
            parts.append(f"        <open_name>{escape_text(f.logical_name)}</open_name>\n")
        if f.copy_file:
            parts.append("        <copy_file/>\n")
        if f.main_program:
            parts.append("        <main_program/>\n")
        parts.append("    </file_ref>\n")
    parts.append("</app_version>\n")
    return "".join(parts)


def _with_main_program(files: list[AppFile]) -> list[AppFile]:
    mains = [f for f in files if f.main_program]
    if len(mains) > 1:
        raise AppVersionError("only one file can be the main program")
    if mains:
        return files
    first = files[0]
    return [AppFile(first.path, first.logical_name, True, first.copy_file)] + files[1:]


def _lookup_ids(db: Database, app_name: str, platform: str) -> tuple[int, int]:
    app = db.query_one("select id from app where name = %s", (app_name,))
    if app is None:
        raise AppVersionError(f"unknown app {app_name!r}: add it to project.xml and run project create --existing")
    row = db.query_one("select id from platform where name = %s", (platform,))
    if row is None:
        raise AppVersionError(f"unknown platform {platform!r}")
    return app["id"], row["id"]


def _refuse_duplicate(db, app_id, platform_id, version_num, plan_class, app_name, version) -> None:
    if db.scalar("select count(*) from app_version where appid = %s and platformid = %s and "
                 "version_num = %s and plan_class = %s", (app_id, platform_id, version_num, plan_class)):
        raise AppVersionError(f"{app_name} {version} ({plan_class or 'no plan class'}) is already installed")


def _stage_files(config: ProjectConfig, files: list[AppFile]) -> list[Path]:
    """Copies the files flat into download/; returns the ones this call created."""
    created = []
    for f in files:
        target = config.download_dir / f.path.name
        if target.exists():
            if not filecmp.cmp(f.path, target, shallow=False):
                for path in created:
                    path.unlink(missing_ok=True)
                raise AppVersionError(f"{target} exists with other content: app files are immutable, "
                                      f"give the new file a new name")
            continue
        shutil.copyfile(f.path, target)
        created.append(target)
    return created


def _keep_record(config: ProjectConfig, app_name: str, version: str, platform: str,
                 plan_class: str, files: list[AppFile]) -> None:
    """A copy under apps/<app>/<version>/<platform>[__plan]/, where stock BOINC keeps versions."""
    directory = config.project_dir / "apps" / app_name / version / (
        f"{platform}__{plan_class}" if plan_class else platform)
    directory.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not (directory / f.path.name).exists():
            shutil.copy2(f.path, directory / f.path.name)
