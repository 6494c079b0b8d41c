"""BOINC user accounts: creating and looking up rows of the `user` table.

Rules are stock BOINC's (html/user/create_account.php, lookup_account.php; facts §8):
the email is lowercased, the password travels only as passwd_hash = md5(password +
lowercase email), and a lookup also accepts md5(authenticator + email). Unlike newer
stock servers, which store a bcrypt of passwd_hash, the md5 hex itself is stored, as older
BOINC servers did; stock lookups accept that form too.

Used by the account web RPCs and directly from Python (the demo creates its accounts).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

from boinc_ext.boinc.db import Database, DuplicateKeyError

log = logging.getLogger("boinc_ext.server.accounts")

# BOINC's error numbers (lib/error_numbers.h) as the web RPCs report them.
ERR_GENERIC = -1
ERR_DB_NOT_FOUND = -136
ERR_DB_NOT_UNIQUE = -137
ERR_DB_CANT_CONNECT = -138
ERR_BAD_USER_NAME = -188
ERR_BAD_EMAIL_ADDR = -205
ERR_BAD_PASSWD = -206
ERR_ACCT_CREATION_DISABLED = -208

MAX_COLUMN_CHARS = 191  # user.email_addr and user.name are varchar(191)
DEFAULT_COUNTRY = "International"

EVENT_ACCOUNT_CREATED = "account created"
EVENT_ACCOUNT_EXISTS = "account already exists"

_MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f<>&\"']")

_USER_COLUMNS = (
    "create_time", "email_addr", "name", "authenticator", "country", "postal_code",
    "total_credit", "expavg_credit", "expavg_time", "global_prefs", "project_prefs", "teamid",
    "venue", "url", "send_email", "show_hosts", "posts", "seti_id", "seti_nresults",
    "seti_last_result_time", "seti_total_cpu", "signature", "has_profile", "cross_project_id",
    "passwd_hash", "email_validated", "donated", "login_token", "login_token_time",
    "previous_email_addr", "email_addr_change_time",
)
_INSERT_USER = (f"insert into user ({', '.join(_USER_COLUMNS)}) "
                f"values ({', '.join(['%s'] * len(_USER_COLUMNS))})")


class AccountError(ValueError):
    """An account request BOINC would refuse; `error_num` is what the web RPC reports."""

    error_num = ERR_GENERIC


class BadEmailAddress(AccountError):
    error_num = ERR_BAD_EMAIL_ADDR


class BadPasswordHash(AccountError):
    error_num = ERR_GENERIC  # stock: "password hash length not 32"


class BadUserName(AccountError):
    error_num = ERR_BAD_USER_NAME


class AccountNotUnique(AccountError):
    """The email has an account with another password, or the user name is taken."""

    error_num = ERR_DB_NOT_UNIQUE


class AccountNotFound(AccountError):
    error_num = ERR_DB_NOT_FOUND


class WrongPassword(AccountError):
    error_num = ERR_BAD_PASSWD


def passwd_hash_of(password: str, email_addr: str) -> str:
    """What BOINC clients send for a password: md5(password + lowercase email)."""
    return hashlib.md5((password + email_addr.lower()).encode("utf-8")).hexdigest()


def random_hex32() -> str:
    return secrets.token_hex(16)


def check_email_addr(email_addr: str) -> str:
    """The address lowercased, if it looks like one; BadEmailAddress otherwise."""
    email = email_addr.strip().lower()
    if len(email) > MAX_COLUMN_CHARS or not _EMAIL.match(email):
        raise BadEmailAddress(f"email address {email_addr[:80]!r} is not valid")
    return email


def check_passwd_hash(passwd_hash: str) -> str:
    if not _MD5_HEX.match(passwd_hash):
        raise BadPasswordHash("passwd_hash must be 32 hexadecimal characters "
                              "(md5 of password + lowercase email)")
    return passwd_hash.lower()


def check_user_name(name: str) -> str:
    """Stock's rules: not empty, no surrounding blanks, no markup characters, not a number."""
    if not name or name != name.strip():
        raise BadUserName("user name must be non-empty, without leading or trailing blanks")
    if len(name) > MAX_COLUMN_CHARS:
        raise BadUserName(f"user name is longer than {MAX_COLUMN_CHARS} characters")
    if _NAME_FORBIDDEN.search(name):
        raise BadUserName("user name may not contain control characters or < > & \" '")
    if _is_number(name):
        raise BadUserName("user name may not be a number")
    return name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_user_by_email(db: Database, email_addr: str) -> dict[str, Any] | None:
    return db.query_one("select * from user where email_addr = %s", (email_addr,))


