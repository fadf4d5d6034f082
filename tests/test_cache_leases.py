"""Leases (issue 12 item 6): a key is claimed across processes before it is synthesized;
others wait for it instead of paying for it again; a killed writer's claim lapses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cache_worker import IDENTITY, key_for, put
from fakeproviders import OPENAI_KEY, fake_openai
from helpers import CLI, isolated_environment

from voiceprep.cache import HOST_TAG, AudioCache

HOLDER = (
    "import sys, time\n"
    "from voiceprep.cache import AudioCache\n"
    "cache = AudioCache(sys.argv[1])\n"
    "lease = cache.claim(sys.argv[2], ttl=3600)\n"
    "print('held' if lease else 'refused', flush=True)\n"
    "sys.stdin.read()\n"  # hold it until told (or killed)
    "if sys.argv[3:4] == ['put']:\n"
    "    sys.path.insert(0, sys.argv[4])\n"
    "    from cache_worker import put\n"
    "    put(cache, sys.argv[5])\n"
    "lease.release()\n"
)


def start_holder(directory: Path, key: str, *more: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory), key, *more],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held", proc.stderr.read() if proc.stderr else ""
    return proc


def test_a_claimed_key_is_refused_to_others_until_released(tmp_path: Path) -> None:
    key = key_for("phrase")
    with AudioCache(tmp_path) as one, AudioCache(tmp_path) as two:
        lease = one.claim(key, ttl=60)
        assert lease is not None
        assert two.claim(key, ttl=60) is None
        holder = two.lease_holder(key)
        assert holder is not None and holder.owner.startswith(f"{HOST_TAG}-{os.getpid()}-")
        assert holder.expires > time.time() + 30
        lease.release()
        assert two.lease_holder(key) is None
        again = two.claim(key, ttl=60)
        assert again is not None and one.claim(key, ttl=60) is None
        again.release()


def test_an_expired_lease_lapses(tmp_path: Path) -> None:
    key = key_for("phrase")
    with AudioCache(tmp_path) as cache:
        assert cache.claim(key, ttl=60) is not None
        # Another host's writer (its pid cannot be checked), whose claim ran out.
        with sqlite3.connect(tmp_path / "index.sqlite") as db:
            db.execute(
                "UPDATE leases SET owner = 'ffffffff-1-abc', expires = ? WHERE key = ?",
                (time.time() - 1, key),
            )
        db.close()
        assert cache.lease_holder(key) is None
        assert cache.claim(key, ttl=60) is not None


def test_a_writer_killed_with_sigkill_does_not_block_the_key(tmp_path: Path) -> None:
    key = key_for("phrase")
    AudioCache(tmp_path).close()
    holder = start_holder(tmp_path, key)
    with AudioCache(tmp_path) as cache:
        assert cache.claim(key, ttl=60) is None  # a live writer holds it (for an hour)
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
        assert cache.lease_holder(key) is None  # its process is gone: the lease lapsed
        lease = cache.claim(key, ttl=60)
        assert lease is not None
        lease.release()


def test_wait_for_returns_once_the_holder_stored_the_entry(tmp_path: Path) -> None:
    key = key_for("shared phrase")
    AudioCache(tmp_path).close()
    holder = start_holder(tmp_path, key, "put", str(Path(__file__).parent), "shared phrase")
    with AudioCache(tmp_path) as cache:
        assert cache.claim(key, ttl=60) is None
        assert not cache.wait_for(key, timeout=0.2)  # still held, not stored: bounded wait
        assert holder.stdin is not None
        holder.stdin.close()  # the holder stores the entry, then releases
        assert cache.wait_for(key, timeout=60)
        assert holder.wait(timeout=60) == 0
        assert cache.contains(key) and cache.lease_holder(key) is None


def test_claim_many_takes_the_free_keys_and_release_all_gives_them_back(tmp_path: Path) -> None:
    keys = [key_for(f"phrase {i}") for i in range(4)]
    AudioCache(tmp_path).close()
    holder = start_holder(tmp_path, keys[1])  # another process holds one of them
    try:
        with AudioCache(tmp_path) as cache:
            leases = cache.claim_many(keys, ttl=60)
            assert [lease is None for lease in leases] == [False, True, False, False]
            taken = [lease for lease in leases if lease is not None]
            assert [lease.key for lease in taken] == [keys[0], keys[2], keys[3]]
            with AudioCache(tmp_path) as other:  # refused to anyone else meanwhile
                assert other.claim_many(keys, ttl=60) == [None] * 4
            AudioCache.release_all([*taken, taken[0]])  # a lease twice: released once
            assert [cache.lease_holder(key) is None for key in keys] == [True, False, True, True]
            again = cache.claim_many([keys[0], keys[2]], ttl=60)
            assert all(lease is not None for lease in again)
            AudioCache.release_all(lease for lease in again if lease is not None)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def test_repair_drops_lapsed_leases(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        put(cache, "x")
        lease = cache.claim(key_for("y"), ttl=60)
        assert lease is not None
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE leases SET expires = 0")
    db.close()
    with AudioCache(tmp_path) as cache:
        cache.verify(repair=True)
        assert cache._index.query("SELECT count(*) FROM leases")[0][0] == 0


# --- warm and TTSAudioCache share work ------------------------------------------------------

WARMS, SHARED = 4, 40


def test_four_warms_on_one_cache_synthesize_each_shared_phrase_about_once(
    tmp_path: Path, cli: CLI
) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("".join(f"Shared phrase number {i}.\n" for i in range(SHARED)))
    with fake_openai(latency=0.15) as fake:
        args = ["warm", phrases, "-b", "openai", "-O", f"base_url={fake.base_url}"]
        args += ["--cache-dir", tmp_path / "cache", "--json", "-j", "4"]
        procs = [
            cli.popen(
                *args,
                env={"OPENAI_API_KEY": OPENAI_KEY},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(WARMS)
        ]
        results = [proc.communicate(timeout=300) for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * WARMS, results
        requests = fake.request_count
    summaries = [json.loads(out) for out, _ in results]
    for summary in summaries:
        assert summary["failed"] == [] and summary["phrases"] == SHARED
        done = summary["already_cached"] + summary["synthesized"] + summary["shared"]
        assert done == SHARED
    assert requests == sum(s["synthesized"] for s in summaries)
    # Without leases this was close to WARMS × SHARED; the target is ≤ 1.1 × distinct.
    assert requests <= 1.1 * SHARED, requests
    with AudioCache(tmp_path / "cache") as cache:
        assert len(cache) == SHARED and cache.verify().clean


TTS_SCRIPT = """
import asyncio, json, sys
from voiceprep.backends import get_backend
from voiceprep.tts_cache import TTSAudioCache

