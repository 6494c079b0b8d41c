"""The account web RPCs BOINC clients and managers call (boinc-server-facts §8):
get_project_config.php, create_account.php, lookup_account.php and am_get_info.php,
at <master_url path>. Parameters come from the query string only.

Replies are laid out as stock BOINC's PHP writes them: an ISO-8859-1 declaration (the
bytes are UTF-8, as stock sends them too), then one element; failures are
`<error><error_num>N</error_num><error_msg>…</error_msg></error>` with HTTP 200.
The account rules themselves are in `user_accounts`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from urllib.parse import quote_plus

from flask import Blueprint, Response, request

from boinc_ext.boinc.config import STOP_SCHED_FILE, ProjectConfig
from boinc_ext.boinc.db import Database, DbError, TransientDbError
from boinc_ext.boinc.xmlutil import XmlError, escape_text, parse_fragment
from boinc_ext.server import user_accounts
from boinc_ext.server.http_db import ThreadDatabases
from boinc_ext.server.url_paths import web_rpc_path
from boinc_ext.server.user_accounts import (ERR_ACCT_CREATION_DISABLED, ERR_DB_CANT_CONNECT, ERR_GENERIC, AccountError, create_account, lookup_account, passwd_hash_of)

__all__ = ["create_blueprint", "create_account", "lookup_account", "passwd_hash_of"]

log = logging.getLogger("boinc_ext.server.accounts")

XML_DECLARATION = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
DEFAULT_MIN_PASSWD_LENGTH = 6
PLATFORM_CACHE_SECONDS = 3600.0

EVENT_RPC_REFUSED = "account rpc refused"
EVENT_DB_UNAVAILABLE = "account rpc: database unavailable"
EVENT_DB_FAILED = "account rpc: database error"

_PLATFORMS_SQL = """
    select distinct p.name, p.user_friendly_name, coalesce(v.plan_class, '') as plan_class
    from platform p
    left join app_version v on v.platformid = p.id and v.deprecated = 0
        and v.appid in (select id from app where deprecated = 0)
    where p.deprecated = 0
    order by p.name, plan_class"""


def _server_version() -> str:
    try:
        return metadata.version("boinc-ext")
    except metadata.PackageNotFoundError:
        return "0"


def xml_reply(body: str) -> Response:
    return Response(XML_DECLARATION + body, status=200, content_type="text/xml")


def error_reply(error_num: int, message: str) -> Response:
    return xml_reply(f"<error>\n    <error_num>{error_num}</error_num>\n"
                     f"    <error_msg>{escape_text(message)}</error_msg>\n</error>\n")


def account_out(authenticator: str) -> Response:
    return xml_reply(f"<account_out>\n    <authenticator>{escape_text(authenticator)}</authenticator>\n"
                     f"</account_out>\n")


@dataclass(frozen=True)
class Platform:
    name: str
    user_friendly_name: str
    plan_class: str

    def render(self) -> str:
        plan = f"            <plan_class>{escape_text(self.plan_class)}</plan_class>\n" if self.plan_class else ""
        return (f"        <platform>\n"
                f"            <platform_name>{escape_text(self.name)}</platform_name>\n"
                f"            <user_friendly_name>{escape_text(self.user_friendly_name)}</user_friendly_name>\n"
                f"{plan}        </platform>\n")


class PlatformCache:
    """The platform list, reread at most hourly, so get_project_config works while the
    database is down (as stock's does)."""

    def __init__(self, databases: ThreadDatabases, max_age: float = PLATFORM_CACHE_SECONDS):
        self._databases = databases
        self._max_age = max_age
        self._lock = threading.Lock()
        self._platforms: list[Platform] | None = None
        self._read_at = 0.0

    def get(self) -> list[Platform]:
        with self._lock:
            fresh = self._platforms is not None and time.monotonic() - self._read_at < self._max_age
            if fresh:
                return self._platforms
        try:
            rows = self._databases.run(lambda db: db.query(_PLATFORMS_SQL))
        except DbError as exc:
            log.warning("%s: %s; serving the platform list from cache", EVENT_DB_UNAVAILABLE, exc)
            return self._platforms or []
        platforms = [Platform(r["name"], r["user_friendly_name"] or "", r["plan_class"]) for r in rows]
        with self._lock:
            self._platforms, self._read_at = platforms, time.monotonic()
        return platforms


class AccountRpcs:
    """The handlers, separate from Flask routing so their rules read in one place."""

    def __init__(self, config: ProjectConfig, databases: ThreadDatabases):
        self.config = config
        self.databases = databases
        self.platforms = PlatformCache(databases)

    @property
    def creation_disabled(self) -> bool:
        return (self.config.option_flag("disable_account_creation")
                or self.config.option_flag("disable_account_creation_rpc"))

    def project_config(self) -> Response:
        config = self.config
        min_passwd_length = config.option_int("min_passwd_length", DEFAULT_MIN_PASSWD_LENGTH, minimum=0)
        sched_stopped = int((config.project_dir / STOP_SCHED_FILE).exists())
        platforms = "".join(platform.render() for platform in self.platforms.get())
        body = (
            "<project_config>\n"
            f"    <name>{escape_text(config.long_name)}</name>\n"
            f"    <master_url>{escape_text(config.master_url)}</master_url>\n"
            f"    <web_rpc_url_base>{escape_text(config.master_url)}</web_rpc_url_base>\n"
            f"    <server_version>{escape_text(_server_version())}</server_version>\n"
            "    <web_stopped>0</web_stopped>\n"
            + ("    <account_creation_disabled/>\n" if self.creation_disabled else "")
            + f"    <min_passwd_length>{min_passwd_length}</min_passwd_length>\n"
            f"    <sched_stopped>{sched_stopped}</sched_stopped>\n"
            f"    <platforms>\n{platforms}    </platforms>\n"
            "</project_config>\n"
        )
        return xml_reply(body)

    def create(self, args) -> Response:
        if self.creation_disabled:
            return self._refuse(ERR_ACCT_CREATION_DISABLED, "the project is not accepting new accounts")
        email, passwd_hash, name = (_arg(args, "email_addr"), _arg(args, "passwd_hash"),
                                    _arg(args, "user_name"))
        if email is None or passwd_hash is None or name is None:
            return self._refuse(ERR_GENERIC, "create_account needs email_addr, passwd_hash and user_name")
        return self._with_db(lambda db: account_out(create_account(db, email, passwd_hash, name)))

    def lookup(self, args) -> Response:
        email, passwd_hash = _arg(args, "email_addr"), _arg(args, "passwd_hash")
        if not email:
            return self._refuse(ERR_GENERIC, "lookup_account needs email_addr")
        if not passwd_hash:
            return self._with_db(lambda db: self._existence(db, email))
        return self._with_db(lambda db: account_out(lookup_account(db, email, passwd_hash)))

    def am_get_info(self, args) -> Response:
        account_key = _arg(args, "account_key")
        if not account_key:
            return self._refuse(ERR_GENERIC, "am_get_info needs account_key")
        return self._with_db(lambda db: self._user_info(db, account_key))

    @staticmethod
    def _existence(db: Database, email: str) -> Response:
        if not user_accounts.account_exists(db, email):
            raise user_accounts.AccountNotFound(f"no account with email address {email[:80]!r}")
        return xml_reply("<account_out>\n    <success/>\n</account_out>\n")

    @staticmethod
    def _user_info(db: Database, account_key: str) -> Response:
        user = user_accounts.find_user_by_authenticator(db, account_key)
        if user is None:
            raise user_accounts.AccountNotFound("no account with this account key")
        fields = [
            ("id", str(user["id"])), ("name", quote_plus(user["name"] or "")),
            ("country", quote_plus(user["country"] or "")),
            ("weak_auth", user_accounts.weak_authenticator(user)),
            ("cpid", user_accounts.cross_project_cpid(user)), ("has_profile", str(user["has_profile"])),
            ("create_time", str(user["create_time"])), ("url", quote_plus(user["url"] or "")),
            ("send_email", str(user["send_email"])), ("show_hosts", str(user["show_hosts"])),
            ("teamid", str(user["teamid"])), ("venue", user["venue"] or ""),
        ]
        lines = [f"    <{tag}>{escape_text(value)}</{tag}>" for tag, value in fields]
        for tag in ("global_prefs", "project_prefs"):
            lines.append(f"    <{tag}>\n{_well_formed(user[tag])}\n    </{tag}>")
        return xml_reply("<am_get_info_reply>\n    <success/>\n" + "\n".join(lines) + "\n</am_get_info_reply>\n")

    def _with_db(self, handler: Callable[[Database], Response]) -> Response:
        try:
            return self.databases.run(handler)
        except AccountError as exc:
            return self._refuse(exc.error_num, str(exc))
        except TransientDbError as exc:
            log.warning("%s: %s", EVENT_DB_UNAVAILABLE, exc)
            return error_reply(ERR_DB_CANT_CONNECT, "the project's database is unavailable; try again later")
        except DbError as exc:
            log.error("%s: %s", EVENT_DB_FAILED, exc)
            return error_reply(ERR_GENERIC, "database error on the server")

    @staticmethod
    def _refuse(error_num: int, message: str) -> Response:
        log.info("%s: %s %s: %d %s", EVENT_RPC_REFUSED, request.path, _safe_args(), error_num, message)
        return error_reply(error_num, message)


def _arg(args, name: str) -> str | None:
    value = args.get(name)
    return None if value is None else str(value)


def _safe_args() -> str:
    """The request's parameter names and emails for the log; never a password hash."""
    return ",".join(f"{k}={v[:80]!r}" if k == "email_addr" else k for k, v in request.args.items())


def _well_formed(blob) -> str:
    """A stored prefs document, if it is well-formed XML; empty otherwise."""
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else (blob or "")
    if not text.strip():
        return ""
    try:
        parse_fragment(text, "stored preferences")
    except XmlError:
        return ""
    return text.strip()


def create_blueprint(config: ProjectConfig, databases: ThreadDatabases | None = None) -> Blueprint:
    """The account web RPCs at <master_url path>; one DB connection per server thread
    (pass `databases` to share them or to close them at shutdown)."""
    rpcs = AccountRpcs(config, databases or ThreadDatabases.for_project(config))
    blueprint = Blueprint("boinc_accounts", __name__)
    master = config.master_url

    blueprint.add_url_rule(web_rpc_path(master, "get_project_config.php"), "get_project_config",
                           rpcs.project_config, methods=["GET"])
    blueprint.add_url_rule(web_rpc_path(master, "create_account.php"), "create_account",
                           lambda: rpcs.create(request.args), methods=["GET"])
    blueprint.add_url_rule(web_rpc_path(master, "lookup_account.php"), "lookup_account",
                           lambda: rpcs.lookup(request.args), methods=["GET"])
    blueprint.add_url_rule(web_rpc_path(master, "am_get_info.php"), "am_get_info",
                           lambda: rpcs.am_get_info(request.args), methods=["GET"])
    return blueprint
