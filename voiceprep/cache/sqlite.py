"""SQLite for the cache index: its errors made clear (classified by `sqlite_errorcode`),
"database is locked" retried, transactions that delete files only after they commit, and
statements over many keys in chunks.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from voiceprep.cache import faults
from voiceprep.cache.entries import EntryFiles, unlink_quietly
from voiceprep.errors import CacheError, CacheIndexError, CacheReadOnlyError

INDEX_NAME = "index.sqlite"
REPAIR_HINT = "run `voiceprep cache verify --repair` to rebuild it from the audio files"
# "database is locked" past SQLite's own busy timeout is retried up to this long.
_LOCKED_RETRY_SECONDS = 60.0
SQL_CHUNK = 500  # host parameters per statement stay well under SQLite's limit

T = TypeVar("T")


# --- errors ------------------------------------------------------------------------------


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_locked(exc: sqlite3.Error) -> bool:
    code = _code(exc)
    if code is not None:
        return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc).lower()  # raised by the sqlite3 module itself


def is_damage(exc: sqlite3.Error) -> bool:
    return _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def is_unwritable(exc: sqlite3.Error) -> bool:
    """SQLite cannot write here: read-only, full, an I/O error (its -shm file), cannot open."""
    return _code(exc) in (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
    )


def unwritable_reason(exc: sqlite3.Error) -> str:
    extended = getattr(exc, "sqlite_errorcode", None)
    if extended in (
        sqlite3.SQLITE_IOERR_SHMOPEN,
        sqlite3.SQLITE_IOERR_SHMSIZE,
        sqlite3.SQLITE_IOERR_SHMMAP,
    ):
        return f"SQLite cannot create {INDEX_NAME}-shm: the disk is full or not writable"
    code = _code(exc)
    if code == sqlite3.SQLITE_FULL:
        return "no space left on device"
    if code == sqlite3.SQLITE_READONLY:
        return "read-only"
    return str(exc)


def file_stat(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file: (inode, size, mtime), None when it cannot be seen."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def file_damage(path: Path) -> str | None:
    """Why SQLite cannot read the database file at `path` as it is on disk (`immutable`:
    not the pages its WAL holds newer copies of); None when it can, or for any other error.
    Read through SQLite only: closing a descriptor of the file would drop this process's
    SQLite locks on it (POSIX), and SQLite defers its own close while they are held."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # (opening a FIFO would block)
            return f"{INDEX_NAME} is not a regular file"
    except OSError:
        return None
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_damage(exc) else None
    return None


def damaged_index(directory: Path, reason: str) -> CacheIndexError:
    return CacheIndexError(
        f"{directory}: the cache index is damaged ({reason}); {REPAIR_HINT} "
        "(the damaged index is kept beside it)"
    )


def index_error(directory: Path, exc: sqlite3.Error) -> CacheError:
    """A clear CacheError for what SQLite reported."""
    code = _code(exc)
    if code == sqlite3.SQLITE_READONLY:
        return CacheReadOnlyError(f"{directory}: cache is read-only; nothing was stored")
    if code == sqlite3.SQLITE_FULL:
        return CacheError(f"{directory}: no space left on device; nothing was stored")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return damaged_index(directory, str(exc))
    if code == sqlite3.SQLITE_IOERR:
        return CacheError(f"{directory}: I/O error on the cache index; nothing was stored")
    if code == sqlite3.SQLITE_CANTOPEN:
        return CacheError(f"{directory}: cannot open the cache index ({exc})")
    return CacheError(f"{directory}: cache index error ({exc})")


def retry_locked(action: Callable[[], T]) -> T:
    """Run `action`, retrying "database is locked" with jittered backoff for a while."""
    deadline = time.monotonic() + _LOCKED_RETRY_SECONDS
    delay = 0.002
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


# --- transactions -------------------------------------------------------------------------


class Transaction:
    """BEGIN IMMEDIATE … COMMIT. Files handed to `delete_after_commit` are deleted only
    once the commit happened; callbacks given to `on_rollback` run when it did not.

    A doomed file is renamed to `<name>.del` at once, under the write lock, so a repair
    (which indexes entry files no row refers to, under the same lock) never takes it for
    an entry the index lost; it is unlinked after the commit, renamed back on rollback.
    Readers holding an older snapshot then find it gone: a miss, as after a deletion.
    """

    def __init__(self, conn: sqlite3.Connection, files: EntryFiles | None = None) -> None:
        self.conn = conn
        self.files = files
        self.committed = False
        self._doomed: list[tuple[Path, Path]] = []  # (doomed name, original name)
        self._undo: list[Callable[[], object]] = []

    def delete_after_commit(self, key: str, relative: str) -> None:
        if self.files is None:
            return
        doomed = self.files.doom(key, relative)
        if doomed is not None:
            self._doomed.append((doomed, self.files.directory / relative))
            faults.reached("doomed")

    def on_rollback(self, action: Callable[[], object]) -> None:
        self._undo.append(action)

    def __enter__(self) -> Transaction:
        retry_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (disk full, I/O error) leaves the transaction open.
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                    raise
                self.committed = True
            elif self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
        finally:
            if self.committed:
                # Only now, with the commit done, may the files it stopped referencing go.
                if self._doomed:
                    faults.reached("committed")
                for doomed, _ in self._doomed:
                    unlink_quietly(doomed)
            else:
                for doomed, original in self._doomed:
                    with contextlib.suppress(OSError):
                        os.rename(doomed, original)
                for action in self._undo:
                    with contextlib.suppress(OSError):
                        action()


# --- rows of many keys ------------------------------------------------------------


def in_chunks(keys: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """`keys` in chunks of SQL_CHUNK, each with its `?,?,…` for `key IN (…)`."""
    for start in range(0, len(keys), SQL_CHUNK):
        chunk = keys[start : start + SQL_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def select_rows(conn: sqlite3.Connection, columns: str, keys: Sequence[str]) -> list[sqlite3.Row]:
    """`columns` of the rows of `keys`."""
    rows: list[sqlite3.Row] = []
    for chunk, marks in in_chunks(keys):
        sql = f"SELECT {columns} FROM entries WHERE key IN ({marks})"
        rows += conn.execute(sql, chunk).fetchall()
    return rows


def delete_rows(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    for chunk, marks in in_chunks(keys):
        conn.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)
