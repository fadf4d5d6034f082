"""`voiceprep warm` against local servers speaking OpenAI's and ElevenLabs' TTS APIs, with
latency and faults injected (tests/fakeproviders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import FakeProvider, Fault, voice_frequency
from helpers import CLI

from voiceprep.cache import AudioCache, LeaseInfo


def phrase_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "phrases.txt"
    path.write_text("".join(f"Prompt number {i}.\n" for i in range(count)))
    return path


def warm_args(tmp_path: Path, fake: FakeProvider, phrases: Path, *more: str) -> list[str]:
    return [
        "warm",
        str(phrases),
        "-b",
        fake.kind,
        "-O",
        f"base_url={fake.base_url}",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        *more,
    ]


def cached_count(tmp_path: Path) -> int:
    with AudioCache(tmp_path / "cache") as cache:
        return len(cache)


def test_concurrency_is_bounded_by_jobs(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    openai_server.latency = 0.4
    phrases = phrase_file(tmp_path, 12)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases, "-j", "4"))
    assert code == 0, err
    assert json.loads(out)["synthesized"] == 12
    assert openai_server.request_count == 12
    assert openai_server.peak_in_flight == 4  # -j 4: four at once, never more


def test_openai_audio_is_the_voice_at_the_target_rate(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    phrases = phrase_file(tmp_path, 2)
    args = warm_args(tmp_path, openai_server, phrases, "--voice", "nova", "-r", "16000")
    code, _, err = cli(*args)
    assert code == 0, err
    assert {r.json["voice"] for r in openai_server.requests} == {"nova"}
    with AudioCache(tmp_path / "cache") as cache:
        for entry in cache.entries():
            pcm = cache.get(entry.key, rate=16000, channels=1)
            assert pcm is not None
            freq = dominant_frequency(pcm_to_array(pcm, 1)[0], 16000)
            assert freq == pytest.approx(voice_frequency("nova"), abs=5)


def test_elevenlabs_asks_for_pcm_at_the_target_rate(
    tmp_path: Path, eleven_server: FakeProvider, cli: CLI
) -> None:
    phrases = phrase_file(tmp_path, 3)
    code, out, err = cli(*warm_args(tmp_path, eleven_server, phrases, "-r", "22050"))
    assert code == 0, err
    assert json.loads(out)["synthesized"] == 3
    assert {r.query.get("output_format") for r in eleven_server.requests} == {"pcm_22050"}
    with AudioCache(tmp_path / "cache") as cache:
        entry = cache.entries()[0]
        assert (entry.backend, entry.rate) == ("elevenlabs", 22050)
        pcm = cache.get(entry.key, rate=22050, channels=1)
        assert pcm is not None
        freq = dominant_frequency(pcm_to_array(pcm, 1)[0], 22050)
        assert freq == pytest.approx(voice_frequency(entry.voice or ""), abs=5)


def test_server_errors_are_retried(tmp_path: Path, openai_server: FakeProvider, cli: CLI) -> None:
    openai_server.push(500, 503)
    phrases = phrase_file(tmp_path, 3)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases, "-j", "1"))
    assert code == 0, err
    assert json.loads(out)["synthesized"] == 3
    assert openai_server.request_count == 5  # two failures, then three successes
    retries = [line for line in err.splitlines() if "retry" in line]
    assert len(retries) == 2
    assert all(line.startswith('voiceprep: warning: "Prompt number 0."') for line in retries)


def test_429_retry_after_is_honoured(tmp_path: Path, openai_server: FakeProvider, cli: CLI) -> None:
    openai_server.push(Fault(429, retry_after="1"))
    phrases = phrase_file(tmp_path, 1)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases))
    assert code == 0, err
    assert "429" in err and "retry 1 in 1.0 s" in err
    assert openai_server.request_count == 2 and cached_count(tmp_path) == 1


def test_persistent_failure_names_the_phrase_and_rerun_fills_the_gap(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    openai_server.push(500, 500)
    phrases = phrase_file(tmp_path, 4)
    args = warm_args(tmp_path, openai_server, phrases, "-j", "1", "--retries", "1")
    code, out, err = cli(*args)
    assert code == 1
    summary = json.loads(out)
    assert summary["synthesized"] == 3
    assert [f["text"] for f in summary["failed"]] == ["Prompt number 0."]
    failure = [line for line in err.splitlines() if line.startswith("voiceprep: error:")]
    assert len(failure) == 1
    assert '"Prompt number 0." (' in failure[0] and "500" in failure[0]
    assert cached_count(tmp_path) == 3

    openai_server.reset()
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases))
    assert code == 0, err
    assert json.loads(out)["synthesized"] == 1
    assert [r.json["input"] for r in openai_server.requests] == ["Prompt number 0."]


def test_timeout_is_retried_then_given_up(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    # Normal answers must arrive within --timeout on a loaded machine too: 3 s, not 0.3 s.
    openai_server.push(Fault(200, delay=20))
    phrases = phrase_file(tmp_path, 2)
    args = warm_args(tmp_path, openai_server, phrases, "-j", "1", "--timeout", "3")
    code, out, err = cli(*args)
    assert code == 0, err
    assert json.loads(out)["synthesized"] == 2 and openai_server.request_count == 3

    openai_server.reset()
    openai_server.push(Fault(200, delay=20))
    more = phrase_file(tmp_path, 3)  # one new phrase
    args = warm_args(tmp_path, openai_server, more, "--timeout", "3", "--retries", "0")
    code, out, err = cli(*args)
    assert code == 1
    assert "no answer within 3 s" in err and '"Prompt number 2."' in err


def test_authentication_failure_stops_the_run(
    tmp_path: Path,
    openai_server: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    cli: CLI,
) -> None:
    wrong_key = "sk-wrong-0000000000000000000000"
    monkeypatch.setenv("OPENAI_API_KEY", wrong_key)
    openai_server.latency = 0.05
    phrases = phrase_file(tmp_path, 40)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases, "-j", "4"))
    assert code == 1
    # Within one round of the requests in flight: at most -j requests ever sent.
    assert 1 <= openai_server.request_count <= 4
    summary = json.loads(out)
    assert summary["synthesized"] == 0
    assert summary["skipped"] + len(summary["failed"]) == 40
    assert summary["stopped"] and "401" in summary["stopped"]
    assert "not attempted" in err
    assert wrong_key not in out + err  # the provider echoed it; we never do
    assert cached_count(tmp_path) == 0


def test_a_stopped_run_leaves_no_phrase_claimed(
    tmp_path: Path,
    openai_server: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
    cli: CLI,
) -> None:
    """Phrases claimed but never stored (claimed ahead, or in flight when the run stopped)
    are let go at once, not held from other warms until their lease expires."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0000000000000000000000")
    openai_server.latency = 0.05
    code, _, _ = cli(*warm_args(tmp_path, openai_server, phrase_file(tmp_path, 40), "-j", "4"))
    assert code == 1
    with AudioCache(tmp_path / "cache") as cache:
        rows = cache._index.query("SELECT key, owner, expires FROM leases")
    assert [row[0] for row in rows if LeaseInfo(row[0], row[1], row[2]).live()] == []


