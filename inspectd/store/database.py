"""One interface over the two databases the store writes: SQLite (a file) and PostgreSQL.

SQL is written once, with ``?`` placeholders and the subset both dialects share (upserts with
``ON CONFLICT``, ``BIGINT``, ``LIMIT``); the PostgreSQL connection turns ``?`` into ``%s``.
Both connections run in autocommit mode and the callers open transactions explicitly with
``transaction()``, so that a batch of messages is exactly one transaction in either dialect.
"""
from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from inspectd.errors import InspectdError

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]

# Exit status for a database that --db names and that cannot be used: a usage error, like any file
# a command-line argument names (docs/cli.md); restarting cannot fix it. A PostgreSQL server that
# does not answer is a run-time failure (1): systemd restarts the store until it does.
BAD_DB_EXIT = 2


class Database(Protocol):
    dialect: Dialect
    where: str                         # for messages: the file, or the URL without its password

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def transaction(self) -> contextlib.AbstractContextManager[None]: ...
    def size_bytes(self) -> int: ...
    def shrink(self) -> None: ...
    def close(self) -> None: ...


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def describe(url: str) -> str:
    """``url`` for messages and logs: a PostgreSQL URL loses its password."""
    if not is_postgres(url):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(url: str) -> Path:
    """The file of a ``--db`` value that is not PostgreSQL (a path, or ``sqlite:///path``)."""
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://"):] or ".").expanduser()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", url):
        raise InspectdError(f"--db {describe(url)!r}: unsupported database URL "
                            "(expected a SQLite file path or postgresql://USER@HOST/NAME)")
    if not url.strip():
        raise InspectdError("--db '': empty (expected a SQLite file path or postgresql://...)")
    return Path(url).expanduser()


def connect(url: str, *, read_only: bool = False) -> Database:
    """Open ``--db``: a SQLite file (created unless ``read_only``) or a PostgreSQL URL."""
    if is_postgres(url):
        return PostgresDatabase(url, read_only=read_only)
    return SQLiteDatabase(sqlite_path(url), read_only=read_only)


class SQLiteDatabase:
    """One SQLite file in WAL mode: readers (``inspectd web``) never block the writer.

    ``synchronous=NORMAL``: a committed transaction survives the process being killed
    (``kill -9``), it is in the WAL file; only a power loss may take the last few commits.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = path
        self.where = str(path)
        if read_only:
            if not path.is_file():
                raise InspectdError(f"--db {path}: no such database file (inspectd store creates it)",
                                    BAD_DB_EXIT)
            target, uri = f"file:{path.resolve()}?mode=ro", True
        else:
            if path.is_dir():
                raise InspectdError(f"--db {path}: is a folder, expected a database file", BAD_DB_EXIT)
            parent = path.parent if str(path.parent) else Path(".")
            if not parent.is_dir():
                raise InspectdError(f"--db {path}: folder {parent} does not exist", BAD_DB_EXIT)
            if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                raise InspectdError(f"--db {path}: not writable", BAD_DB_EXIT)
            target, uri = str(path), False
        try:
            self.conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False,
                                        timeout=30.0)
            self.conn.execute("PRAGMA busy_timeout=30000")
            if not read_only:
                # auto_vacuum takes effect only before the first table: a new file shrinks when
                # retention deletes (PRAGMA incremental_vacuum), an old one keeps its setting.
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise InspectdError(f"--db {path}: cannot use write-ahead logging (journal mode {mode})",
                                        BAD_DB_EXIT)
                self.conn.execute("PRAGMA synchronous=NORMAL")
                # Room for the indexes' hot pages, and fewer, larger checkpoints at high rates.
                self.conn.execute("PRAGMA cache_size=-65536")
                self.conn.execute("PRAGMA wal_autocheckpoint=4000")
            else:
                self.conn.execute("PRAGMA query_only=1")
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InspectdError(f"--db {path}: not a usable SQLite database: {exc}", BAD_DB_EXIT) from None
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def size_bytes(self) -> int:
        """Pages in use (free pages are reused or handed back by incremental vacuum)."""
        page = self.conn.execute("PRAGMA page_size").fetchone()[0]
        count = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(page) * (int(count) - int(free))

    def shrink(self) -> None:
        """Hand free pages back to the file system (only on files created by the store)."""
        self.conn.execute("PRAGMA incremental_vacuum")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.close()


class PostgresDatabase:
    """A PostgreSQL server through psycopg 3; same tables as SQLite (see ``migrations``)."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False):
        self.where = describe(url)
        try:
            import psycopg
        except ModuleNotFoundError:
            raise InspectdError(f"--db {self.where}: PostgreSQL needs psycopg: pip install 'inspectd[store]'",
                                BAD_DB_EXIT) from None
        self._psycopg = psycopg
        try:
            urlsplit(url).port  # noqa: B018 - reading .port validates it (ValueError)
        except ValueError as exc:
            raise InspectdError(f"--db {self.where}: invalid PostgreSQL URL: {exc}") from None
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError as exc:     # the URL itself is malformed
            raise InspectdError(f"--db {self.where}: invalid PostgreSQL URL: {_first_line(exc)}") from None
        except psycopg.OperationalError as exc:
            raise InspectdError(f"--db {self.where}: cannot connect: {_first_line(exc)}", exit_code=1) from None
        if read_only:
            self.conn.execute("SET default_transaction_read_only = on")
        self._depth = 0

    @staticmethod
    def _sql(sql: str) -> str:
        # The store's SQL has no literal "%" (no LIKE patterns), so no escaping is needed.
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.conn.execute(self._sql(sql), params or None)
        return cur.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(self._sql(sql), params or None).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self.conn.transaction():
                yield
        finally:
            self._depth = 0

    def size_bytes(self) -> int:
        row = self.conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None  # an aggregate returns one row
        return int(row[0])

    def shrink(self) -> None:
        """Make deleted rows' space reusable now (VACUUM; the files keep their size)."""
        self.conn.execute("VACUUM")

    def close(self) -> None:
        self.conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
