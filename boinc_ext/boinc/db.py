"""The one BOINC database layer: connection settings, connections and transactions.

Used by the daemons, work creation and the embedded server alike. Settings come from
config.xml exactly as BOINC's daemons read them (`db_host` may be `host:port`).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import MySQLdb
import MySQLdb.cursors
from MySQLdb import _mysql

from boinc_ext.boinc.config import ProjectConfig

log = logging.getLogger("boinc_ext.boinc.db")

# Server/client error codes after which the same statement may succeed later.
_TRANSIENT_CODES = {
    1040,  # too many connections
    1205,  # lock wait timeout
    1213,  # deadlock
    2002,  # can't connect through socket
    2003,  # can't connect over TCP
    2006,  # server has gone away
    2013,  # lost connection during query
    1927,  # connection killed
    4031,  # disconnected for inactivity
}
DUPLICATE_KEY = 1062


class DbError(Exception):
    """A database operation failed."""


class TransientDbError(DbError):
    """The server is unreachable, restarting or busy: retry later with the same work."""


class PermanentDbError(DbError):
    """The statement itself is wrong for this database (bad schema, bad data)."""


class DuplicateKeyError(PermanentDbError):
    """A UNIQUE key (for example a workunit name) is already taken."""


def classify(exc: MySQLdb.Error) -> DbError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    message = f"database error {code}: {exc.args[1] if len(exc.args) > 1 else exc}"
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(message)
    if code in _TRANSIENT_CODES or isinstance(exc, MySQLdb.InterfaceError):
        return TransientDbError(message)
    return PermanentDbError(message)


def parse_db_host(db_host: str) -> tuple[str, int | None]:
    """`host[:port]` as stock BOINC takes it; this machine's own name means localhost."""
    host, port = db_host, None
    if ":" in db_host:
        host, _, port_text = db_host.rpartition(":")
        if not port_text.isdigit():
            raise ValueError(f"db_host {db_host!r}: the port after ':' must be a number")
        port = int(port_text)
    if not host or host == socket.gethostname():
        host = "localhost"
    return host, port


@dataclass(frozen=True)
class DbSettings:
    name: str
    host: str = "localhost"
    port: int | None = None
    user: str = ""
    passwd: str = field(default="", repr=False)
    unix_socket: str | None = None

    @classmethod
    def from_config(cls, config: ProjectConfig) -> "DbSettings":
        host, port = parse_db_host(config.db_host)
        return cls(name=config.db_name, host=host, port=port,
                   user=config.db_user, passwd=config.db_passwd)

    @property
    def db_host(self) -> str:
        """The config.xml form of host and port."""
        return f"{self.host}:{self.port}" if self.port else self.host

    def with_name(self, name: str) -> "DbSettings":
        return DbSettings(name, self.host, self.port, self.user, self.passwd, self.unix_socket)

    def connect_args(self, with_database: bool = True) -> dict[str, Any]:
        args: dict[str, Any] = {"host": self.host, "user": self.user, "passwd": self.passwd,
                                "charset": "utf8mb4", "autocommit": True, "connect_timeout": 10}
        if with_database:
            args["db"] = self.name
        if self.port:
            args["port"] = self.port
        if self.unix_socket:
            args["unix_socket"] = self.unix_socket
        return args


def literal_of(value: Any) -> bytes:
    """One value as SQL literal text, without touching a connection (so it is thread-safe).

    Strings are escaped byte-wise in C, which is exact for utf8mb4 (the only connection
    charset we use): no multi-byte UTF-8 sequence contains a byte below 0x80.
    """
    if isinstance(value, str):
        return _mysql.string_literal(value.encode("utf-8"))
    if isinstance(value, bytes):
        return _mysql.string_literal(value)
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PermanentDbError(f"not a finite number: {value}")
        return repr(value).encode()
    if value is None:
        return b"NULL"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def _raise_if_failed(pending: list) -> None:
    """Surfaces a failed earlier INSERT at once instead of building the rest of the batch."""
    for future in pending:
        if future.done() and future.exception() is not None:
            raise future.exception()


SMALL_INSERT_ROWS = 64   # below this a sender thread costs more than it overlaps


