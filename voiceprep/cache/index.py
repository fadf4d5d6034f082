"""The index: SQLite connections, fork and read-only handling, schema and migrations, the
eviction policy, and rows <-> records (a row's CacheEntry, the checked read of its file,
the insert of a new row). Its SQLite errors and transactions are `voiceprep.cache.sqlite`.

One SQLite file in WAL mode (`synchronous=NORMAL`); a connection per thread, opened
again after fork(); rows read as `sqlite3.Row`; errors classified by `sqlite_errorcode`.
Every statement runs with its connection held (`_holding`): `close()` closes the idle
connections at once and one another thread is using when its user lets go of it, so a
close never breaks a query or a transaction in flight (as diskcache's per-thread close).
Before each statement the index file's stat is compared with the last one seen, and a
changed file is read by a fresh connection: SQLite answers from pages it cached, so a
file damaged under open connections (overwritten) would otherwise go unnoticed until some
later read, and whether a request saw it would depend on timing. (The file is never
opened outside SQLite: closing any descriptor of it drops the process's SQLite locks.)
A new index is built in a temporary file and linked into place, so an index file is
never seen half-created: a 0-byte or foreign index is damage, never "an empty cache".
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from voiceprep.cache.entries import (
    AUDIO_DIR,
    EntryFiles,
    UnsafeEntry,
    check_entry,
    encode_entry,
    unlink_quietly,
    valid_name,
    write_error,
    writer_tag,
)
from voiceprep.cache.records import CacheEntry
from voiceprep.cache.schema import (
    BASE_COLUMNS,
    COLUMNS,
    MIGRATIONS,
    POLICY,
    SCHEMA_VERSION,
    create_index_file,
)
from voiceprep.cache.sqlite import (
    INDEX_NAME,
    Transaction,
    damaged_index,
    file_damage,
    file_stat,
    in_chunks,
    index_error,
    is_damage,
    is_unwritable,
    retry_locked,
    unwritable_reason,
)
from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    CacheIndexError,
    CacheReadOnlyError,
    CacheVersionError,
)

# Hits are written to the index in batches: after this many, or this many seconds.
HIT_FLUSH_COUNT = 256
HIT_FLUSH_SECONDS = 10.0
_BUSY_TIMEOUT_SECONDS = 10.0

# Connections inherited through fork() belong to the parent: never closed by the child.
_INHERITED: list[sqlite3.Connection] = []


# --- the index -------------------------------------------------------------------------


class Index:
    """Connections and pending hits of one cache directory's index."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / INDEX_NAME
        self.files = EntryFiles(directory)
        self.lock = threading.Lock()
        self.local = threading.local()
        # Open connections -> how many uses are in flight; a closed one still in use waits
        # in `closing` for its last user (with the private copy it may read).
        self.connections: dict[sqlite3.Connection, int] = {}
        self.closing: dict[sqlite3.Connection, int] = {}
        self.closing_copy: str | None = None
        self.pid = os.getpid()
        self.read_only: bool | None = None  # decided when the index is first opened
        self.read_only_reason = "cache is read-only"
        self.version = SCHEMA_VERSION  # of the index as opened (lower until migrated)
        self.copy_dir: str | None = None  # private copy of an index we could not open in place
        self.seen: tuple[int, int, int] | None = None  # the index file's stat, last checked
        self.pending: dict[str, list[float]] = {}  # key -> [hits, last_used]
        self.last_flush = time.monotonic()

    @property
    def columns(self) -> str:
        """The entry columns to select, whatever the version of the index as opened."""
        self.reader()  # the version is known once the index is open
        return COLUMNS if self.version >= 2 else BASE_COLUMNS + ", NULL AS loudness"

    # connections ------------------------------------------------------------------------

    def connection(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None when there is no index and `create` is false."""
        if os.getpid() != self.pid:
            self._after_fork()
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is not None:
            return conn
        try:
            size = self.path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                return None
            self._create()  # raises a clear CacheError when the directory cannot be made
        else:
            if size == 0:
                raise damaged_index(self.directory, f"{INDEX_NAME} is empty, 0 bytes")
        conn = self._open()
        with self.lock:
            self.local.conn = conn
            self.connections[conn] = 0
        return conn

    @contextlib.contextmanager
    def _holding(
        self, opener: Callable[[], sqlite3.Connection | None]
    ) -> Iterator[sqlite3.Connection | None]:
        """This thread's connection (from `opener`), which `close()` leaves open until the
        block ends."""
        while True:
            conn = opener()
            if conn is None:
                yield None
                return
            self._check_file()
            with self.lock:
                if conn in self.connections:
                    self.connections[conn] += 1
                    break
            # close() ran since this thread opened it (and forgot it): open another
        try:
            yield conn
        finally:
            self._release(conn)

    def _check_file(self) -> None:
        """Raise CacheIndexError when the index file changed since last seen into something
        SQLite cannot read (one stat; the file itself read only when it changed)."""
        seen = file_stat(self.path)
        if seen is None or seen == self.seen:
            return  # unchanged, or gone (SQLite reports what it can still read)
        damage = file_damage(self.path)
        if damage is not None and file_stat(self.path) == seen:  # (not a checkpoint's write)
            raise damaged_index(self.directory, damage)
        self.seen = seen

    def _release(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            if conn in self.connections:
                self.connections[conn] -= 1
                return
            self.closing[conn] -= 1
            if self.closing[conn]:
                return
            del self.closing[conn]
            copy_dir = None if self.closing else self.closing_copy
            if copy_dir is not None:
                self.closing_copy = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)

    def reader(self) -> sqlite3.Connection | None:
        try:
            return self.connection(create=False)
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    def check_replaceable(self) -> None:
        """Before replacing the index (rebuild): the directory is writable and the index is
        not a newer voiceprep's (a damaged one is fine: it is moved aside)."""
        if os.path.isdir(self.directory) and not os.access(self.directory, os.W_OK):
            raise CacheReadOnlyError(f"{self.directory}: cache is read-only; nothing was changed")
        with contextlib.suppress(CacheIndexError):
            self.reader()

    def _writable(self) -> sqlite3.Connection:
        conn = self.connection(create=True)
        assert conn is not None
        if self.read_only:
            reason = self.read_only_reason
            raise CacheReadOnlyError(f"{self.directory}: {reason}; nothing was stored")
        return conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held, that may write: the index exists at the current
        schema version."""
        with self._holding(self._writable) as conn:
            assert conn is not None
            if self.version < SCHEMA_VERSION:
                self._migrate(conn)
            yield conn

    def writable(self) -> None:
        """Raise unless the index may be written (creating or migrating it)."""
        try:
            with self._writing():
                pass
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            with self._holding(self.reader) as conn:
                if conn is None:
                    return []
                return retry_locked(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[tuple[sqlite3.Connection, Transaction]]:
        """A short write transaction; pending hits ride along for free."""
        try:
            with self._writing() as conn, Transaction(conn, self.files) as transaction:
                rows = self.take_pending()
                if rows:
                    self.apply_hits(conn, rows)
                yield conn, transaction
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    def _after_fork(self) -> None:
        # SQLite connections must not cross fork(): keep the parent's alive, never use them.
        _INHERITED.extend([*self.connections, *self.closing])
        self.connections, self.closing = {}, {}
        self.local = threading.local()
        self.lock = threading.Lock()
        self.pending = {}
        self.pid = os.getpid()

    def _create_directory(self) -> None:
        try:
            (self.directory / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheReadOnlyError(
                    f"{self.directory}: cannot create the cache here ({exc.strerror})"
                ) from exc
            raise CacheError(f"{self.directory}: cannot create the cache ({exc.strerror})") from exc

    def _create(self) -> None:
        """Build an empty index in a temporary file and link it into place (never replacing)."""
        self._create_directory()
        temp = self.directory / f"{INDEX_NAME}.{writer_tag()}.tmp"
        try:
            create_index_file(temp)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if not self.path.exists():  # a filesystem without hard links
                    os.rename(temp, self.path)
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc
        except OSError as exc:
            raise write_error(self.directory, exc) from exc
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                unlink_quietly(f"{temp}{suffix}")

    def _open(self) -> sqlite3.Connection:
        writable = os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)
        try:
            if writable:
                try:
                    conn = self._open_read_write()
                except sqlite3.OperationalError as exc:
                    if not is_unwritable(exc) or is_damage(exc):
                        raise
                    # A nearly full disk (SQLite cannot create its -shm file), an I/O error:
                    # reads still work through a read-only connection.
                    conn = self._open_read_only()
                    self.read_only_reason = (
                        f"cannot write the cache index ({unwritable_reason(exc)}); "
                        "reads work, writes do not"
                    )
                    writable = False
            else:
                conn = self._open_read_only()
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc
        self.read_only = not writable
        return conn

    def _connect(self, target: str | Path, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False, **kwargs
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _open_read_write(self) -> sqlite3.Connection:
        conn = self._connect(self.path, isolation_level=None)
        try:
            retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        # A WAL database in a directory we cannot write: `mode=ro` works when the -shm
        # file exists; otherwise an index whose WAL is empty opens with `immutable=1`, and
        # one with committed pages still in its WAL is read from a private copy.
        uri = self.path.resolve().as_uri()
        conn = self._connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        try:
            self._check_schema(conn)
            return conn
        except sqlite3.OperationalError:
            conn.close()
        wal = self.path.with_name(INDEX_NAME + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            with self.lock:  # one copy per AudioCache, shared by its threads
                if self.copy_dir is None:
                    copy_dir = tempfile.mkdtemp(prefix="voiceprep-index-")
                    for name in (INDEX_NAME, INDEX_NAME + "-wal"):
                        shutil.copyfile(self.directory / name, Path(copy_dir) / name)
                    self.copy_dir = copy_dir
            conn = self._connect(Path(self.copy_dir) / INDEX_NAME, isolation_level=None)
        else:
            conn = self._connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        try:
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CacheVersionError(
                f"{self.directory}: the cache index has schema version {version}, written by "
                f"a newer voiceprep (this one reads version {SCHEMA_VERSION}); upgrade "
                "voiceprep or use another cache directory"
            )
        if version < 1:
            raise damaged_index(self.directory, f"{INDEX_NAME} holds no voiceprep index")
        self.version = min(self.version, version)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older index to SCHEMA_VERSION (only ever when something is written)."""
        with Transaction(conn):
            # Another process may have migrated it while we waited for the lock.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.version = SCHEMA_VERSION

    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        with contextlib.suppress(CacheError, sqlite3.Error, OSError):
            self.flush_hits()
        with self.lock:
            connections, self.connections = self.connections, {}
            self.local = threading.local()
            idle = [conn for conn, users in connections.items() if not users]
            self.closing.update((conn, users) for conn, users in connections.items() if users)
            copy_dir, self.copy_dir = self.copy_dir, None
            if copy_dir is not None and self.closing:  # removed by the last user
                self.closing_copy, copy_dir = copy_dir, None
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)

    # rows <-> records ----------------------------------------------------------------

    def entry_of(self, row: sqlite3.Row) -> CacheEntry:
        """The record of a row read with `self.columns`."""
        return CacheEntry(
            key=row["key"],
            text=row["text"],
            backend=row["backend"],
            model=row["model"],
            voice=row["voice"],
            options=json.loads(row["options"]),
            rate=row["rate"],
            channels=row["channels"],
            duration=row["duration"],
            size=row["size"],
            sha256=row["sha256"],
            created=row["created"],
            last_used=row["last_used"],
            hits=row["hits"],
            path=self.directory / row["file"],
            loudness=row["loudness"],
        )

    def row(self, key: str, columns: str = "") -> sqlite3.Row | None:
        """The row of `key` (`columns`, default all), None when it has none."""
        rows = self.query(f"SELECT {columns or self.columns} FROM entries WHERE key = ?", (key,))
        return rows[0] if rows else None

    def contains(self, key: str) -> bool:
        """Whether `key` has a committed row whose file is present."""
        row = self.row(key, "file")
        return row is not None and self.files.exists(key, row["file"])

    def cached(self, keys: Sequence[str]) -> set[str]:
        """Which of `keys` have a row."""
        found: set[str] = set()
        for chunk, marks in in_chunks(keys):
            rows = self.query(f"SELECT key FROM entries WHERE key IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    def read_file(self, key: str, file: str) -> bytes | None:
        """A row's file bytes; None when gone; CacheCorruptError when it is not ours."""
        try:
            return self.files.read(key, file)
        except UnsafeEntry as exc:
            raise CacheCorruptError(
                f"{key[:16]}: the index points at {exc} (refused); "
                "run `voiceprep cache verify --repair`"
            ) from exc

    def read_pcm(self, key: str, file: str, rate: int, channels: int, sha256: str) -> bytes | None:
        """The PCM of a row's file, checked; None when the file is gone (evicted meanwhile)."""
        blob = self.read_file(key, file)
        if blob is None:
            return None
        where = f"{self.directory}/{file}"
        pcm, _ = check_entry(
            blob, key=key, rate=rate, channels=channels, sha256=sha256, where=where
        )
        return pcm

    def check_row(self, row: sqlite3.Row, blob: bytes) -> tuple[bytes, bool]:
        """Every check of a row's file, metadata included: (PCM, whether self-describing)."""
        return check_entry(
            blob,
            key=row["key"],
            rate=row["rate"],
            channels=row["channels"],
            sha256=row["sha256"],
            where=str(self.directory / row["file"]),
            full=True,
        )

    def entry_bytes(self, key: str) -> bytes:
        """The whole self-describing entry file of `key`, checked (KeyError if not cached);
        an old-format file comes back in the current format, built from its row."""
        row = self.row(key)
        blob = None if row is None else self.read_file(key, row["file"])
        if row is None or blob is None:
            raise KeyError(key)
        pcm, described = self.check_row(row, blob)
        return blob if described else encode_entry(pcm, self.entry_of(row).meta)

    def restore_interrupted(self, key: str, file: str) -> bool:
        """Finish the rollback of a writer killed inside its transaction, as SQLite rolls
        back a hot journal: a dropped row's file is renamed `<name>.del` before the commit,
        so a row that still names a missing file beside its `.del` is one whose drop never
        committed. True when the file is back. Checked under the write lock (a drop still
        in flight commits first, and then the row no longer names it)."""
        if self.read_only or not valid_name(key, file):
            return False  # (a row is input: never look outside the cache)
        if not os.path.lexists((self.directory / file).with_suffix(".del")):
            return False
        try:
            with self.write() as (conn, _):
                sql = "SELECT 1 FROM entries WHERE key = ? AND file = ?"
                if conn.execute(sql, (key, file)).fetchone() is None:
                    return False
                return self.files.undoom(key, file)
        except CacheError:
            return False

    # hits ---------------------------------------------------------------------------

    def record_hit(self, key: str) -> None:
        now = time.time()
        with self.lock:
            slot = self.pending.setdefault(key, [0, now])
            slot[0] += 1
            slot[1] = now
            due = (
                len(self.pending) >= HIT_FLUSH_COUNT
                or time.monotonic() - self.last_flush >= HIT_FLUSH_SECONDS
            )
        if due:
            # Statistics only: a hit never fails because they could not be written.
            with contextlib.suppress(CacheError, sqlite3.Error, OSError):
                self.flush_hits()

    def take_pending(self) -> list[tuple[int, float, str]]:
        with self.lock:
            pending, self.pending = self.pending, {}
            self.last_flush = time.monotonic()
        return [(int(hits), last_used, key) for key, (hits, last_used) in pending.items()]

    def apply_hits(self, conn: sqlite3.Connection, rows: Sequence[tuple[int, float, str]]) -> None:
        conn.executemany(POLICY["hit"], rows)

    def flush_hits(self) -> None:
        if not self.pending or os.getpid() != self.pid:
            return
        rows = self.take_pending()
        if self.read_only:
            return
        with self._holding(self.reader) as conn:
            if conn is None or self.read_only:
                return
            with Transaction(conn):
                self.apply_hits(conn, rows)

    def quiet_flush(self) -> None:
        with contextlib.suppress(CacheError, sqlite3.Error, OSError):
            self.flush_hits()


def insert_row(conn: sqlite3.Connection, entry: CacheEntry, relative: str) -> None:
    """The row of `entry`, whose file is `relative` (records -> rows)."""
    conn.execute(
        f"INSERT INTO entries ({COLUMNS}) VALUES ({', '.join('?' * 16)})",
        (
            entry.key,
            relative,
            entry.text,
            entry.backend,
            entry.model,
            entry.voice,
            json.dumps(entry.options, sort_keys=True, ensure_ascii=False, default=str),
            entry.rate,
            entry.channels,
            entry.duration,
            entry.size,
            entry.sha256,
            entry.created,
            entry.last_used,
            entry.hits,
            entry.loudness,
        ),
    )
