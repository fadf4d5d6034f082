"""Maintenance: verify, repair, rebuild and merge one cache directory.

`verify` checks every row against its file and lists leftovers. `verify(repair=True)`
drops rows of missing or corrupt entries (never following a row outside the cache),
indexes self-describing files no row refers to instead of deleting them, rewrites
old-format files with their metadata chunk, removes true leftovers, and rebuilds a
damaged, empty or missing index from the files (`rebuild`), moving the old one aside.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from voiceprep.cache import entries as _entries
from voiceprep.cache.entries import (
    UnsafeEntry,
    check_pcm,
    encode_entry,
    entry_name,
    file_meta,
    read_entry,
    unlink_quietly,
    valid_name,
    writer_gone,
    writer_of,
    writer_tag,
)
from voiceprep.cache.index import Index, insert_row
from voiceprep.cache.leases import expire_lapsed
from voiceprep.cache.records import (
    CacheEntry,
    EntryMeta,
    MergeReport,
    RebuildReport,
    VerifyReport,
)
from voiceprep.cache.schema import POLICY, create_index_file
from voiceprep.cache.sqlite import INDEX_NAME, Transaction, index_error
from voiceprep.cache.writes import Limits, store_entry
from voiceprep.errors import CacheCorruptError, CacheError, CacheIndexError, InputError


def settled(path: Path) -> bool:
    """Whether an unreferenced WAV is a leftover rather than a write about to commit.

    Its name carries its writer (`<key>.<host>-<pid>-<random>.wav`): a leftover when
    that process is gone from this host, when the name carries no writer, or once it
    is older than ORPHAN_GRACE_SECONDS (a live writer commits within moments).
    """
    writer = writer_of(path)
    if writer is None or writer_gone(writer):
        return True
    return _entries.older_than(path, _entries.ORPHAN_GRACE_SECONDS)


def temp_is_stale(path: Path) -> bool:
    """A temporary is stale when its writer (pid on this host) is gone, or it is old."""
    return writer_gone(writer_of(path)) or _entries.older_than(path, _entries.STALE_TEMP_SECONDS)


def remove_stale_temps(index: Index, temps: list[Path] | None = None) -> None:
    """Delete stale temporaries. A stale `.del` whose row still names its file is the
    drop of a writer killed before it committed: restored, never deleted."""
    if temps is None:
        temps = [temp for temp in index.files.scan()[1] if temp_is_stale(temp)]
    for temp in temps:
        if temp.suffix == ".del":
            key = temp.name.partition(".")[0]
            relative = temp.with_suffix(".wav").relative_to(index.directory).as_posix()
            if index.restore_interrupted(key, relative):
                continue
        unlink_quietly(temp)


@dataclass
class _Found:
    """What verify learned that repair acts on."""

    files_by_key: dict[str, str]
    upgrades: list[str]  # keys whose intact file has no metadata chunk
    adopt: list[tuple[Path, EntryMeta, int]]  # (file, its metadata, PCM bytes)


def verify(index: Index, *, repair: bool = False) -> VerifyReport:
    index.quiet_flush()
    try:
        return _verify(index, repair=repair)
    except CacheIndexError:
        if not repair:
            raise
    return _rebuilt_report(index)


def _rebuilt_report(index: Index) -> VerifyReport:
    result = rebuild(index)
    report = _verify(index, repair=True)
    report.rebuilt = True
    report.moved_aside = result.moved_aside
    report.corrupt += [(str(path), reason) for path, reason in result.unreadable]
    report.repaired = True
    return report


def _verify(index: Index, *, repair: bool) -> VerifyReport:
    files = index.files
    report = VerifyReport()
    if index.reader() is None:
        if repair and files.scan()[0]:
            return _rebuilt_report(index)  # a missing index, entry files still there
        return report
    if repair:
        index.writable()
    rows = index.query("SELECT key, file, rate, channels, size, sha256 FROM entries")
    report.index_errors = _index_problems(index)
    if repair and any(not p.startswith("running totals") for p in report.index_errors):
        raise CacheIndexError(f"{index.directory}: {report.index_errors[0]}")
    referenced = {row["file"] for row in rows}
    found = _Found({row["key"]: row["file"] for row in rows}, [], [])
    bad_keys: set[str] = set()
    for row in rows:
        key, file = row["key"], row["file"]
        report.checked += 1
        problem, old_format = _entry_problem(index, row)
        if problem == "missing" and index.restore_interrupted(key, file):
            problem, old_format = _entry_problem(index, row)
        if problem is None:
            if old_format:
                report.old_format += 1
                found.upgrades.append(key)
            continue
        if not _still_refers(index, key, file):
            continue
        bad_keys.add(key)
        if problem == "missing":
            report.missing.append(key)
        else:
            report.corrupt.append((key, problem))
    wavs, temps = files.scan()
    for path in sorted(wavs):
        relative = path.relative_to(index.directory).as_posix()
        if relative in referenced or not settled(path):
            continue
        adoptable = _adoptable(path)
        if adoptable is not None and (
            adoptable[0].key not in found.files_by_key or adoptable[0].key in bad_keys
        ):
            report.adoptable.append(path)
            found.adopt.append((path, *adoptable))
        else:
            report.orphans.append(path)
    report.stale_temps = sorted(p for p in temps if temp_is_stale(p))
    if repair:
        _repair(index, report, found)
    return report


def _adoptable(path: Path) -> tuple[EntryMeta, int] | None:
    """(metadata, PCM bytes) of an unreferenced file that describes itself, else None."""
    try:
        info = os.lstat(path)
        if info.st_size > _entries.MAX_ENTRY_BYTES:
            return None
        meta, pcm = read_entry(path.read_bytes(), where=str(path))
    except (OSError, CacheCorruptError):
        return None
    return (meta, len(pcm)) if path.name.startswith(meta.key + ".") else None


def _index_problems(index: Index) -> list[str]:
    query = index.query
    problems = [row[0] for row in query("PRAGMA quick_check")]
    problems = [] if problems == ["ok"] else problems
    totals = query("SELECT count, size FROM totals WHERE id = 0")
    actual = query("SELECT count(*), coalesce(sum(size), 0) FROM entries")
    # Writers may commit between the two reads: only a difference that persists counts.
    if totals and actual and tuple(totals[0]) != tuple(actual[0]):
        again = query(
            "SELECT (SELECT count FROM totals WHERE id = 0) - count(*), "
            "(SELECT size FROM totals WHERE id = 0) - coalesce(sum(size), 0) FROM entries"
        )
        if again and tuple(again[0]) != (0, 0):
            problems.append(f"running totals off by {again[0][0]} entries, {again[0][1]} bytes")
    return problems


def _entry_problem(index: Index, row: sqlite3.Row) -> tuple[str | None, bool]:
    """(what is wrong with a row's entry or None, whether its file is old-format)."""
    key, file = row["key"], row["file"]
    try:
        actual = index.files.size(key, file)
    except UnsafeEntry as exc:
        return f"refused: {exc}", False
    if actual is None:
        return "missing", False
    if actual != row["size"]:
        return f"size {actual} bytes, recorded {row['size']}", False
    try:
        blob = index.files.read(key, file)
        if blob is None:
            return "missing", False
        _, described = index.check_row(row, blob)
    except UnsafeEntry as exc:
        return f"refused: {exc}", False
    except CacheCorruptError as exc:
        return str(exc).split(": ", 1)[-1], False
    return None, not described


def _still_refers(index: Index, key: str, file: str) -> bool:
    """Whether the row still names that file, asked after any write in progress committed.

    A writer dropping a row renames its file inside its transaction: a reader's older
    snapshot may still show the row. Under the write lock the answer is the committed one.
    """
    sql = "SELECT 1 FROM entries WHERE key = ? AND file = ?"
    conn = index.reader()
    if conn is None or index.read_only:
        return bool(index.query(sql, (key, file)))
    try:
        with Transaction(conn):  # takes the write lock, writes nothing (no migration)
            return conn.execute(sql, (key, file)).fetchone() is not None
    except sqlite3.DatabaseError as exc:
        raise index_error(index.directory, exc) from exc


def _repair(index: Index, report: VerifyReport, found: _Found) -> None:
    bad = report.missing + [key for key, _ in report.corrupt]
    with index.write() as (conn, tx):
        for key in bad:
            file = found.files_by_key[key]
            conn.execute("DELETE FROM entries WHERE key = ? AND file = ?", (key, file))
            if key in dict(report.corrupt) and not dict(report.corrupt)[key].startswith("refused"):
                tx.delete_after_commit(key, file)  # `refused`: never touch what is not ours
        for path, meta, pcm_bytes in found.adopt:
            _adopt(index, conn, path, meta, pcm_bytes)
        conn.execute(
            "UPDATE totals SET count = (SELECT count(*) FROM entries), "
            "size = (SELECT coalesce(sum(size), 0) FROM entries) WHERE id = 0"
        )
        # Orphans go while we hold the write lock, after checking again that no row
        # refers to them: a put that renamed its file but has not committed yet checks,
        # under the same lock, that its file still exists.
        for orphan in report.orphans:
            relative = orphan.relative_to(index.directory).as_posix()
            if conn.execute("SELECT 1 FROM entries WHERE file = ?", (relative,)).fetchone():
                continue
            unlink_quietly(orphan)
    remove_stale_temps(index, report.stale_temps)
    for key in found.upgrades:
        with contextlib.suppress(CacheError):
            _upgrade(index, key)
    with contextlib.suppress(CacheError):
        expire_lapsed(index)
    report.repaired = True


def _adopt(
    index: Index, conn: sqlite3.Connection, path: Path, meta: EntryMeta, pcm_bytes: int
) -> None:
    """Index a self-describing file no row refers to (inside the repair's transaction)."""
    relative = path.relative_to(index.directory).as_posix()
    if not valid_name(meta.key, relative) or not path.exists():
        return
    old = conn.execute("SELECT file FROM entries WHERE key = ?", (meta.key,)).fetchone()
    if old is not None:
        return  # a writer stored the key meanwhile (the damaged row is already gone)
    info = path.stat()
    entry = CacheEntry.from_meta(
        meta,
        path=path,
        size=info.st_size,
        pcm_bytes=pcm_bytes,
        last_used=max(info.st_mtime, meta.created),
    )
    insert_row(conn, entry, relative)


def _upgrade(index: Index, key: str) -> None:
    """Rewrite an old-format entry file with its metadata chunk (same audio, new name)."""
    row = index.row(key, "file")
    if row is None:
        return
    blob = index.entry_bytes(key)  # built from the row for an old-format file
    relative = entry_name(key)
    index.files.write(relative, key, blob)
    old = row["file"]
    with index.write() as (conn, tx):
        tx.on_rollback(lambda: unlink_quietly(index.directory / relative))
        cursor = conn.execute(
            "UPDATE entries SET file = ?, size = ? WHERE key = ? AND file = ?",
            (relative, len(blob), key, old),
        )
        if cursor.rowcount == 1:
            tx.delete_after_commit(key, old)
        else:
            tx.delete_after_commit(key, relative)  # replaced meanwhile: ours is not needed


# --- rebuild ----------------------------------------------------------------------------


def _old_rows(index: Index) -> dict[str, sqlite3.Row]:
    """The rows of the current index by file, when it can still be read (else empty)."""
    try:
        rows = index.query(f"SELECT {index.columns} FROM entries")
    except CacheError:
        return {}
    return {row["file"]: row for row in rows}


def rebuild(index: Index) -> RebuildReport:
    files = index.files
    index.check_replaceable()
    old_rows = _old_rows(index)
    index.close()
    chosen: dict[str, tuple[EntryMeta, bytes, str, float, int, bool]] = {}
    unreadable: list[tuple[Path, str]] = []
    for path in sorted(files.scan()[0]):
        relative = path.relative_to(index.directory).as_posix()
        key = path.name.split(".", 1)[0]
        try:
            blob = files.read(key, relative)
        except (UnsafeEntry, CacheError) as exc:
            unreadable.append((path, str(exc)))
            continue
        if blob is None:
            continue
        row = old_rows.get(relative)
        upgrade = False
        meta: EntryMeta | None
        try:
            meta, _ = read_entry(blob, where=str(path))
        except CacheCorruptError as exc:
            meta = _meta_from_row(index, blob, row) if file_meta(blob) is None else None
            if meta is None:
                unreadable.append((path, str(exc).split(": ", 1)[-1]))
                continue
            upgrade = True
        if meta.key != key:
            unreadable.append((path, "the file name does not match the key it holds"))
            continue
        st = path.stat()
        last_used = row["last_used"] if row is not None else st.st_mtime
        hits = row["hits"] if row is not None else 0
        previous = chosen.get(meta.key)
        if previous is None or meta.created > previous[0].created:
            chosen[meta.key] = (meta, blob, relative, last_used, hits, upgrade)
    temp = index.directory / f"{INDEX_NAME}.{writer_tag()}.tmp"
    upgraded: list[tuple[str, str]] = []  # (key, old file) replaced by an upgraded one
    try:
        create_index_file(temp)
        conn = sqlite3.connect(temp, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for meta, blob, relative, last_used, hits, upgrade in chosen.values():
                pcm = check_pcm(
                    blob, rate=meta.rate, channels=meta.channels, sha256=meta.sha256, where=relative
                )
                if upgrade:
                    blob = encode_entry(pcm, meta)
                    new_relative = entry_name(meta.key)
                    files.write(new_relative, meta.key, blob)
                    upgraded.append((meta.key, relative))
                    relative = new_relative
                entry = CacheEntry.from_meta(
                    meta,
                    path=index.directory / relative,
                    size=len(blob),
                    pcm_bytes=len(pcm),
                    last_used=max(last_used, meta.created),
                    hits=hits,
                )
                insert_row(conn, entry, relative)
            conn.execute("COMMIT")
        finally:
            conn.close()
        moved = _move_aside(index.path)
        os.replace(temp, index.path)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            unlink_quietly(f"{temp}{suffix}")
    for key, old in upgraded:
        files.unlink(key, old)
    return RebuildReport(
        indexed=len(chosen),
        upgraded=len(upgraded),
        unreadable=unreadable,
        moved_aside=moved,
    )


def _meta_from_row(index: Index, blob: bytes, row: sqlite3.Row | None) -> EntryMeta | None:
    """An old-format file's metadata from the old index's row, if the file matches it."""
    if row is None:
        return None
    try:
        check_pcm(blob, rate=row["rate"], channels=row["channels"], sha256=row["sha256"], where="")
    except CacheCorruptError:
        return None
    return index.entry_of(row).meta


def _move_aside(path: Path) -> Path | None:
    """Rename an index (and its -wal/-shm) to `index.sqlite.moved-<time>`; never delete."""
    if not os.path.lexists(path):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.moved-{stamp}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.name}.moved-{stamp}-{n}")
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if os.path.lexists(side):
            os.rename(side, Path(f"{target}{suffix}"))
    return target


# --- merge ------------------------------------------------------------------------------


def merge(index: Index, source_dir: str | os.PathLike[str], *, limits: Limits) -> MergeReport:
    """Import the entries of the cache at `source_dir` into `index`'s (see AudioCache.merge)."""
    source_path = Path(source_dir).expanduser().absolute()
    if not (source_path / INDEX_NAME).is_file():
        raise InputError(f"{source_path}: not a voiceprep cache (no {INDEX_NAME})")
    if source_path.resolve() == index.directory.resolve():
        raise InputError(f"{source_path}: cannot merge a cache into itself")
    report = MergeReport()
    present = {row[0] for row in index.query("SELECT key FROM entries")}
    source = Index(source_path)
    try:
        rows = source.query(f"SELECT {source.columns} FROM entries {POLICY['listing']}")
        for row in rows:
            item = source.entry_of(row)
            if item.key in present:
                report.skipped += 1
                continue
            blob = source.read_file(item.key, row["file"])
            if blob is None:
                report.failed.append((item.key, f"{item.path}: file missing"))
                continue
            try:
                pcm, described = source.check_row(row, blob)
            except CacheCorruptError as exc:
                report.failed.append((item.key, str(exc)))
                continue
            # What the file says of itself (its word timings too), else its row's account.
            meta = (file_meta(blob) if described else None) or item.meta
            _, stored = store_entry(
                index,
                meta,
                pcm,
                limits=limits,
                last_used=item.last_used,
                hits=item.hits,
                replace=False,
            )
            if stored:
                report.imported += 1
            else:
                report.skipped += 1
    finally:
        source.close()
    return report