class Database:
    """One connection. Statements outside `transaction()` commit at once (as in BOINC's own
    daemons), so a long-lived connection never reads from a stale snapshot.
    Not shared between threads."""

    def __init__(self, settings: DbSettings, with_database: bool = True):
        self.settings = settings
        self._with_database = with_database
        self._conn: MySQLdb.connections.Connection | None = None

    @classmethod
    def for_project(cls, config: ProjectConfig) -> "Database":
        return cls(DbSettings.from_config(config))

    def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            self._conn = MySQLdb.connect(**self.settings.connect_args(self._with_database))
        except MySQLdb.Error as exc:
            raise classify(exc) from None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(MySQLdb.Error):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "Database":
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def connection(self) -> MySQLdb.connections.Connection:
        self.connect()
        assert self._conn is not None
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Database"]:
        """Commits on success, rolls back on any exception (and re-raises it classified)."""
        conn = self.connection
        try:
            conn.begin()
        except MySQLdb.Error as exc:
            self.close()
            raise classify(exc) from None
        try:
            yield self
        except BaseException:
            self._rollback_quietly()
            raise
        try:
            conn.commit()
        except MySQLdb.Error as exc:
            self._rollback_quietly()
            raise classify(exc) from None

    def _rollback_quietly(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except MySQLdb.Error:
            self.close()  # the connection is broken; the next use reconnects

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Runs one statement; returns the affected row count."""
        with self._cursor() as cur:
            return cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self._cursor() as cur:
            return cur.executemany(sql, rows)

    literal = staticmethod(literal_of)

    def insert_rows(self, insert_prefix: str, rows: Iterable[Sequence[Any] | bytes],
                    max_statement: int = 1 << 20) -> list[int]:
        """Multi-row INSERTs of up to `max_statement` bytes each; returns the new ids in order.

        A row is a sequence of values, or bytes already rendered as `(literal,...)`. `rows`
        may be a generator: while the server runs one statement (the driver releases the
        GIL), the next is being built, so building and inserting overlap. Ids come from
        LAST_INSERT_ID() per statement, which InnoDB makes consecutive for multi-row
        inserts unless innodb_autoinc_lock_mode is 2; then the caller must look ids up.
        """
        prefix = insert_prefix.encode() + b" values "
        if isinstance(rows, (list, tuple)) and len(rows) <= SMALL_INSERT_ROWS:
            literals = [row if isinstance(row, bytes) else b"(" + b",".join(map(literal_of, row)) + b")"
                        for row in rows]
            return list(self._run_insert(prefix, literals)) if literals else []
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db-insert") as sender:
            pending: list[concurrent.futures.Future] = []
            chunk: list[bytes] = []
            size = 0
            for row in rows:
                literal = row if isinstance(row, bytes) else b"(" + b",".join(map(literal_of, row)) + b")"
                if chunk and size + len(literal) > max_statement:
                    pending.append(sender.submit(self._run_insert, prefix, chunk))
                    _raise_if_failed(pending)
                    chunk, size = [], 0
                chunk.append(literal)
                size += len(literal) + 1
            if chunk:
                pending.append(sender.submit(self._run_insert, prefix, chunk))
            return [row_id for future in pending for row_id in future.result()]

    def consecutive_autoinc(self) -> bool:
        return int(self.scalar("select @@innodb_autoinc_lock_mode")) < 2

    def _run_insert(self, prefix: bytes, literals: list[bytes]) -> range:
        with self._cursor() as cur:
            cur.execute(prefix + b",".join(literals))
            return range(cur.lastrowid, cur.lastrowid + len(literals))

    def insert(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Runs an INSERT and returns the new row's id."""
        with self._cursor() as cur:
            cur.execute(sql, params)
            return cur.lastrowid

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._cursor(MySQLdb.cursors.DictCursor) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def query_one(self, sql: str, params: Sequence[Any] | None = None) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self._cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None

    @contextlib.contextmanager
    def _cursor(self, cursor_class=MySQLdb.cursors.Cursor):
        cur = self.connection.cursor(cursor_class)
        try:
            yield cur
        except MySQLdb.Error as exc:
            error = classify(exc)
            if isinstance(error, TransientDbError):
                self.close()
            raise error from None
        finally:
            with contextlib.suppress(MySQLdb.Error):
                cur.close()
