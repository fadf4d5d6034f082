"""Processing in every path that produces audio: warm, say, TTSAudioCache, decode, and
the measurements: info --loudness, the warm summary, config `[process]`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from audiogen import pcm_to_array
from helpers import CLI
from loudmeter import ffmpeg_loudness

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.keys import cache_key

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


def test_dry_run_bills_nothing_for_reprocessing(tmp_path: Path, cli: CLI) -> None:
    phrases, cache_dir = phrase_file(tmp_path), tmp_path / "cache"
    base = ["warm", str(phrases), "--cache-dir", str(cache_dir)]
    assert cli(*base).code == 0
    code, out, err = cli(*[*base, "--loudness", "-20", "--dry-run"])
    assert code == 0, err
    assert "0 billable characters" in out


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
    code, _, err = cli(*[*args, "--loudness", "-14"])
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
    code, _, err = cli(*args)
    assert code == 0 and "from the cache" in err
    assert out_file.read_bytes() == first
    samples = mono(first)
    assert not samples[: RATE // 10].any() and abs(lufs(samples) + 18) <= 0.5
