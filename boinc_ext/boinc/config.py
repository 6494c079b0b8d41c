"""The project's config.xml, read into one validated, frozen object.

Element names and meanings are BOINC's (sched/sched_config.cpp): a stock project's
config.xml loads unchanged, and the files this module writes load in stock BOINC tools.
"""
from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from lxml import etree

from boinc_ext.boinc.xmlutil import XmlError, flag, parse_xml_file

CONFIG_FILE = "config.xml"
STOP_DAEMONS_FILE = "stop_daemons"
STOP_SCHED_FILE = "stop_sched"
REREAD_DB_FILE = "reread_db"


class ConfigError(ValueError):
    """config.xml is missing, malformed or lacks a required setting."""


@dataclass(frozen=True)
class DaemonEntry:
    """One `<daemon>` of config.xml."""

    cmd: str
    host: str | None = None
    output: str | None = None
    pid_file: str | None = None
    disabled: bool = False

    @property
    def program(self) -> str:
        return os.path.basename(shlex.split(self.cmd)[0])

    @property
    def log_name(self) -> str:
        return self.output or f"{self.program}.log"

    @property
    def pid_name(self) -> str:
        return self.pid_file or f"{self.program}.pid"


@dataclass(frozen=True)
class ProjectConfig:
    project_dir: Path
    host: str
    db_name: str
    db_host: str
    db_user: str
    db_passwd: str = field(repr=False)
    master_url: str
    long_name: str
    download_url: str
    download_dir: Path
    upload_url: str
    upload_dir: Path
    key_dir: Path
    uldl_dir_fanout: int
    cache_md5_info: bool
    dont_generate_upload_certificates: bool
    ignore_upload_certificates: bool
    daemons: tuple[DaemonEntry, ...] = ()
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def load(cls, project_dir: str | Path) -> "ProjectConfig":
        project_dir = Path(project_dir).resolve()
        path = project_dir / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (is {project_dir} a BOINC project directory?)")
        try:
            root = parse_xml_file(path, str(path))
        except XmlError as exc:
            raise ConfigError(str(exc)) from None
        return cls.from_element(root, project_dir)

    @classmethod
    def from_element(cls, root: etree._Element, project_dir: Path) -> "ProjectConfig":
        config = root.find("config")
        if root.tag != "boinc" or config is None:
            raise ConfigError(f"{project_dir / CONFIG_FILE}: expected <boinc><config>...</config></boinc>")
        options = {child.tag: (child.text or "").strip() for child in config
                   if isinstance(child.tag, str)}
        flags = {child.tag: flag(config, child.tag) for child in config if isinstance(child.tag, str)}

        def required(name: str) -> str:
            if not options.get(name):
                raise ConfigError(f"{project_dir / CONFIG_FILE}: <{name}> is required")
            return options[name]

        def directory(name: str, default: str) -> Path:
            value = Path(options.get(name) or default)
            return value if value.is_absolute() else project_dir / value

        try:
            fanout = int(options.get("uldl_dir_fanout") or 0)
        except ValueError:
            raise ConfigError(f"<uldl_dir_fanout> must be an integer, not {options['uldl_dir_fanout']!r}") from None
        if fanout < 0:
            raise ConfigError("<uldl_dir_fanout> must not be negative")
        return cls(
            project_dir=project_dir,
            host=options.get("host") or socket.gethostname(),
            db_name=required("db_name"),
            db_host=options.get("db_host", ""),
            db_user=options.get("db_user", ""),
            db_passwd=options.get("db_passwd", ""),
            master_url=options.get("master_url", ""),
            long_name=options.get("long_name", ""),
            download_url=options.get("download_url", "").rstrip("/"),
            download_dir=directory("download_dir", "download"),
            upload_url=options.get("upload_url", ""),
            upload_dir=directory("upload_dir", "upload"),
            key_dir=directory("key_dir", "keys"),
            uldl_dir_fanout=fanout,
            cache_md5_info=flags.get("cache_md5_info", False),
            dont_generate_upload_certificates=flags.get("dont_generate_upload_certificates", False),
            ignore_upload_certificates=flags.get("ignore_upload_certificates", False),
            daemons=tuple(_daemon_entries(root)),
            options=MappingProxyType(options),
        )

    @property
    def log_dir(self) -> Path:
        return self.project_dir / f"log_{self.host}"

    @property
    def pid_dir(self) -> Path:
        return self.project_dir / f"pid_{self.host}"

    @property
    def tmp_dir(self) -> Path:
        return self.project_dir / f"tmp_{self.host}"

    @property
    def stop_daemons_path(self) -> Path:
        return self.project_dir / STOP_DAEMONS_FILE

    def option_int(self, name: str, default: int, *, minimum: int | None = None,
                   maximum: int | None = None) -> int:
        """<name> as a whole number (BOINC also writes them as 1e6), `default` if absent; a
        value out of [minimum, maximum] is a ConfigError naming the option, never clamped."""
        number = self._option_number(name)
        if number is None:
            return default
        if not number.is_integer():
            raise ConfigError(f"<{name}> must be a whole number, not {self.options[name]!r}")
        return _within(name, int(number), minimum, maximum)

    def option_float(self, name: str, default: float, *, minimum: float | None = None,
                     maximum: float | None = None) -> float:
        """<name> as a number, `default` if absent; out of [minimum, maximum] is a ConfigError."""
        number = self._option_number(name)
        return default if number is None else _within(name, number, minimum, maximum)

    def _option_number(self, name: str) -> float | None:
        value = self.options.get(name)
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"<{name}> must be a number, not {value!r}") from None

    def option_flag(self, name: str) -> bool:
        value = self.options.get(name)
        return value is not None and value not in ("0", "false")

    def daemons_for_this_host(self) -> list[DaemonEntry]:
        return [d for d in self.daemons if (d.host or self.host) == self.host]