def create_account(db: Database, email_addr: str, passwd_hash: str, user_name: str,
                   now: int | None = None) -> str:
    """The authenticator of a new account, or of the existing one for this email if the
    password hash matches; AccountError otherwise. Safe against concurrent calls for the
    same email: the unique key decides, and the loser returns the winner's account."""
    email = check_email_addr(email_addr)
    passwd_hash = check_passwd_hash(passwd_hash)
    name = check_user_name(user_name)
    existing = find_user_by_email(db, email)
    if existing is not None:
        return _existing_account(existing, passwd_hash)
    authenticator = random_hex32()
    try:
        user_id = db.insert(_INSERT_USER, _new_user_values(email, name, authenticator, passwd_hash,
                                                           int(now if now is not None else time.time())))
    except DuplicateKeyError:
        return _after_duplicate(db, email, passwd_hash, name)
    log.info("%s: user %d <%s>", EVENT_ACCOUNT_CREATED, user_id, email)
    return authenticator


def _existing_account(user: dict[str, Any], passwd_hash: str) -> str:
    if not _same_hash(str(user["passwd_hash"]), passwd_hash):
        raise AccountNotUnique(f"an account with email {user['email_addr']} exists "
                               f"with a different password")
    log.info("%s: user %d <%s>", EVENT_ACCOUNT_EXISTS, user["id"], user["email_addr"])
    return user["authenticator"]


def _after_duplicate(db: Database, email: str, passwd_hash: str, name: str) -> str:
    """An insert lost to a unique key: the same email created meanwhile, or a taken name."""
    existing = find_user_by_email(db, email)
    if existing is not None:
        return _existing_account(existing, passwd_hash)
    raise AccountNotUnique(f"user name {name!r} is already taken")


def _new_user_values(email: str, name: str, authenticator: str, passwd_hash: str, now: int) -> tuple:
    values = {
        "create_time": now, "email_addr": email, "name": name, "authenticator": authenticator,
        "country": DEFAULT_COUNTRY, "postal_code": "", "total_credit": 0.0, "expavg_credit": 0.0,
        "expavg_time": float(now), "global_prefs": b"", "project_prefs": b"", "teamid": 0,
        "venue": "", "url": "", "send_email": 1, "show_hosts": 0, "posts": 0, "seti_id": 0,
        "seti_nresults": 0, "seti_last_result_time": 0, "seti_total_cpu": 0.0, "signature": "",
        "has_profile": 0, "cross_project_id": random_hex32(), "passwd_hash": passwd_hash,
        "email_validated": 0, "donated": 0, "login_token": "", "login_token_time": 0.0,
        "previous_email_addr": "", "email_addr_change_time": 0.0,
    }
    return tuple(values[column] for column in _USER_COLUMNS)


def account_exists(db: Database, email_addr: str) -> bool:
    return find_user_by_email(db, email_addr.strip().lower()) is not None


def lookup_account(db: Database, email_addr: str, passwd_hash: str) -> str:
    """The authenticator, if `passwd_hash` is the account's password hash or
    md5(authenticator + email); AccountNotFound or WrongPassword otherwise."""
    email = email_addr.strip().lower()
    user = find_user_by_email(db, email)
    if user is None:
        raise AccountNotFound(f"no account with email address {email_addr[:80]!r}")
    auth_hash = hashlib.md5((user["authenticator"] + user["email_addr"]).encode("utf-8")).hexdigest()
    if not (_same_hash(str(user["passwd_hash"]), passwd_hash) or _same_hash(auth_hash, passwd_hash)):
        raise WrongPassword("wrong password")
    return user["authenticator"]


def _same_hash(stored: str, given: str) -> bool:
    """Case-insensitive constant-time comparison of two hex hashes (any text is safe)."""
    if not stored:
        return False
    return hmac.compare_digest(stored.strip().lower().encode("utf-8"), given.strip().lower().encode("utf-8"))


def find_user_by_authenticator(db: Database, authenticator: str) -> dict[str, Any] | None:
    return db.query_one("select * from user where authenticator = %s", (authenticator,))


def weak_authenticator(user: dict[str, Any]) -> str:
    """`<userid>_<md5(authenticator + passwd_hash)>`, accepted by schedulers in its place."""
    digest = hashlib.md5((user["authenticator"] + str(user["passwd_hash"])).encode("utf-8")).hexdigest()
    return f"{user['id']}_{digest}"


def cross_project_cpid(user: dict[str, Any]) -> str:
    return hashlib.md5((str(user["cross_project_id"]) + user["email_addr"]).encode("utf-8")).hexdigest()
