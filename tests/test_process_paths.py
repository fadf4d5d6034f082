"""Processing in every path that produces audio: warm, say, TTSAudioCache, decode, and
the measurements: info --loudness, the warm summary, config `[process]`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from audiogen import pcm_to_array
from helpers import CLI
from loudmeter import ffmpeg_loudness

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key

RATE = 24000
PHRASES = ["One moment, please.", "Thank you for calling. How can I help you today?"]


def lufs(samples: np.ndarray, rate: int = RATE) -> float:
    return ffmpeg_loudness(samples, rate)[0]


def true_peak_db(samples: np.ndarray) -> float:
    return ffmpeg_loudness(samples, RATE)[1]


def mono(pcm: bytes) -> np.ndarray:
    return pcm_to_array(pcm, 1)[0]


def phrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "phrases.txt"
    path.write_text("\n".join(PHRASES) + "\n", encoding="utf-8")
    return path


def summary_of(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def test_warm_normalizes_and_a_new_level_reuses_the_raw_synthesis(tmp_path: Path, cli: CLI) -> None:
    phrases, cache_dir = phrase_file(tmp_path), tmp_path / "cache"
    base = ["warm", str(phrases), "--cache-dir", str(cache_dir), "--json"]
    code, out, err = cli(*[*base, "--loudness", "-16", "--trim-silence"])
    assert code == 0, err
    first = json.loads(out)
    assert first["synthesized"] == 2 and first["characters_sent"] == sum(map(len, PHRASES))
    assert -16.5 <= first["loudness_min"] <= first["loudness_max"] <= -15.5
    tts = get_backend("piper")
    settings_key = {"loudness": {"target": -16.0, "true_peak": -1.5}}
    with AudioCache(cache_dir) as cache:
        entries = {e.key: e for e in cache.entries()}
        assert len(entries) == 4  # each phrase raw and processed
        for text in PHRASES:
            raw_key = cache_key(tts.identity(), text, rate=RATE, channels=1)
            assert raw_key in entries
            processed = [e for e in entries.values() if e.text == text and "process" in e.options]
            assert len(processed) == 1
            assert processed[0].options["process"]["loudness"] == settings_key["loudness"]
            samples = mono(cache.get(processed[0].key, rate=RATE, channels=1) or b"")
            assert abs(lufs(samples) + 16) <= 0.5 and true_peak_db(samples) <= -1.5
    # A new house level: nothing is sent to the backend, the raw audio is reprocessed.
    code, out, err = cli(*[*base, "--loudness", "-23"])
    assert code == 0, err
    second = json.loads(out)
    assert second["synthesized"] == 2 and second["reprocessed"] == 2
    assert second["characters_sent"] == 0
    assert -23.5 <= second["loudness_min"] <= second["loudness_max"] <= -22.5
    # And the same settings again: all cached.
    code, out, err = cli(*[*base, "--loudness", "-23"])
    assert json.loads(out)["already_cached"] == 2


def test_cache_ls_and_stats_report_the_loudness_of_each_entry(tmp_path: Path, cli: CLI) -> None:
    """`cache ls` shows each entry's integrated loudness (what an independent meter reads
    from its audio), `cache stats` the spread; an entry stored unmeasured shows none."""
    phrases, cache_dir = phrase_file(tmp_path), tmp_path / "cache"
    warm = ["warm", str(phrases), "-b", "espeak", "--cache-dir", str(cache_dir)]
    assert cli(*warm, "--loudness", "-16").code == 0
    with AudioCache(cache_dir) as cache:
        silence = b"\x00\x00" * RATE
        identity = BackendIdentity("test", None, None, {})
        cache.put("0" * 64, silence, rate=RATE, channels=1, text="unmeasured", identity=identity)
    code, out, err = cli("cache", "ls", "--cache-dir", str(cache_dir), "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert len(listed) == 5  # each phrase raw and at -16, and the unmeasured one
    with AudioCache(cache_dir) as cache:
        for entry in listed:
            if entry["text"] == "unmeasured":
                assert entry["loudness"] is None
                continue
            samples = mono(cache.get(entry["key"], rate=RATE, channels=1) or b"")
            assert abs(entry["loudness"] - lufs(samples)) <= 0.5, entry["text"]
            if "process" in entry["options"]:
                assert abs(entry["loudness"] + 16) <= 0.5
            else:
                assert entry["loudness"] < -17  # espeak's own level, quieter than the target
    levels = [e["loudness"] for e in listed if e["loudness"] is not None]

    code, out, err = cli("cache", "stats", "--cache-dir", str(cache_dir), "--json")
    stats = json.loads(out)
    assert (stats["loudness_min"], stats["loudness_max"]) == (min(levels), max(levels))
    assert stats["loudness_measured"] == 4 and stats["entries"] == 5
    code, out, err = cli("cache", "stats", "--cache-dir", str(cache_dir))
    shown = re.search(r"loudness: +(\S+) to (\S+) LUFS \(4 of 5 entries measured\)", out)
    assert shown, out
    assert float(shown[1]) == pytest.approx(min(levels), abs=0.051)
    assert float(shown[2]) == pytest.approx(max(levels), abs=0.051)
    code, out, err = cli("cache", "ls", "--cache-dir", str(cache_dir))
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[5] for row in rows if row[-1] == "unmeasured"] == ["-"]  # LOUDNESS column
    in_table = sorted(float(row[5]) for row in rows if row[-1] != "unmeasured")
    assert in_table == pytest.approx(sorted(levels), abs=0.051)


def test_dry_run_bills_nothing_for_reprocessing(tmp_path: Path, cli: CLI) -> None:
    phrases, cache_dir = phrase_file(tmp_path), tmp_path / "cache"
    base = ["warm", str(phrases), "--cache-dir", str(cache_dir)]
    assert cli(*base).code == 0
    code, out, err = cli(*[*base, "--loudness", "-20", "--dry-run"])
    assert code == 0, err
    assert "0 billable characters" in out


def test_cache_get_rm_and_pull_select_by_processing_as_warm_stored(
    tmp_path: Path, cli: CLI
) -> None:
    """The processing flags are part of the selection everywhere a phrase is looked up."""
    phrases, cache_dir = phrase_file(tmp_path), tmp_path / "cache"
    selection = ["-b", "espeak", "--cache-dir", str(cache_dir)]
    assert cli("warm", str(phrases), *selection, "--loudness", "-16").code == 0
    text = PHRASES[0]

    code, _, err = cli("cache", "get", text, *selection, "--loudness", "-16", "-o", "at16.wav")
    assert code == 0, err
    assert abs(lufs(mono((cli.cwd / "at16.wav").read_bytes()[44:])) + 16) <= 0.5
    code, _, err = cli("cache", "get", text, *selection, "-o", "raw.wav")  # the raw synthesis
    assert code == 0, err
    assert lufs(mono((cli.cwd / "raw.wav").read_bytes()[44:])) < -17

    # Elsewhere, to pull by phrase list: the processed entries only.
    remote = tmp_path / "remote"
    assert cli("cache", "push", str(remote), "--cache-dir", str(cache_dir)).code == 0
    code, out, err = cli(
        "cache", "pull", str(remote), str(phrases), "-b", "espeak",
        "--cache-dir", str(tmp_path / "fresh"), "--loudness", "-16", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["pulled"] == len(PHRASES)
    with AudioCache(tmp_path / "fresh") as fresh:
        assert all("process" in e.options for e in fresh.entries())

    code, _, err = cli("cache", "rm", text, *selection, "--loudness", "-16")
    assert code == 0, err
    result = cli.process("cache", "get", text, *selection, "--loudness", "-16", "-o", "x.wav")
    assert result.code == 1
    assert "cached with other processing: use no processing flags" in result.err
    assert cli("cache", "get", text, *selection, "-o", "raw2.wav").code == 0  # raw kept


def test_config_file_sets_the_house_level(tmp_path: Path, cli: CLI) -> None:
    tmp_path = cli.cwd
    (tmp_path / "voiceprep.toml").write_text(
        "[process]\nloudness = -20\ntrim_silence = true\nfade_out = 20\n", encoding="utf-8"
    )
    out_file = tmp_path / "hello.wav"
    args = ["say", "Hello there.", "-o", str(out_file), "--cache-dir", str(tmp_path / "c")]
    code, _, err = cli(*args)
    assert code == 0, err
    samples = mono(out_file.read_bytes()[44:])
    assert abs(lufs(samples) + 20) <= 0.5
    # a flag wins over the file, key by key
    code, _, err = cli(*[*args, "--loudness", "-14", "--force"])
    assert code == 0, err
    assert abs(lufs(mono(out_file.read_bytes()[44:])) + 14) <= 0.5


def test_config_file_rejects_unknown_processing_keys(tmp_path: Path, cli: CLI) -> None:
    tmp_path = cli.cwd
    (tmp_path / "voiceprep.toml").write_text("[process]\nlouder = 3\n", encoding="utf-8")
    code, _, err = cli(*["say", "Hi.", "-o", str(tmp_path / "x.wav")])
    assert code == 2 and "unknown processing setting 'louder'" in err


def test_say_with_processing_serves_the_processed_entry(tmp_path: Path, cli: CLI) -> None:
    out_file = tmp_path / "o.pcm"
    args = ["say", "Please hold.", "-o", str(out_file), "--cache-dir", str(tmp_path / "c")]
    args += ["-b", "espeak", "--loudness", "-18", "--pad-start", "100"]
    assert cli(*args).code == 0
    first = out_file.read_bytes()
    code, _, err = cli(*args, "--force")
    assert code == 0 and "from the cache" in err
    assert out_file.read_bytes() == first
    samples = mono(first)
    assert not samples[: RATE // 10].any() and abs(lufs(samples) + 18) <= 0.5


async def test_tts_audio_cache_processes_and_keeps_the_raw_synthesis(tmp_path: Path) -> None:
    from voiceprep.process import ProcessSettings
    from voiceprep.tts_cache import TTSAudioCache

    tts = get_backend("espeak")
    settings = ProcessSettings(loudness=-20, trim_silence=True)
    cache = TTSAudioCache(tts, directory=tmp_path / "c", process=settings)
    pcm = await cache.fetch("Welcome to the line.")
    assert abs(lufs(mono(pcm)) + 20) <= 0.5
    cache.close()
    # Another house level: served from the raw entry, no synthesis.
    calls = []
    original = tts.synthesize

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return await original(*args, **kwargs)

    tts.synthesize = counting  # type: ignore[method-assign]
    other = TTSAudioCache(tts, directory=tmp_path / "c", process=ProcessSettings(loudness=-26))
    quieter = await other.fetch("Welcome to the line.")
    assert calls == [] and abs(lufs(mono(quieter)) + 26) <= 0.5
    assert other.key("Welcome to the line.") != cache.key("Welcome to the line.")
    # Without processing the key is the one it always was (warm's plain key).
    plain = TTSAudioCache(tts, directory=tmp_path / "c")
    assert plain.key("Welcome to the line.") == cache_key(
        tts.identity(), "Welcome to the line.", rate=RATE, channels=1
    )
    assert plain.contains("Welcome to the line.")
    other.close()
    plain.close()


async def test_tts_audio_cache_refuses_a_silent_stream(tmp_path: Path) -> None:
    from voiceprep.errors import ImplausibleAudioError
    from voiceprep.tts_cache import TTSAudioCache

    class SilentStream:
        sample_rate = RATE
        calls = 0

        async def stream_synthesize(self, texts, voice_id=None):  # type: ignore[no-untyped-def]
            SilentStream.calls += 1
            async for _ in texts:
                yield bytes(2 * RATE)

    cache = TTSAudioCache(SilentStream(), directory=tmp_path / "c", retries=1)
    with pytest.raises(ImplausibleAudioError, match="silent"):
        await cache.fetch("Hello there.")
    assert SilentStream.calls == 2
    assert not cache.contains("Hello there.") and cache.disk is not None
    assert cache.disk.entries() == []
    cache.close()


# --- decode and info --------------------------------------------------------------------


def bursts(
    seconds: float, level: float = 0.05, lead: float = 2.0, trail: float = 3.0
) -> np.ndarray:
    """Speech-like noise in 1 s bursts with 1 s pauses, with silence at each end."""
    rng = np.random.default_rng(7)
    count = int(seconds * RATE)
    shaped = np.convolve(rng.standard_normal(count), np.ones(4) / 4, "same") * level
    shaped *= np.sin(np.arange(count) / RATE * np.pi) > 0
    zeros = np.zeros
    return np.concatenate([zeros(int(lead * RATE)), shaped, zeros(int(trail * RATE))])


def encoded(tmp_path: Path, signal: np.ndarray, name: str, codec: str = "flac") -> Path:
    from audiogen import write_audio

    return write_audio(tmp_path / name, signal.astype(np.float32)[None, :], rate=RATE, codec=codec)


@pytest.mark.parametrize("seconds", [3.0, 75.0])  # in memory; two passes (over 60 s)
def test_decode_normalizes_and_trims_a_file(tmp_path: Path, cli: CLI, seconds: float) -> None:
    source = encoded(tmp_path, bursts(seconds), "in.flac")
    out = tmp_path / "out.pcm"
    args = ["decode", str(source), "-o", str(out), "--loudness", "-16", "--trim-silence"]
    result = cli(*args, "--fade-out", "300")
    assert result.code == 0, result.err
    samples = mono(out.read_bytes())
    integrated, peak = ffmpeg_loudness(samples, RATE)
    assert abs(integrated + 16) <= 0.5 and peak <= -1.5
    loud = np.flatnonzero(np.abs(samples) >= 10 ** (-50 / 20))
    assert loud[0] / RATE <= 0.060 and (len(samples) - 1 - loud[-1]) / RATE <= 0.060
    fade = np.abs(samples[-int(0.3 * RATE) :])
    assert fade[-1] == 0


def test_decode_from_a_pipe_uses_one_pass(tmp_path: Path, cli: CLI) -> None:
    data = encoded(tmp_path, bursts(75.0), "in.flac").read_bytes()
    result = cli.process("decode", "-", "--loudness", "-20", "--trim-silence", stdin=data)
    assert result.code == 0, result.err
    samples = mono(result.out)
    integrated, peak = ffmpeg_loudness(samples, RATE)
    assert abs(integrated + 20) <= 0.5 and peak <= -1.5
    loud = np.flatnonzero(np.abs(samples) >= 10 ** (-50 / 20))
    assert loud[0] / RATE <= 0.060 and (len(samples) - 1 - loud[-1]) / RATE <= 0.060


def test_decode_batch_processes_every_file(tmp_path: Path, cli: CLI) -> None:
    sources = [
        encoded(tmp_path, bursts(2.0, level), f"{i}.wav", "pcm_s16le")
        for i, level in enumerate([0.01, 0.1, 0.5])
    ]
    result = cli(
        "decode", *map(str, sources), "--out-dir", str(tmp_path / "o"), "--loudness", "-23"
    )
    assert result.code == 0, result.err
    for source in sources:
        samples = mono((tmp_path / "o" / (source.stem + ".pcm")).read_bytes())
        assert abs(ffmpeg_loudness(samples, RATE)[0] + 23) <= 0.5


def test_info_loudness_before_and_after(tmp_path: Path, cli: CLI) -> None:
    source = encoded(tmp_path, bursts(4.0, 0.02), "quiet.wav", "pcm_s16le")
    before = cli("info", "--loudness", "--json", str(source))
    assert before.code == 0, before.err
    (row,) = json.loads(before.out)
    from voiceprep.decoding import decode

    integrated, peak = ffmpeg_loudness(mono(b"".join(decode(source, rate=RATE))), RATE)
    assert abs(row["integrated"] - integrated) <= 0.1 and abs(row["true_peak"] - peak) <= 0.2
    assert (
        abs(row["leading_silence"] - 2.0) <= 0.01 and abs(row["trailing_silence"] - 4.0) <= 0.01
    )  # the last second is a pause
    assert row["range"] >= 0 and row["sample_peak"] <= row["true_peak"] + 0.01
    out = tmp_path / "loud.wav"
    assert (
        cli("decode", str(source), "-o", str(out), "--loudness", "-16", "--trim-silence").code == 0
    )
    after = cli("info", "--loudness", str(out))
    assert after.code == 0 and "-16.0 LUFS" in after.text and "0.050 s" in after.text