def _daemon_entries(root: etree._Element):
    for element in root.findall("daemons/daemon"):
        cmd = (element.findtext("cmd") or "").strip()
        if not cmd:
            raise ConfigError("config.xml: a <daemon> has no <cmd>")
        yield DaemonEntry(
            cmd=cmd,
            host=(element.findtext("host") or "").strip() or None,
            output=(element.findtext("output") or "").strip() or None,
            pid_file=(element.findtext("pid_file") or "").strip() or None,
            disabled=flag(element, "disabled"),
        )


def cgi_url(master_url: str) -> str:
    """make_project's CGI base: `http://h/NAME/` gives `http://h/NAME_cgi/`."""
    if urlsplit(master_url).path in ("", "/"):
        return master_url + "cgi-bin/"
    return master_url.rstrip("/") + "_cgi/"


def _within(name: str, value, minimum, maximum):
    if minimum is not None and value < minimum:
        raise ConfigError(f"<{name}> must be at least {minimum:g}, not {value:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"<{name}> must be at most {maximum:g}, not {value:g}")
    return value


def find_project_dir(explicit: str | Path | None = None) -> Path:
    """BOINC's lookup: the given dir, else $BOINC_PROJECT_DIR, else `.`, else `..`."""
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("BOINC_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    for candidate in (Path.cwd(), Path.cwd().parent):
        if (candidate / CONFIG_FILE).is_file():
            return candidate.resolve()
    raise ConfigError("no project directory: give one, set BOINC_PROJECT_DIR, or run inside the project")


def write_config_xml(path: Path, options: Mapping[str, str | int | bool],
                     daemons: list[DaemonEntry]) -> None:
    """Writes a config.xml; booleans become `<x/>`-style flags as make_project writes them (0/1)."""
    root = etree.Element("boinc")
    config = etree.SubElement(root, "config")
    for name, value in options.items():
        etree.SubElement(config, name).text = _option_text(value)
    daemons_element = etree.SubElement(root, "daemons")
    for daemon in daemons:
        append_daemon(daemons_element, daemon)
    etree.SubElement(root, "tasks")
    write_tree(path, root)


def append_daemon(daemons_element: etree._Element, daemon: DaemonEntry) -> None:
    element = etree.SubElement(daemons_element, "daemon")
    etree.SubElement(element, "cmd").text = daemon.cmd
    if daemon.host:
        etree.SubElement(element, "host").text = daemon.host
    if daemon.output:
        etree.SubElement(element, "output").text = daemon.output
    if daemon.pid_file:
        etree.SubElement(element, "pid_file").text = daemon.pid_file
    if daemon.disabled:
        etree.SubElement(element, "disabled").text = "1"


def write_tree(path: Path, root: etree._Element) -> None:
    """Writes atomically so that a running daemon never reads half a config."""
    etree.indent(root, space="    ")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(etree.tostring(root, encoding="utf-8") + b"\n")
    os.replace(tmp, path)


def _option_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
