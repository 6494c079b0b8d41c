"""Creating a BOINC project directory and database, as BOINC's make_project lays them out.

`create_project` makes a new project; `extend_existing_project` adds only our apps,
`ext_` tables and daemons to a stock BOINC project, leaving everything else as it was.
"""
from __future__ import annotations

import logging
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from boinc_ext.boinc import schema as boinc_schema

from boinc_ext.boinc import crypto

from boinc_ext.project import ext_schema
from boinc_ext.boinc.config import CONFIG_FILE, cgi_url, ConfigError, ProjectConfig, append_daemon, write_config_xml, write_tree
from boinc_ext.daemons.registry import default_entries, install_launchers
from boinc_ext.boinc.db import Database, DbSettings
from boinc_ext.project.project_xml import DEFAULT_PROJECT_XML, ProjectXml, register
from boinc_ext.boinc.xmlutil import parse_xml_file

log = logging.getLogger("boinc_ext.project.create")

UPLOAD_HANDLER = "file_upload_handler"
_DB_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
KEY_FILES = ("code_sign_private", "code_sign_public", "upload_private", "upload_public")


class ProjectError(RuntimeError):
    """The project cannot be created or changed as asked."""


@dataclass(frozen=True)
class ProjectSpec:
    project_dir: Path
    master_url: str
    name: str
    db: DbSettings
    long_name: str = ""


