"""Read-through remotes where prompts are used: `warm --remote` and
`TTSAudioCache(remote=...)`, against moto's S3 server on 127.0.0.1 and file:// remotes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from helpers import CLI
from remote_fixtures import (
    IDENTITY,
    RATE,
    cached_pcm,
    fill_cache,
    free_port,
    key_of,
    moto_server,
    phrase,
    provider_env,
    remote_url,
    s3,
    tone,
)

from voiceprep.cache import AudioCache
from voiceprep.remote import Remote, pull, push
from voiceprep.remote.readthrough import ReadThrough
from voiceprep.tts_cache import TTSAudioCache

__all__ = ["moto_server", "remote_url", "s3"]  # fixtures, found by pytest through this module

ESPEAK = ["-b", "espeak", "--voice", "en", "-r", str(RATE)]


@pytest.fixture
def dead_s3(monkeypatch: pytest.MonkeyPatch) -> str:
    """An S3 remote whose endpoint is down (nothing listens on its port)."""
    provider_env(monkeypatch, f"http://127.0.0.1:{free_port()}", "AKIADEAD", "dead-secret-123")
    return "s3://voiceprep-down/prompts"


def phrase_list(directory: Path, indexes: range) -> Path:
    path = directory / "phrases.txt"
    path.write_text("".join(f"{phrase(i)}\n" for i in indexes))
    return path


# --- warm --remote ------------------------------------------------------------------------


def test_warm_remote_on_a_second_fresh_runner_synthesizes_nothing(
    remote_url: str, cli: CLI, tmp_path: Path
) -> None:
    phrases = phrase_list(tmp_path, range(3))
    first = cli("warm", phrases, *ESPEAK, "--cache-dir", tmp_path / "r1", "--remote", remote_url,
                "--json")  # fmt: skip
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    moved = ("synthesized", "already_cached", "pulled", "pushed", "remote_failed")
    assert tuple(summary[name] for name in moved) == (3, 0, 0, 3, 0)
    assert summary["remote"] == remote_url and summary["remote_failures"] == []
    assert "pushed 3 entries" in first.err
    assert set(Remote(remote_url).listing()) == {key_of(i) for i in range(3)}

    # The second runner has no espeak at all: it must not need to synthesize anything.
    second = cli("warm", phrases, *ESPEAK, "--cache-dir", tmp_path / "r2", "--remote",
                 remote_url, "--json", env={"PATH": str(tmp_path / "no-programs")})  # fmt: skip
    assert second.code == 0, second.err
    summary = json.loads(second.out)
    assert tuple(summary[name] for name in moved) == (0, 0, 3, 0, 0)  # nothing left to push
    assert "pulled 3 entries" in second.err
    assert cached_pcm(tmp_path / "r2") == cached_pcm(tmp_path / "r1")

    # The human summary says the same; a third runner that has it all moves nothing.
    third = cli("warm", phrases, *ESPEAK, "--cache-dir", tmp_path / "r2", "--remote",
                remote_url)  # fmt: skip
    assert third.code == 0, third.err
    rows = dict(line.split(":", 1) for line in third.text.splitlines())
    assert {name: rows[name].strip() for name in ("already cached", "pulled", "synthesized",
            "pushed")} == {"already cached": "3", "pulled": "0", "synthesized": "0",
                           "pushed": "0"}  # fmt: skip
    assert "remote failed" not in rows


def test_warm_remote_pulls_what_it_can_and_pushes_what_it_made(
    remote_url: str, cli: CLI, tmp_path: Path
) -> None:
    assert cli("warm", phrase_list(tmp_path, range(2)), *ESPEAK, "--cache-dir",
               tmp_path / "r1", "--remote", remote_url).code == 0  # fmt: skip
    longer = phrase_list(tmp_path, range(4))
    result = cli("warm", longer, *ESPEAK, "--cache-dir", tmp_path / "r2", "--remote",
                 remote_url, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["pulled"], summary["synthesized"], summary["pushed"]) == (2, 2, 2)
    assert set(Remote(remote_url).listing()) == {key_of(i) for i in range(4)}
    piped = cli("warm", longer, *ESPEAK, "--cache-dir", tmp_path / "r3", "--remote", remote_url)
    assert piped.code == 0, piped.err
    rows = dict(line.split(":", 1) for line in piped.text.splitlines())
    assert (rows["pulled"].strip(), rows["pushed"].strip()) == ("4", "0")


def test_warm_remote_reports_a_refused_entry_and_synthesizes_it(tmp_path: Path, cli: CLI) -> None:
    """An altered object on the remote is refused (never imported), counted in
    remote_failures and synthesized locally; the warm itself succeeds."""
    remote_url = (tmp_path / "shared").as_uri()
    fill_cache(tmp_path / "pusher", range(2))
    with AudioCache(tmp_path / "pusher") as pusher:
        assert len(push(pusher, remote_url).moved) == 2
    path = Path(Remote(remote_url).object_path(key_of(0)))
    altered = bytearray(path.read_bytes())
    altered[len(altered) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(altered))

    result = cli("warm", phrase_list(tmp_path, range(2)), *ESPEAK, "--cache-dir",
                 tmp_path / "r1", "--remote", remote_url, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["pulled"], summary["synthesized"], summary["pushed"]) == (1, 1, 0)
    assert summary["remote_failed"] == 1
    (failure,) = summary["remote_failures"]
    assert (failure["direction"], failure["key"]) == ("pull", key_of(0))
    assert "sha256" in failure["reason"] or "match" in failure["reason"]
    assert "refused" in result.err and "Traceback" not in result.err
    # Ours is the fresh synthesis, not the altered object; the remote's object stays.
    assert cached_pcm(tmp_path / "r1")[key_of(1)] == tone(1)
    assert cached_pcm(tmp_path / "r1")[key_of(0)] != tone(0)
    assert path.read_bytes() == bytes(altered)


def test_warm_with_a_remote_that_is_down_warms_locally_with_one_warning(
    dead_s3: str, cli: CLI, tmp_path: Path
) -> None:
    result = cli("warm", phrase_list(tmp_path, range(2)), *ESPEAK, "--cache-dir",
                 tmp_path / "r1", "--remote", dead_s3, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["synthesized"], summary["pulled"], summary["pushed"]) == (2, 0, 0)
    (failure,) = summary["remote_failures"]
    assert (failure["direction"], failure["key"]) == ("pull", None)
    warnings = [line for line in result.err_lines if "warning" in line]
    assert len(warnings) == 1 and "remote" in warnings[0], result.err
    assert "dead-secret-123" not in result.err and "dead-secret-123" not in result.text


def test_warm_remote_with_check_is_a_usage_error(cli: CLI, tmp_path: Path) -> None:
    result = cli("warm", phrase_list(tmp_path, range(1)), "--check", "--remote", "x")
    assert result.code == 2 and "--remote" in result.err


# --- TTSAudioCache(remote=...) -----------------------------------------------------------


class StreamTTS:
    """A user's own TTS object (the original `stream_synthesize` API) at 16 kHz mono,
    counting what it is asked to synthesize."""

    sample_rate = RATE
    num_channels = 1

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def stream_synthesize(self, texts, voice_id=None):  # noqa: ANN001, ANN201
        async for text in texts:
            self.calls.append(text)
            # about 70 ms a character: plausible speech for the synthesis gate
            yield tone(1000 + len(self.calls), seconds=0.07 * len(text))


def agent_cache(
    tts: StreamTTS, directory: Path | None, remote: object, **kwargs: object
) -> TTSAudioCache:
    return TTSAudioCache(
        tts, directory=directory, identity=IDENTITY, rate=RATE, remote=remote, **kwargs
    )


async def test_a_local_miss_is_served_from_the_remote(remote_url: str, tmp_path: Path) -> None:
    source = fill_cache(tmp_path / "a", range(3))
    with AudioCache(tmp_path / "a") as cache:
        assert push(cache, remote_url).ok
    tts = StreamTTS()
    agent = agent_cache(tts, tmp_path / "agent", remote_url)
    try:
        assert await agent.fetch(phrase(1), voice_id="en") == source[key_of(1)]
        assert await agent.fetch(phrase(1), voice_id="en") == source[key_of(1)]  # memory
    finally:
        agent.close()
    assert tts.calls == []
    # It was imported: a restart (no remote at all) finds it on disk.
    again = agent_cache(tts, tmp_path / "agent", None)
    try:
        assert await again.fetch(phrase(1), voice_id="en") == source[key_of(1)]
    finally:
        again.close()
    assert tts.calls == []
    # Memory only (no directory): the remote still serves it.
    memory = agent_cache(tts, None, remote_url)
    assert await memory.fetch(phrase(2), voice_id="en") == source[key_of(2)]
    assert tts.calls == []


async def test_push_is_off_by_default_and_pushes_when_asked(
    remote_url: str, tmp_path: Path
) -> None:
    tts = StreamTTS()
    agent = agent_cache(tts, tmp_path / "agent", remote_url)
    try:
        made = await agent.fetch(phrase(5), voice_id="en")
    finally:
        agent.close()
    assert tts.calls == [phrase(5)]
    assert Remote(remote_url).listing() == {}

    pusher = agent_cache(tts, tmp_path / "agent2", remote_url, push_remote=True)
    try:
        made = await pusher.fetch(phrase(6), voice_id="en")
    finally:
        pusher.close()
    assert set(Remote(remote_url).listing()) == {key_of(6)}
    with AudioCache(tmp_path / "fresh") as fresh:
        assert pull(fresh, remote_url).ok
    assert cached_pcm(tmp_path / "fresh") == {key_of(6): made}


async def test_a_remote_that_is_down_degrades_with_one_warning(
    dead_s3: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tts = StreamTTS()
    agent = agent_cache(tts, tmp_path / "agent", dead_s3, push_remote=True)
    caplog.set_level(logging.WARNING, logger="voiceprep.remote")
    try:
        for index in range(3):
            assert await agent.fetch(phrase(index), voice_id="en")
    finally:
        agent.close()
    assert len(tts.calls) == 3
    remote_warnings = [r for r in caplog.records if r.name == "voiceprep.remote"]
    assert len(remote_warnings) == 1
    assert "local cache only" in remote_warnings[0].getMessage()
    assert "dead-secret-123" not in caplog.text


async def test_a_bad_remote_object_is_never_served(remote_url: str, tmp_path: Path) -> None:
    fill_cache(tmp_path / "a", range(1))
    other = fill_cache(tmp_path / "b", range(1, 2))
    remote = Remote(remote_url)
    with AudioCache(tmp_path / "b") as cache:
        data = cache.entry_bytes(key_of(1))
    assert remote.write(key_of(0), data)  # phrase 0's object holds phrase 1's entry
    tts = StreamTTS()
    agent = agent_cache(tts, tmp_path / "agent", remote_url)
    try:
        pcm = await agent.fetch(phrase(0), voice_id="en")
    finally:
        agent.close()
    assert tts.calls == [phrase(0)] and pcm != other[key_of(1)]


async def test_a_streamed_miss_closed_at_once_is_stored_and_pushed(
    remote_url: str, tmp_path: Path
) -> None:
    """The stream ends before its entry is written and pushed: closing right then still
    stores it and pushes it whole (a shutting-down agent loses nothing it synthesized)."""
    tts = StreamTTS()
    pusher = agent_cache(tts, tmp_path / "agent", remote_url, push_remote=True)
    chunks = [chunk async for chunk in pusher.stream(phrase(7), voice_id="en")]
    await pusher.aclose()
    assert tts.calls == [phrase(7)]
    assert cached_pcm(tmp_path / "agent") == {key_of(7): b"".join(chunks)}
    assert set(Remote(remote_url).listing()) == {key_of(7)}
    with AudioCache(tmp_path / "fresh") as fresh:
        assert pull(fresh, remote_url).ok
    assert cached_pcm(tmp_path / "fresh") == {key_of(7): b"".join(chunks)}


async def test_a_push_whose_caller_is_cancelled_completes_before_close_returns(
    remote_url: str, tmp_path: Path
) -> None:
    """A shutdown cancels what awaits a push: the push itself goes on, and close() returns
    once it is on the remote."""
    source = fill_cache(tmp_path / "a", range(4))
    through = ReadThrough(remote_url, push=True)
    with AudioCache(tmp_path / "a") as disk:
        tasks = [asyncio.ensure_future(through.publish(key_of(i), disk)) for i in range(4)]
        await asyncio.sleep(0)  # each has started its push
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        through.close()
    assert set(Remote(remote_url).listing()) == set(source)
    with AudioCache(tmp_path / "fresh") as fresh:
        assert pull(fresh, remote_url).ok
    assert cached_pcm(tmp_path / "fresh") == source
