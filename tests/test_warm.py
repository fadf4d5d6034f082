"""`voiceprep warm` with the local backends (real Piper, real espeak-ng) and its modes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from audiogen import pcm_to_array
from helpers import CLI

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.keys import cache_key
from voiceprep.phrases import Phrase
from voiceprep.warm import parse_shard, plan_warm, shard_of, warm
from voiceprep.wav import parse_wav_header

PHRASES = ["One moment, please.", "Thank you for calling.", "Goodbye."]


def write_list(tmp_path: Path, lines: list[str], name: str = "phrases.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def summary_of(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def is_speech(pcm: bytes, channels: int = 1) -> bool:
    """Not silence: a synthesized phrase has real energy."""
    samples = pcm_to_array(pcm, channels)
    return float(np.sqrt(np.mean(samples**2))) > 0.01


# --- real local backends --------------------------------------------------------------


def test_piper_warm_then_rerun_synthesizes_nothing(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, ["# IVR", *PHRASES, "Goodbye."])
    cache_dir = tmp_path / "cache"
    code, out, err = cli(*["warm", str(phrases), "--cache-dir", str(cache_dir)])
    assert code == 0, err
    first = summary_of(out)
    assert first["phrases"] == "3" and first["synthesized"] == "3"
    assert first["already cached"] == "0" and first["failed"] == "0"
    assert int(first["characters sent"]) == sum(len(p) for p in PHRASES)
    assert float(first["seconds of audio"]) > 1.5

    with AudioCache(cache_dir) as cache:
        entries = cache.entries()
        assert sorted(e.text for e in entries) == sorted(PHRASES)
        for entry in entries:
            assert (entry.backend, entry.rate, entry.channels) == ("piper", 24000, 1)
            pcm = cache.get(entry.key, rate=24000, channels=1)
            assert pcm is not None and is_speech(pcm)
            assert entry.duration == pytest.approx(len(pcm) / 48000)

    code, out, err = cli(*["warm", str(phrases), "--cache-dir", str(cache_dir)])
    assert code == 0, err
    second = summary_of(out)
    assert (second["synthesized"], second["already cached"]) == ("0", "3")
    assert second["characters sent"] == "0"
    # Nothing to do, yet it reports the audio it holds for the list.
    assert second["seconds of audio"] == first["seconds of audio"]
    code, out, err = cli(*["warm", str(phrases), "--cache-dir", str(cache_dir), "--json"])
    third = json.loads(out)
    assert third["audio_seconds"] == 0
    held = sum(len(cache_pcm) for cache_pcm in _pcm_of(cache_dir)) / 48000
    assert third["cached_audio_seconds"] == pytest.approx(held, abs=0.002)


def _pcm_of(cache_dir: Path) -> list[bytes]:
    with AudioCache(cache_dir) as cache:
        return [cache.get(e.key, rate=e.rate, channels=e.channels) or b"" for e in cache.entries()]


def test_espeak_warm_at_8k_stereo(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, ["Press one for sales.", "Press two for support."])
    cache_dir = tmp_path / "cache"
    args = ["warm", str(phrases), "-b", "espeak", "-r", "8000", "-c", "2"]
    code, out, err = cli(*[*args, "--cache-dir", str(cache_dir), "--json"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["synthesized"] == 2 and summary["failed"] == []
    with AudioCache(cache_dir) as cache:
        for entry in cache.entries():
            assert (entry.backend, entry.rate, entry.channels) == ("espeak", 8000, 2)
            pcm = cache.get(entry.key, rate=8000, channels=2)
            assert pcm is not None and is_speech(pcm, 2)
            left, right = pcm_to_array(pcm, 2)
            assert np.array_equal(left, right)  # mono speech copied to both channels


def test_per_phrase_voice_and_default_voice_share_a_key(tmp_path: Path, cli: CLI) -> None:
    lines = [
        '{"text": "Welcome."}',
        '{"text": "Welcome.", "voice": "en-us"}',
        '{"text": "Welcome.", "voice": "en-gb"}',
    ]
    phrases = write_list(tmp_path, lines, "p.jsonl")
    cache_dir = tmp_path / "cache"
    args = ["warm", str(phrases), "-b", "espeak", "--voice", "en-us", "--json"]
    code, out, err = cli(*[*args, "--cache-dir", str(cache_dir)])
    assert code == 0, err
    # "Welcome." with the default voice en-us and with en-us spelled out are one phrase.
    assert json.loads(out)["synthesized"] == 2
    with AudioCache(cache_dir) as cache:
        assert sorted(e.voice or "" for e in cache.entries()) == ["en-gb", "en-us"]


# --- dry run, check -------------------------------------------------------------------


def test_dry_run_lists_missing_and_billable_characters(tmp_path: Path, cli: CLI) -> None:
    cache_dir = tmp_path / "cache"
    first = write_list(tmp_path, ["Hello."], "first.txt")
    assert cli(*["warm", str(first), "-b", "espeak", "--cache-dir", str(cache_dir)]).code == 0
    both = write_list(tmp_path, ["Hello.", "Please hold.", "Bye now."], "both.txt")
    args = ["warm", str(both), "-b", "espeak", "--cache-dir", str(cache_dir), "--dry-run"]
    code, out, err = cli(*args)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["would synthesize: Please hold.", "would synthesize: Bye now."]
    assert "2 of 3 phrases to synthesize, 20 billable characters (1 already cached)" in lines[2]

    code, out, _ = cli(*[*args, "--json"])
    document = json.loads(out)
    assert [p["text"] for p in document["to_synthesize"]] == ["Please hold.", "Bye now."]
    assert document["billable_characters"] == 20 and document["already_cached"] == 1
    with AudioCache(cache_dir) as cache:
        assert len(cache) == 1  # nothing was synthesized


def test_check_is_a_ci_gate(tmp_path: Path, cli: CLI) -> None:
    cache_dir = tmp_path / "cache"
    phrases = write_list(tmp_path, ["Your call matters.", "Please wait."])
    base = ["warm", str(phrases), "-b", "espeak", "--cache-dir", str(cache_dir)]
    code, out, err = cli(*[*base, "--check"])
    assert code == 1
    assert out == ""
    assert 'voiceprep: error: not cached: "Your call matters." (' in err
    assert "phrases.txt:2)" in err and "2 of 2 phrases are not cached" in err
    with AudioCache(cache_dir) as cache:
        assert len(cache) == 0  # --check synthesizes nothing

    assert cli(*base).code == 0
    code, out, err = cli(*[*base, "--check"])
    assert code == 0 and "all 2 phrases are cached" in err
    code, out, _ = cli(*[*base, "--check", "--json"])
    assert code == 0 and json.loads(out)["missing"] == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dry-run", "--check"], "cannot be combined"),
        (["--check", "--prune"], "--check changes nothing"),
        (["--dry-run", "--export", "out"], "--dry-run changes nothing"),
        (["--shard", "3/2"], "invalid shard '3/2'"),
        (["-j", "0"], "invalid -j/--jobs 0: expected a whole number, 1 or more"),
        (["-r", "7000"], "invalid -r/--rate 7000: expected a sample rate in Hz, 8000–192000"),
        (["--max-size", "big"], "invalid --max-size 'big': expected a size such as 500MB"),
        (["-b", "nosuch"], "unknown backend 'nosuch'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, cli: CLI, flags: list[str], message: str) -> None:
    phrases = write_list(tmp_path, ["Hi."])
    args = ["warm", str(phrases), "--cache-dir", str(tmp_path / "c"), *flags]
    code, out, err = cli(*args)
    assert code == 2
    assert err.startswith("voiceprep: error: ") and message in err
    assert err.count("\n") == 1


# --- prune, export --------------------------------------------------------------------


def test_prune_removes_unlisted_entries_of_same_backend_and_voice(tmp_path: Path, cli: CLI) -> None:
    cache_dir = tmp_path / "cache"
    old = write_list(tmp_path, ["Old greeting.", "Kept phrase."], "old.txt")
    other_voice = write_list(tmp_path, ["Other voice."], "other.txt")
    new = write_list(tmp_path, ["Kept phrase.", "New greeting."], "new.txt")
    espeak = ["-b", "espeak", "--cache-dir", str(cache_dir)]
    assert cli(*["warm", str(old), *espeak]).code == 0
    assert cli(*["warm", str(other_voice), *espeak, "--voice", "en-gb"]).code == 0
    code, out, err = cli(*["warm", str(new), *espeak, "--prune"])
    assert code == 0, err
    assert "pruned 1 entries" in err
    assert summary_of(out)["synthesized"] == "1"
    with AudioCache(cache_dir) as cache:
        kept = sorted(e.text for e in cache.entries())
    # The other voice's entry is not this run's business.
    assert kept == ["Kept phrase.", "New greeting.", "Other voice."]


def test_export_writes_named_wavs_and_manifest(tmp_path: Path, cli: CLI) -> None:
    phrases = tmp_path / "p.csv"
    phrases.write_text("id,text\ngreeting,Hello and welcome.\n,Please hold the line.\n")
    out_dir = tmp_path / "export"
    args = ["warm", str(phrases), "-b", "espeak", "-r", "16000", "--export", str(out_dir)]
    code, _, err = cli(*[*args, "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    files = {e["text"]: e["file"] for e in manifest["entries"]}
    assert files == {
        "Hello and welcome.": "greeting.wav",
        "Please hold the line.": "please-hold-the-line.wav",
    }
    for entry in manifest["entries"]:
        blob = (out_dir / entry["file"]).read_bytes()
        fmt = parse_wav_header(blob)
        assert (fmt.rate, fmt.channels) == (16000, 1)
        assert entry["duration"] == pytest.approx(fmt.data_bytes / 32000, abs=1e-3)
        assert is_speech(blob[fmt.data_offset :])


# --- shards ---------------------------------------------------------------------------


def test_parse_shard() -> None:
    assert parse_shard("1/1") == (1, 1)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("0/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(Exception, match="invalid shard"):
            parse_shard(bad)


def test_shards_partition_the_list(tmp_path: Path) -> None:
    backend = get_backend("espeak")
    phrases = [Phrase(f"Prompt number {i}.") for i in range(60)]
    with AudioCache(tmp_path / "c") as cache:
        whole = plan_warm(phrases, backend, cache, rate=24000, channels=1)
        parts = [
            plan_warm(phrases, backend, cache, rate=24000, channels=1, shard=(k, 3))
            for k in (1, 2, 3)
        ]
    keys = [{item.key for item in part.items} for part in parts]
    assert set().union(*keys) == {item.key for item in whole.items}
    assert sum(len(k) for k in keys) == 60  # disjoint
    assert all(len(k) > 5 for k in keys)  # and spread out
    for k, part in enumerate(parts, start=1):
        assert all(shard_of(item.key, 3) == k for item in part.items)
        assert part.all_keys == whole.all_keys


def test_sharded_warm_then_cache_merge_covers_the_list(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(
        tmp_path, [f"Option {w}." for w in ("one", "two", "three", "four", "five")]
    )
    total = 0
    for k in (1, 2):
        args = ["warm", str(phrases), "-b", "espeak", "--shard", f"{k}/2", "--json"]
        code, out, err = cli(*[*args, "--cache-dir", str(tmp_path / f"shard{k}")])
        assert code == 0, err
        total += json.loads(out)["synthesized"]
    assert total == 5
    merged = tmp_path / "merged"
    code, _, err = cli(
        *["cache", "merge", str(tmp_path / "shard1"), str(tmp_path / "shard2")]
        + ["--cache-dir", str(merged)]
    )
    assert code == 0, err
    check = ["warm", str(phrases), "-b", "espeak", "--cache-dir", str(merged), "--check"]
    code, _, err = cli(*check)
    assert code == 0, err


# --- library --------------------------------------------------------------------------


def test_plan_keys_match_cache_key(tmp_path: Path) -> None:
    backend = get_backend("espeak", voice="en-us")
    with AudioCache(tmp_path / "c") as cache:
        plan = plan_warm(
            [Phrase("  Hello   world "), Phrase("Hello world", voice="en-gb")],
            backend,
            cache,
            rate=16000,
            channels=2,
        )
    assert [i.key for i in plan.items] == [
        cache_key(backend.identity(None), "Hello world", rate=16000, channels=2),
        cache_key(backend.identity("en-gb"), "Hello world", rate=16000, channels=2),
    ]
    assert plan.billable_characters == 22 and len(plan.missing) == 2


def test_max_entries_smaller_than_list_warns(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, ["One.", "Two.", "Three."])
    args = ["warm", str(phrases), "-b", "espeak", "--max-entries", "2"]
    code, _, err = cli(*[*args, "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    assert "voiceprep: warning: --max-entries 2 is less than the 3 phrases" in err
    with AudioCache(tmp_path / "c") as cache:
        assert len(cache) == 2


def test_warm_synthesizes_a_damaged_entry_again(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, ["Your order has shipped.", "Anything else?"])
    args = ["warm", str(phrases), "-b", "espeak", "--cache-dir", str(tmp_path / "c"), "--json"]
    assert cli(*args).code == 0
    with AudioCache(tmp_path / "c") as cache:
        damaged = next(e for e in cache.entries() if e.text == "Anything else?")
        good = cache.get(damaged.key, rate=24000, channels=1)
    blob = bytearray(damaged.path.read_bytes())
    middle = len(blob) // 2
    blob[middle : middle + 64] = bytes(b ^ 0xFF for b in blob[middle : middle + 64])
    damaged.path.write_bytes(bytes(blob))
    # --check looks at presence only (fast); a warm checks the audio and redoes it.
    assert cli(*[*args, "--check"]).code == 0
    code, out, err = cli(*args)
    assert code == 0, err
    assert 'damaged cache entry, synthesizing again: "Anything else?"' in err
    assert json.loads(out)["synthesized"] == 1
    with AudioCache(tmp_path / "c") as cache:
        assert cache.get(damaged.key, rate=24000, channels=1) == good
        assert not cache.verify().damaged


def test_undecodable_audio_fails_that_phrase_only(tmp_path: Path, cli: CLI) -> None:
    # The command backend runs a real program: this one answers with text, not audio.
    phrases = write_list(tmp_path, ["First.", "Second."])
    args = ["warm", str(phrases), "-b", "command", "-O", 'cmd=["echo", "not audio"]', "--json"]
    code, out, err = cli(*[*args, "--cache-dir", str(tmp_path / "c")])
    assert code == 1
    summary = json.loads(out)
    assert summary["synthesized"] == 0
    assert [f["text"] for f in summary["failed"]] == ["First.", "Second."]  # list order
    assert err.count("voiceprep: error: ") == 2 and "Traceback" not in err


def test_empty_phrase_list_warns(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, ["# nothing yet", ""])
    code, out, err = cli(*["warm", str(phrases), "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    assert "voiceprep: warning: no phrases in" in err
    assert summary_of(out)["phrases"] == "0"


def test_piped_progress_is_a_few_plain_lines(tmp_path: Path, cli: CLI) -> None:
    phrases = write_list(tmp_path, [f"Item {i}." for i in range(25)])
    args = ["warm", str(phrases), "-b", "espeak", "--cache-dir", str(tmp_path / "c")]
    code, _, err = cli(*args)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.endswith("phrases done")]
    assert 1 <= len(lines) <= 10
    assert lines[-1].strip() == "25/25 phrases done"
    assert "\x1b[" not in err  # no terminal codes when not on a terminal


@pytest.mark.parametrize("streamed", [False, True])
def test_to_pcm_takes_matching_wav_as_is_and_decodes_the_rest(streamed: bool) -> None:
    import asyncio

    from audiogen import dominant_frequency
    from fakeproviders import tone_pcm, wav_file

    from voiceprep.backends.base import SynthesizedAudio

    pcm = tone_pcm(440.0, 0.5, 24000)
    # A streamed WAV (unknown sizes, as OpenAI sends) with a stray trailing byte.
    audio = SynthesizedAudio(wav_file(pcm, 24000, streamed=streamed) + b"\x00")
    assert asyncio.run(audio.to_pcm_async(rate=24000, channels=1)) == pcm
    resampled = asyncio.run(audio.to_pcm_async(rate=16000, channels=2))
    left, right = pcm_to_array(resampled, 2)
    assert abs(len(left) - 8000) <= 32
    assert dominant_frequency(left, 16000) == pytest.approx(440.0, abs=5)
    assert np.allclose(left, right)
    raw = SynthesizedAudio(pcm, rate=24000, channels=1)
    assert asyncio.run(raw.to_pcm_async(rate=24000, channels=1)) == pcm


# --- warm --remote as a library feature ----------------------------------------------------


def test_the_remote_steps_pull_what_is_missing_and_push_what_the_remote_lacks(
    tmp_path: Path,
) -> None:
    from voiceprep.warm import WarmSummary, pull_missing, push_listed, record_remote

    remote = f"file://{tmp_path / 'remote'}"
    phrases = [Phrase("Good morning."), Phrase("Good evening.")]
    backend = get_backend("espeak")
    with AudioCache(tmp_path / "first") as first:
        asyncio.run(warm(phrases[:1], backend, first))
        plan = plan_warm(phrases[:1], backend, first, rate=24000, channels=1)
        pushed = push_listed(first, remote, plan=plan, jobs=2)
        assert (pushed.pushed, pushed.failures) == (1, [])
    with AudioCache(tmp_path / "second") as second:
        plan = plan_warm(phrases, backend, second, rate=24000, channels=1)
        pulled = pull_missing(second, remote, plan=plan, jobs=2)
        assert pulled.usable and len(pulled.pulled) == 1 and not pulled.refused
        assert [item.cached for item in plan.items] == [True, False]  # the plan knows
        summary = WarmSummary(already_cached=len(plan.cached))
        record_remote(summary, pulled, push_listed(second, remote, plan=plan, jobs=2))
        assert (summary.pulled, summary.already_cached, summary.pushed) == (1, 0, 0)
        unreachable = pull_missing(second, "s3://", plan=plan)  # reported, never raised
        assert not unreachable.usable and unreachable.failure is not None


@pytest.mark.parametrize("what", ["file", "device", "dangling symlink"])
def test_export_into_what_is_not_a_directory_is_refused_before_any_synthesis(
    tmp_path: Path, cli: CLI, what: str
) -> None:
    phrases = tmp_path / "p.txt"
    phrases.write_text("Never synthesized.\n")
    out = tmp_path / "out"
    if what == "file":
        out.write_text("mine")
    elif what == "device":
        out = Path("/dev/null")
    else:
        out.symlink_to(tmp_path / "nowhere" / "dir")
    args = ["warm", phrases, "-b", "espeak", "--cache-dir", tmp_path / "cache", "--export", out]
    code, _, err = cli(*args)
    assert code == 2 and f"{out}: --export needs a directory" in err, err
    assert not (tmp_path / "cache").exists()  # nothing synthesized, not even a cache made