def test_unusable_backend_is_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    phrases = phrase_file(tmp_path, 2)
    args = ["warm", str(phrases), "-b", "openai", "--cache-dir", str(tmp_path / "c")]
    code, _, err = cli(*args)
    assert code == 1
    assert "backend 'openai' cannot run here" in err and "OPENAI_API_KEY" in err
    # --dry-run needs no key: it only computes keys and looks them up.
    code, out, err = cli(*[*args, "--dry-run"])
    assert code == 0, err
    assert "2 of 2 phrases to synthesize" in out


def test_empty_audio_is_a_failure_and_never_cached(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    openai_server.push(Fault(200, empty=True))
    phrases = phrase_file(tmp_path, 2)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases, "-j", "1"))
    assert code == 1
    summary = json.loads(out)
    assert summary["synthesized"] == 1
    assert [f["text"] for f in summary["failed"]] == ["Prompt number 0."]
    assert "no audio" in summary["failed"][0]["reason"]
    with AudioCache(tmp_path / "cache") as cache:
        assert [e.text for e in cache.entries()] == ["Prompt number 1."]


def test_library_progress_reports_every_phrase(tmp_path: Path, openai_server: FakeProvider) -> None:
    import asyncio

    from voiceprep.backends import get_backend
    from voiceprep.phrases import Phrase
    from voiceprep.warm import ProgressEvent, WarmSummary, plan_warm, run_warm

    openai_server.push(400)  # a permanent failure: not retried
    backend = get_backend("openai", options={"base_url": openai_server.base_url})
    events: list[ProgressEvent] = []
    with AudioCache(tmp_path / "cache") as cache:
        plan = plan_warm(
            [Phrase(f"Line {i}.") for i in range(5)], backend, cache, rate=24000, channels=1
        )

        async def warm_then_close() -> WarmSummary:
            try:
                return await run_warm(plan, backend, cache, jobs=1, on_progress=events.append)
            finally:
                await backend.aclose()  # type: ignore[attr-defined]

        summary = asyncio.run(warm_then_close())
        assert len(cache) == 4
    assert [e.done for e in events] == [1, 2, 3, 4, 5]
    assert {e.total for e in events} == {5}
    assert [e.outcome for e in events].count("failed") == 1
    assert summary.synthesized == 4 and len(summary.failed) == 1 and not summary.ok
    assert openai_server.request_count == 5  # the 400 was not retried


def test_a_cache_that_cannot_store_stops_the_run(
    tmp_path: Path, openai_server: FakeProvider, cli: CLI
) -> None:
    from voiceprep.cache import AUDIO_DIR

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / AUDIO_DIR).write_text("a file where the audio directory belongs")
    phrases = phrase_file(tmp_path, 20)
    code, out, err = cli(*warm_args(tmp_path, openai_server, phrases, "-j", "2"))
    assert code == 1
    summary = json.loads(out)
    assert summary["synthesized"] == 0 and summary["stopped"]
    assert summary["stopped"].startswith(f"{tmp_path / 'cache'}: ")
    # Paid-for audio that cannot be kept: at most the requests in flight and those whose
    # audio was waiting for the failing write.
    assert openai_server.request_count <= 4
    assert "not attempted" in err and "Traceback" not in err