def canonical_master_url(url: str) -> str:
    """The URL as a BOINC client stores it; refuses URLs the client would reject."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProjectError(f"--url {url!r}: must be http(s)://HOST[:PORT]/NAME/")
    host = parts.hostname.lower()
    if "." not in host:
        raise ProjectError(f"--url {url!r}: BOINC clients reject a host without a dot "
                           f"(use 127.0.0.1, not localhost)")
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = re.sub(r"/+", "/", parts.path or "/")
    if not path.endswith("/"):
        path += "/"
    return f"{parts.scheme}://{netloc}{path}"


def project_options(spec: ProjectSpec, master_url: str) -> dict[str, str | int | bool]:
    root = spec.project_dir
    return {
        "host": socket.gethostname(),
        "db_name": spec.db.name,
        "db_host": spec.db.db_host,
        "db_user": spec.db.user,
        "db_passwd": spec.db.passwd,
        "shmem_key": f"0x{secrets.randbits(31):x}",
        "master_url": master_url,
        "long_name": spec.long_name or spec.name,
        "download_url": master_url + "download",
        "download_dir": str(root / "download"),
        "upload_url": cgi_url(master_url) + UPLOAD_HANDLER,
        "upload_dir": str(root / "upload"),
        "key_dir": str(root / "keys"),
        "uldl_dir_fanout": 1024,
        "cache_md5_info": True,
        "app_dir": str(root / "apps"),
        "log_dir": str(root / f"log_{socket.gethostname()}"),
        "disable_account_creation": False,
        "min_sendwork_interval": 0,
        "max_wus_to_send": 50,
        "daily_result_quota": 500,
        "report_grace_period": 0,
        "delete_delay_hours": 0,
    }


def create_project(spec: ProjectSpec, project_xml_path: Path = DEFAULT_PROJECT_XML) -> ProjectConfig:
    """Lays out a new project and creates its database; refuses to overwrite either."""
    master_url = canonical_master_url(spec.master_url)
    if not _DB_NAME.match(spec.db.name):
        raise ProjectError(f"--db-name {spec.db.name!r}: use letters, digits and _ only")
    root = spec.project_dir.resolve()
    if (root / CONFIG_FILE).exists():
        raise ProjectError(f"{root}: already a project (config.xml exists); "
                           f"use --existing to add our apps to it")
    project_xml = ProjectXml.load(project_xml_path)
    spec = ProjectSpec(root, master_url, spec.name, spec.db, spec.long_name)
    _create_database(spec.db)
    try:
        _lay_out_directories(root)
        crypto.generate_project_keys(root / "keys")
        shutil.copyfile(project_xml_path, root / "project.xml")
        install_launchers(root / "bin")
        write_config_xml(root / CONFIG_FILE, project_options(spec, master_url),
                         default_entries(existing_stock_server=False))
        config = ProjectConfig.load(root)
        config.log_dir.mkdir(exist_ok=True)
        config.pid_dir.mkdir(exist_ok=True)
        config.tmp_dir.mkdir(exist_ok=True)
        with Database(spec.db) as db:
            boinc_schema.create_boinc_tables(db)
            ext_schema.migrate(db)
            register(db, project_xml)
        _install_apps(config)
    except BaseException:
        _drop_database(spec.db)
        (root / CONFIG_FILE).unlink(missing_ok=True)
        raise
    log.info("created project %s at %s (database %s)", spec.name, root, spec.db.name)
    return config


def extend_existing_project(project_dir: Path, project_xml_path: Path = DEFAULT_PROJECT_XML) -> ProjectConfig:
    """Adds our apps, ext_ tables, launchers and daemons to a stock BOINC project."""
    root = project_dir.resolve()
    config = ProjectConfig.load(root)
    for key in KEY_FILES:
        if not (config.key_dir / key).is_file():
            raise ProjectError(f"{config.key_dir / key}: missing; a stock project has its keys "
                               f"(make_project creates them)")
    project_xml = ProjectXml.load(project_xml_path)
    with Database.for_project(config) as db:
        missing = set(boinc_schema.BOINC_TABLES) - boinc_schema.existing_boinc_tables(db)
        if {"workunit", "result", "app", "platform"} & missing:
            raise ProjectError(f"database {config.db_name}: not a BOINC database "
                               f"(missing tables: {', '.join(sorted(missing))})")
        ext_schema.migrate(db)
        register(db, project_xml)
    install_launchers(root / "bin")
    _add_daemons(root / CONFIG_FILE, config)
    _merge_project_xml(root / "project.xml", project_xml_path)
    for directory in (root / "templates", config.log_dir, config.pid_dir, config.tmp_dir):
        directory.mkdir(exist_ok=True)
    config = ProjectConfig.load(root)
    _install_apps(config)
    return config


def _install_apps(config: ProjectConfig) -> None:
    from boinc_ext.apps.registry import APPS   # apps import the app-version tools, which import this room
    for app in APPS.values():
        app.install(config)


def _lay_out_directories(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("bin", "cgi-bin", "html/user", "html/inc", "html/ops", "download", "upload",
                 "keys", "templates", "apps"):
        (root / name).mkdir(parents=True, exist_ok=True)


def _create_database(settings: DbSettings) -> None:
    with Database(settings, with_database=False) as server:
        exists = server.scalar("select count(*) from information_schema.schemata where schema_name = %s",
                               (settings.name,))
        if exists:
            raise ProjectError(f"database {settings.name} already exists; choose another --db-name "
                               f"or use --existing with its project directory")
        server.execute(f"create database `{settings.name}` character set utf8mb4")


def _drop_database(settings: DbSettings) -> None:
    with Database(settings, with_database=False) as server:
        server.execute(f"drop database if exists `{settings.name}`")


def _add_daemons(config_path: Path, config: ProjectConfig) -> None:
    root = parse_xml_file(config_path)
    daemons_element = root.find("daemons")
    if daemons_element is None:
        daemons_element = etree.SubElement(root, "daemons")
    present = {entry.program for entry in config.daemons}
    for entry in default_entries(existing_stock_server=True):
        if entry.program not in present:
            append_daemon(daemons_element, entry)
    write_tree(config_path, root)


def _merge_project_xml(target: Path, ours: Path) -> None:
    """Appends our platforms and apps to a stock project.xml, keeping its own entries."""
    if not target.exists():
        shutil.copyfile(ours, target)
        return
    theirs = parse_xml_file(target)
    known = {(e.tag, (e.findtext("name") or "").strip()) for e in theirs}
    for element in parse_xml_file(ours):
        if isinstance(element.tag, str) and (element.tag, (element.findtext("name") or "").strip()) not in known:
            theirs.append(element)
    write_tree(target, theirs)


def require_project(project_dir: Path) -> ProjectConfig:
    try:
        return ProjectConfig.load(project_dir)
    except ConfigError as exc:
        raise ProjectError(str(exc)) from None
