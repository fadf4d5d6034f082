"""A separate process that uses one AudioCache directory, for the reliability tests.

Run as `python tests/cache_worker.py MODE DIR [ARGS…]`. Every entry's PCM is derived from
its text (`pcm_for`), so any process can tell a whole, correct entry from anything else.
Results go to stdout as one JSON object (or one line per committed entry for `writer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from typing import Any

from voiceprep.cache import AudioCache
from voiceprep.errors import VoiceprepError
from voiceprep.keys import BackendIdentity, cache_key

RATE = 24000
CHANNELS = 1
IDENTITY = BackendIdentity("worker", "m1", "v1", {"speed": 1.0})
NOBODY = 65534


def pcm_for(text: str, *, variant: str = "") -> bytes:
    """0.5–1.6 s of s16 mono whose bytes are a function of the text (and a variant)."""
    digest = hashlib.sha256((variant + "|" + text).encode()).digest()
    samples = 12000 + digest[0] * 100
    return (digest * (samples * 2 // len(digest) + 1))[: samples * 2]


def key_for(text: str) -> str:
    return cache_key(IDENTITY, text, rate=RATE, channels=CHANNELS)


def put(cache: AudioCache, text: str, *, variant: str = "") -> None:
    cache.put(
        key_for(text),
        pcm_for(text, variant=variant),
        rate=RATE,
        channels=CHANNELS,
        text=text,
        identity=IDENTITY,
    )


def writer(directory: str, start: int, max_entries: int) -> None:
    """Put phrase START, START+1, … forever; print each index once its row is committed."""
    cache = AudioCache(directory, max_entries=max_entries)
    index = start
    while True:
        put(cache, f"phrase {index}")
        print(index, flush=True)
        index += 1


def killed_at(directory: str, start: int, max_entries: int, point: str, nth: int) -> None:
    """Like `writer`, but SIGKILLed the `nth` time the put reaches the named fault point."""
    import signal

    from voiceprep.cache import faults

    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    faults.install(hook)
    writer(directory, start, max_entries)


def mixed(directory: str, worker: int, workers: int, per_worker: int, max_entries: int) -> None:
    """Write own and shared phrases, read everyone's; worker 0 verifies and repairs, worker 1
    prunes, all of them evict through max_entries."""
    rng = random.Random(worker)
    own = [f"w{worker} phrase {i}" for i in range(per_worker)]
    shared = [f"shared phrase {i}" for i in range(20)]
    universe = [f"w{w} phrase {i}" for w in range(workers) for i in range(per_worker)] + shared
    todo = own + shared
    rng.shuffle(todo)
    result: dict[str, Any] = {"puts": 0, "hits": 0, "misses": 0, "verifies": 0, "errors": []}
    with AudioCache(directory, max_entries=max_entries) as cache:
        for step, text in enumerate(todo):
            try:
                put(cache, text)
                result["puts"] += 1
                for other in rng.sample(universe, 3):
                    pcm = cache.get(key_for(other), rate=RATE, channels=CHANNELS)
                    if pcm is None:
                        result["misses"] += 1
                    elif pcm != pcm_for(other):
                        result["errors"].append(f"{other}: wrong audio served")
                    else:
                        result["hits"] += 1
                if worker == 0 and step % 5 == 0:
                    # Repair while others write: it must never take a write in progress
                    # for damage or an orphan it may delete.
                    report = cache.verify(repair=True)
                    result["verifies"] += 1
                    if report.damaged:
                        result["errors"].append(f"verify: {report.as_dict()}")
                if worker == 1 and step % 10 == 0:
                    cache.prune(max_entries=max_entries)
            except VoiceprepError as exc:
                result["errors"].append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(result))


def same_key(directory: str, worker: int) -> None:
    """Every worker stores the same key with its own audio, all at the same instant: each
    says "ready" once its cache is open and its audio made, then waits for "go" on stdin
    (a real start barrier: the parent sends it when all are ready)."""
    cache = AudioCache(directory)
    cache.entries()  # the index is open
    pcm = pcm_for("the same phrase", variant=str(worker))
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    cache.put(
        key_for("the same phrase"),
        pcm,
        rate=RATE,
        channels=CHANNELS,
        text="the same phrase",
        identity=IDENTITY,
    )
    cache.close()
    print(json.dumps({"worker": worker}))


def drop_to_nobody() -> None:
    """Become uid/gid 65534 (modules are imported already: the interpreter may be private)."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def check_every_entry(cache: AudioCache, result: dict[str, Any]) -> list[Any]:
    """get() every entry; count in `result` those that are whole and correct ("ok")."""
    entries = cache.entries()
    result["entries"] = len(entries)
    for entry in entries:
        pcm = cache.get(entry.key, rate=entry.rate, channels=entry.channels)
        if pcm == pcm_for(entry.text):
            result["ok"] += 1
        else:
            result["bad"].append(entry.text)
    return entries


