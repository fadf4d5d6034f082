"""A cache as voiceprep wrote it before entries described themselves (schema 1).

The schema statements and the file layout are those of voiceprep/cache.py at schema
version 1 (an index row per entry; a plain 44-byte-header WAV per entry, no metadata
chunk), so the tests can check that such a cache is still read and is upgraded.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.wav import wav_bytes

SCHEMA_V1 = (
    """
    CREATE TABLE entries (
        key TEXT PRIMARY KEY, file TEXT NOT NULL, text TEXT NOT NULL, backend TEXT NOT NULL,
        model TEXT, voice TEXT, options TEXT NOT NULL, rate INTEGER NOT NULL,
        channels INTEGER NOT NULL, duration REAL NOT NULL, size INTEGER NOT NULL,
        sha256 TEXT NOT NULL, created REAL NOT NULL, last_used REAL NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX entries_lru ON entries (last_used, created)",
    "CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 0), count INTEGER NOT NULL, "
    "size INTEGER NOT NULL)",
    "INSERT INTO totals (id, count, size) VALUES (0, 0, 0)",
    "CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN "
    "UPDATE totals SET count = count + 1, size = size + NEW.size WHERE id = 0; END",
    "CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN "
    "UPDATE totals SET count = count - 1, size = size - OLD.size WHERE id = 0; END",
    "CREATE TRIGGER entries_resize AFTER UPDATE OF size ON entries BEGIN "
    "UPDATE totals SET size = size - OLD.size + NEW.size WHERE id = 0; END",
)


def make_v1_cache(
    directory: Path,
    items: list[tuple[str, bytes]],
    *,
    identity: BackendIdentity,
    rate: int = 24000,
    channels: int = 1,
) -> dict[str, str]:
    """Write a schema-1 cache holding (text, pcm) items; returns {text: key}."""
    directory.mkdir(parents=True, exist_ok=True)
    keys: dict[str, str] = {}
    conn = sqlite3.connect(directory / "index.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in SCHEMA_V1:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    now = time.time()
    for n, (text, pcm) in enumerate(items):
        key = cache_key(identity, text, rate=rate, channels=channels)
        relative = f"audio/{key[:2]}/{key}.0a0b0c0d-{1000 + n}-00000000abcd.wav"
        blob = wav_bytes(pcm, rate=rate, channels=channels)
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(blob)
        conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                relative,
                text,
                identity.name,
                identity.model,
                identity.voice,
                json.dumps(dict(identity.options), sort_keys=True),
                rate,
                channels,
                len(pcm) / (2 * channels * rate),
                len(blob),
                hashlib.sha256(pcm).hexdigest(),
                now - 100 + n,
                now - 50 + n,
                n,
            ),
        )
        keys[text] = key
    conn.close()
    return keys
