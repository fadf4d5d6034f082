"""The index's schema: its tables, the eviction policy's SQL, the migrations from older
versions, and the creation of an empty index file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from voiceprep.cache.sqlite import Transaction

SCHEMA_VERSION = 2

_ENTRIES = """
    CREATE TABLE entries (
        key TEXT PRIMARY KEY,
        file TEXT NOT NULL,          -- path of the WAV, relative to the cache directory
        text TEXT NOT NULL,
        backend TEXT NOT NULL,
        model TEXT,
        voice TEXT,
        options TEXT NOT NULL,       -- canonical JSON of the backend options
        rate INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        duration REAL NOT NULL,      -- seconds
        size INTEGER NOT NULL,       -- bytes of the WAV file
        sha256 TEXT NOT NULL,        -- of the PCM payload (what get() returns)
        created REAL NOT NULL,       -- unix time
        last_used REAL NOT NULL,     -- unix time, updated in batches
        hits INTEGER NOT NULL DEFAULT 0,
        loudness REAL                -- integrated LUFS, NULL when unknown (schema 2)
    )
"""
_LEASES = """
    CREATE TABLE leases (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,         -- <host>-<pid> of the writer synthesizing the key
        expires REAL NOT NULL        -- unix time; a lapsed lease may be taken over
    )
"""
# The eviction policy, defined here only (as diskcache's EVICTION_POLICY): the SQL index it
# needs, what a hit writes (in batches), the order entries are evicted in, the order
# `entries()` lists them in, and the rows not used since a time (`prune --older-than`).
EVICTION_POLICY: dict[str, dict[str, str]] = {
    "least-recently-used": {
        "init": "CREATE INDEX entries_lru ON entries (last_used, created)",
        "hit": "UPDATE entries SET hits = hits + ?, last_used = max(last_used, ?) WHERE key = ?",
        "cull": "ORDER BY last_used, created",
        "listing": "ORDER BY last_used DESC, key",
        "unused_since": "WHERE last_used < ?",
    },
}
POLICY = EVICTION_POLICY["least-recently-used"]
SCHEMA = (
    _ENTRIES,
    POLICY["init"],
    # Running totals, kept by triggers, so eviction never scans the table.
    """
    CREATE TABLE totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        count INTEGER NOT NULL,
        size INTEGER NOT NULL
    )
    """,
    "INSERT INTO totals (id, count, size) VALUES (0, 0, 0)",
    """
    CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
        UPDATE totals SET count = count + 1, size = size + NEW.size WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
        UPDATE totals SET count = count - 1, size = size - OLD.size WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER entries_resize AFTER UPDATE OF size ON entries BEGIN
        UPDATE totals SET size = size - OLD.size + NEW.size WHERE id = 0;
    END
    """,
    _LEASES,
)
# MIGRATIONS[v]: the statements that take an index from version v to v + 1.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE entries ADD COLUMN loudness REAL", _LEASES),
}

BASE_COLUMNS = (
    "key, file, text, backend, model, voice, options, rate, channels, duration, size, "
    "sha256, created, last_used, hits"
)
COLUMNS = BASE_COLUMNS + ", loudness"


def create_index_file(path: Path) -> None:
    """An empty index at the current schema version, in WAL mode, at `path` (closed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with Transaction(conn):
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    finally:
        conn.close()