def read_all(directory: str) -> None:
    """Read every entry and check it; try one write. Used on read-only caches."""
    result: dict[str, Any] = {"uid": os.getuid(), "ok": 0, "bad": [], "write_error": None}
    try:  # proves the directory really is unwritable for this process
        open(os.path.join(directory, "probe"), "wb").close()
        result["can_create_files"] = True
    except OSError:
        result["can_create_files"] = False
    cache = AudioCache(directory)
    entries = check_every_entry(cache, result)
    result["read_only"] = cache.read_only
    report = cache.verify()
    result["verify"] = report.as_dict()
    result["tts_hits"] = tts_cache_hits(directory, [entry.text for entry in entries])
    result["stats_entries"] = cache.stats().entries
    try:
        put(cache, "a new phrase")
    except VoiceprepError as exc:
        result["write_error"] = [type(exc).__name__, str(exc)]
    cache.close()
    result["files_after"] = sorted(os.listdir(directory))
    print(json.dumps(result))


class NeverCalledTTS:
    """An original-style TTS (stream_synthesize): must never be called on a cache hit."""

    sample_rate = RATE

    async def stream_synthesize(self, text_iter: Any, voice_id: str | None = None) -> Any:
        raise AssertionError("synthesized although the phrase is cached")
        yield b""


def tts_cache_hits(directory: str, texts: list[str]) -> int:
    """How many texts a fresh TTSAudioCache over `directory` serves correctly from disk."""
    import asyncio

    from voiceprep.tts_cache import TTSAudioCache

    tts_cache = TTSAudioCache(NeverCalledTTS(), directory=directory, identity=IDENTITY)

    async def fetch_all() -> int:
        served = 0
        for text in texts:
            pcm = await tts_cache.fetch(text, voice_id=IDENTITY.voice)
            served += pcm == pcm_for(text)
        return served

    try:
        return asyncio.run(fetch_all())
    finally:
        tts_cache.close()


def read_on_a_full_disk(directory: str) -> None:
    """Reads with file growth impossible (RLIMIT_FSIZE, as on a nearly full disk): SQLite
    cannot size its -shm file. Every read must still work; a write fails clearly."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    result: dict[str, Any] = {"ok": 0, "bad": []}
    cache = AudioCache(directory)
    entries = check_every_entry(cache, result)
    result["read_only"] = cache.read_only
    result["tts_hits"] = tts_cache_hits(directory, [entry.text for entry in entries])
    try:
        put(cache, "a new phrase")
    except VoiceprepError as exc:
        result["write_error"] = [type(exc).__name__, str(exc)]
    cache.close()
    print(json.dumps(result))


def fill(directory: str, count: int, crash: bool) -> None:
    """Put `count` phrases; with `crash`, exit without closing (the WAL stays behind)."""
    cache = AudioCache(directory)
    for index in range(count):
        put(cache, f"phrase {index}")
    if crash:
        os._exit(0)
    cache.close()


def prune(directory: str, max_entries: int) -> None:
    with AudioCache(directory) as cache:
        removed = cache.prune(max_entries=max_entries)
    print(json.dumps({"removed": [entry.text for entry in removed]}))


def main(argv: list[str]) -> None:
    mode, directory, *args = argv
    if args[-1:] == ["--as-nobody"]:
        args = args[:-1]
        import asyncio  # noqa: F401 - everything the mode needs, before losing access

        import voiceprep.tts_cache  # noqa: F401

        drop_to_nobody()
    if mode == "writer":
        writer(directory, int(args[0]), int(args[1]))
    elif mode == "mixed":
        mixed(directory, *(int(a) for a in args))  # type: ignore[call-arg]
    elif mode == "same-key":
        same_key(directory, int(args[0]))
    elif mode == "killed-at":
        killed_at(directory, int(args[0]), int(args[1]), args[2], int(args[3]))
    elif mode == "read-all":
        read_all(directory)
    elif mode == "read-on-a-full-disk":
        read_on_a_full_disk(directory)
    elif mode == "fill":
        fill(directory, int(args[0]), args[1:] == ["crash"])
    elif mode == "prune":
        prune(directory, int(args[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