backend = get_backend("openai", options={"base_url": sys.argv[2]})
cache = TTSAudioCache(backend, directory=sys.argv[1], rate=16000)
texts = [f"Agent phrase {i}." for i in range(int(sys.argv[3]))]

async def main():
    await cache.preload(texts, concurrency=4)
    return [len(await cache.fetch(t)) for t in texts]

sizes = asyncio.run(main())
cache.close()
print(json.dumps({"sizes": sizes}))
"""


def test_two_tts_audio_caches_in_two_processes_share_syntheses(tmp_path: Path) -> None:
    """What two `serve` replicas on one directory do: one synthesis per phrase (about)."""
    count = 12
    env = {**isolated_environment(), "OPENAI_API_KEY": OPENAI_KEY}
    with fake_openai(latency=0.15) as fake:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", TTS_SCRIPT, str(tmp_path / "cache"), fake.base_url]
                + [str(count)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        results = [proc.communicate(timeout=300) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], results
        requests = fake.request_count
    sizes = [json.loads(out)["sizes"] for out, _ in results]
    assert sizes[0] == sizes[1] and all(size > 0 for size in sizes[0])
    assert requests <= 1.1 * count, requests
    with AudioCache(tmp_path / "cache") as cache:
        assert len(cache) == count and cache.verify().clean


def test_identity_of_worker_is_unchanged() -> None:
    assert IDENTITY.name == "worker"  # the helpers above key phrases like cache_worker does
