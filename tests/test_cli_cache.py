"""`voiceprep cache …` through the real command line: outputs, files and exit codes.

Caches are filled with PyAV-made sines through AudioCache.put, under the keys the
backends' identities give, so selecting with --backend/--voice/-r/-c is exercised exactly
as after `warm`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audiogen import dominant_frequency, pcm_to_array
from audiogen import sine_pcm as tone
from helpers import CLI, Result, read_terminal

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.decoding import decode
from voiceprep.keys import cache_key
from voiceprep.wav import parse_wav_header


def put(
    directory: Path,
    text: str,
    freq: float = 440.0,
    *,
    backend: str = "espeak",
    voice: str | None = None,
    rate: int = 24000,
    channels: int = 1,
    seconds: float = 0.5,
) -> str:
    """Store a sine under the key `warm --backend … --voice … -r … -c …` would use."""
    identity = get_backend(backend, voice=voice).identity(voice)
    key = cache_key(identity, text, rate=rate, channels=channels)
    with AudioCache(directory) as cache:
        cache.put(
            key,
            tone(freq, seconds, rate, channels),
            rate=rate,
            channels=channels,
            text=text,
            identity=identity,
        )
    return key


def freq_of(pcm: bytes, rate: int, channels: int = 1) -> float:
    return dominant_frequency(pcm_to_array(pcm, channels)[0], rate)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --- path, ls, stats ---------------------------------------------------------------------


def test_path_follows_the_option_then_the_environment(
    cli, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cli("cache", "path", "--cache-dir", str(cache_dir)).text == f"{cache_dir}\n"
    monkeypatch.setenv("VOICEPREP_CACHE_DIR", str(tmp_path / "from-env"))
    assert cli("cache", "path").text == f"{tmp_path / 'from-env'}\n"
    assert not (tmp_path / "from-env").exists()  # looking never creates a cache


def test_path_is_absolute_whatever_the_spelling(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("cache", "path", "--cache-dir", "prompts").text == f"{cli.cwd / 'prompts'}\n"
    monkeypatch.setenv("HOME", str(cli.cwd / "home"))
    assert cli("cache", "path", "--cache-dir", "~/c").text == f"{cli.cwd / 'home' / 'c'}\n"
    (cli.cwd / "voiceprep.toml").write_text('cache_dir = "from-file"\n')
    assert cli("cache", "path").text == f"{cli.cwd / 'from-file'}\n"


def test_ls_json_lists_every_field_of_every_entry(cli, cache_dir: Path) -> None:
    hold = put(cache_dir, "Please hold.", voice="en-gb")
    put(cache_dir, "Goodbye.", rate=16000, channels=2, seconds=1.0)
    result = cli("cache", "ls", "--json", "--cache-dir", str(cache_dir))
    assert result.code == 0 and result.err == ""
    rows = {row["text"]: row for row in json.loads(result.out)}
    assert set(rows) == {"Please hold.", "Goodbye."}
    row = rows["Please hold."]
    assert row["key"] == hold and row["backend"] == "espeak" and row["voice"] == "en-gb"
    assert (row["rate"], row["channels"], row["hits"]) == (24000, 1, 0)
    assert row["duration"] == pytest.approx(0.5)
    assert row["size"] == Path(row["path"]).stat().st_size
    pcm_bytes = 24000 * 2 // 2  # 0.5 s of 24 kHz mono s16, right after the 44-byte header
    assert (
        row["sha256"]
        == hashlib.sha256(Path(row["path"]).read_bytes()[44 : 44 + pcm_bytes]).hexdigest()
    )
    assert row["created"].endswith("Z") and row["last_used"].endswith("Z")
    assert (rows["Goodbye."]["rate"], rows["Goodbye."]["channels"]) == (16000, 2)
    assert rows["Goodbye."]["duration"] == pytest.approx(1.0)


def test_ls_piped_prints_aligned_plain_text(cli, cache_dir: Path) -> None:
    put(cache_dir, "One moment.")
    put(cache_dir, "A much longer prompt, for the alignment.", voice="en-us")
    lines = cli("cache", "ls", "--cache-dir", str(cache_dir)).text.splitlines()
    assert lines[0].split() == [
        "BACKEND", "VOICE", "RATE", "CHANNELS", "DURATION", "LOUDNESS", "SIZE", "LAST_USED",
        "HITS", "TEXT",
    ]  # fmt: skip
    assert "\x1b[" not in "".join(lines)  # no colour codes into a pipe
    text_column = lines[0].index("TEXT")
    assert sorted(line[text_column:] for line in lines[1:]) == [
        "A much longer prompt, for the alignment.",
        "One moment.",
    ]


def run_on_terminal(argv: list[str], cwd: Path, answer: bytes = b"") -> tuple[int, str]:
    """Run the real program with stdin, stdout and stderr on a pseudo-terminal."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voiceprep", *argv],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=cwd,
    )
    os.close(follower)
    if answer:
        os.write(leader, answer)
    output = read_terminal(leader)
    return proc.wait(timeout=60), output


def test_ls_on_a_terminal_draws_a_table(cache_dir: Path, tmp_path: Path) -> None:
    put(cache_dir, "One moment.")
    code, screen = run_on_terminal(["cache", "ls", "--cache-dir", str(cache_dir)], tmp_path)
    assert code == 0
    header = next(line for line in screen.splitlines() if "TEXT" in line)
    assert header.index("TEXT") < header.index("BACKEND") < header.index("LAST USED")
    assert "One moment." in screen and "espeak" in screen
    assert "\x1b[3" not in screen  # NO_COLOR: no colours even on a terminal


def test_clear_on_a_terminal_asks_first(cache_dir: Path, tmp_path: Path) -> None:
    put(cache_dir, "a")
    argv = ["cache", "clear", "--cache-dir", str(cache_dir)]
    code, screen = run_on_terminal(argv, tmp_path, answer=b"n\n")
    assert code == 0 and "Remove every entry" in screen
    assert _texts(cache_dir) == {"a"}
    code, screen = run_on_terminal(argv, tmp_path, answer=b"y\n")
    assert code == 0 and "removed 1 entry" in screen
    assert _texts(cache_dir) == set()


def test_ls_and_stats_of_a_missing_directory_are_empty_and_create_nothing(
    cli, tmp_path: Path
) -> None:
    nowhere = tmp_path / "nowhere"
    assert json.loads(cli("cache", "ls", "--json", "--cache-dir", str(nowhere)).out) == []
    stats = json.loads(cli("cache", "stats", "--json", "--cache-dir", str(nowhere)).out)
    assert stats["entries"] == 0 and stats["bytes"] == 0
    assert not nowhere.exists()


def test_stats_sums_the_entries(cli, cache_dir: Path) -> None:
    put(cache_dir, "a", seconds=0.5)
    put(cache_dir, "b", seconds=1.5)
    stats = json.loads(cli("cache", "stats", "--json", "--cache-dir", str(cache_dir)).out)
    assert stats["entries"] == 2
    assert stats["duration"] == pytest.approx(2.0)
    with AudioCache(cache_dir) as cache:
        files = [entry.path.stat().st_size for entry in cache.entries()]
    assert stats["bytes"] == sum(files)
    # Two 44-byte headers, 2 s of 24 kHz mono s16, two metadata chunks of well under 1 kB.
    assert 2 * 44 + 2 * 24000 * 2 < stats["bytes"] < 2 * 44 + 2 * 24000 * 2 + 2 * 1024
    plain = cli("cache", "stats", "--cache-dir", str(cache_dir)).text
    assert "entries:   2" in plain and "audio:     2.0 s" in plain


# --- get ---------------------------------------------------------------------------------


def test_get_writes_a_wav_by_suffix_and_raw_otherwise(cli, cache_dir: Path, tmp_path: Path) -> None:
    put(cache_dir, "One moment.", 440)
    wav = tmp_path / "one.wav"
    raw = tmp_path / "one.pcm"
    base = ["cache", "get", "One moment.", "--backend", "espeak", "--cache-dir", str(cache_dir)]
    assert cli(*base, "-o", str(wav)).code == 0
    assert cli(*base, "-o", str(raw)).code == 0
    blob = wav.read_bytes()
    fmt = parse_wav_header(blob)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (24000, 1, "s16")
    assert blob[fmt.data_offset :] == raw.read_bytes()
    assert abs(freq_of(raw.read_bytes(), 24000) - 440) < 5
    # and the WAV plays: PyAV decodes it to the same samples
    assert b"".join(decode(wav, rate=24000, channels=1)) == raw.read_bytes()


def test_get_to_stdout(cli, cache_dir: Path) -> None:
    put(cache_dir, "Hi", 550, rate=16000)
    result = cli("cache", "get", "Hi", "-b", "espeak", "-r", "16000", "-o", "-",
                 "--cache-dir", str(cache_dir))  # fmt: skip
    assert result.code == 0
    assert len(result.out) == 16000 and abs(freq_of(result.out, 16000) - 550) < 5
    as_wav = cli("cache", "get", "Hi", "-b", "espeak", "-r", "16000", "-o", "-",
                 "--format", "wav", "--cache-dir", str(cache_dir))  # fmt: skip
    fmt = parse_wav_header(as_wav.out)
    assert (fmt.rate, fmt.data_bytes) == (16000, 16000)
    assert as_wav.out[fmt.data_offset :] == result.out


def test_get_finds_the_phrase_whatever_its_spacing(cli, cache_dir: Path) -> None:
    put(cache_dir, "One moment.")
    result = cli("cache", "get", "  One   moment. ", "-b", "espeak", "-o", "-",
                 "--cache-dir", str(cache_dir))  # fmt: skip
    assert result.code == 0 and len(result.out) == 24000


def test_get_selects_like_warm_backend_voice_rate_channels(
    cli, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(cache_dir, "Welcome.", 300, voice="en-gb", rate=16000, channels=2)
    out = tmp_path / "w.wav"

    def get(*flags: str) -> Result:
        return cli("cache", "get", "Welcome.", "-o", str(out), "--force",
                   "--cache-dir", str(cache_dir), *flags)  # fmt: skip

    assert get("-b", "espeak", "--voice", "en-gb", "-r", "16000", "-c", "2").code == 0
    assert parse_wav_header(out.read_bytes()).channels == 2
    for wrong in (
        ["-b", "espeak", "--voice", "en-us", "-r", "16000", "-c", "2"],  # other voice
        ["-b", "espeak", "--voice", "en-gb", "-c", "2"],  # default rate 24000
        ["-b", "espeak", "--voice", "en-gb", "-r", "16000"],  # default mono
        ["-b", "espeak", "--voice", "en-gb", "-r", "16000", "-c", "2", "-O", "speed=200"],
        ["--voice", "en-gb", "-r", "16000", "-c", "2"],  # default backend (piper)
    ):
        assert get(*wrong).code == 1, wrong
    # the environment selects like the flags do
    for name, value in {"BACKEND": "espeak", "VOICE": "en-gb", "RATE": "16000"}.items():
        monkeypatch.setenv(f"VOICEPREP_{name}", value)
    assert get("-c", "2").code == 0


def test_get_of_a_missing_phrase_exits_1_with_one_line_and_writes_nothing(
    cli, cache_dir: Path, tmp_path: Path
) -> None:
    put(cache_dir, "Cached.")
    out = tmp_path / "x.wav"
    result = cli("cache", "get", "Not cached.", "-b", "espeak", "-o", str(out),
                 "--cache-dir", str(cache_dir))  # fmt: skip
    assert result.code == 1
    assert result.err.startswith('voiceprep: error: not cached: "Not cached." (espeak, 24000 Hz')
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not out.exists()
    # The line ends with the command that would fill it; running it does, and then `get` hits.
    fill = result.err.rstrip("\n").partition("; to fill it: ")[2]
    words = shlex.split(fill)
    assert words[:3] == ["voiceprep", "say", "Not cached."]
    assert cli(*words[1:]).code == 0
    assert cli("cache", "get", "Not cached.", "-b", "espeak", "-o", str(tmp_path / "y.wav"),
               "--cache-dir", str(cache_dir)).code == 0  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "asked", "hint"),
    [
        ({"rate": 16000}, [], "cached at 16000 Hz, not 24000: add -r 16000"),
        ({"channels": 2}, ["-r", "24000"], "cached in stereo, not mono: add -c 2"),
        ({"voice": "en-gb"}, [], "cached with voice en-gb, not en: add --voice en-gb"),
        (
            {"rate": 16000, "channels": 2},
            [],
            "at 16000 Hz, not 24000, in stereo, not mono: add -r 16000 -c 2",
        ),
        ({"backend": "piper"}, [], "cached with piper, not espeak: add -b piper"),
    ],
)
def test_get_miss_says_what_the_cache_holds_for_the_text(
    cli: CLI, cache_dir: Path, tmp_path: Path, stored: dict[str, Any], asked: list[str], hint: str
) -> None:
    put(cache_dir, "Please hold.", **stored)
    base = ["cache", "get", "Please  hold.", "-b", "espeak", "-o", str(tmp_path / "x.wav")]
    result = cli(*base, *asked, "--cache-dir", str(cache_dir))
    assert result.code == 1
    assert result.errors == [result.err.rstrip("\n")]
    assert result.err.startswith('voiceprep: error: not cached: "Please  hold." (espeak, ')
    assert result.err.rstrip("\n").endswith(hint), result.err
    # Following the advice finds it.
    added = hint.rpartition(": add ")[2].split()
    assert cli(*base, *added, "--cache-dir", str(cache_dir)).code == 0


def test_get_refuses_an_altered_entry(cli, cache_dir: Path, tmp_path: Path) -> None:
    key = put(cache_dir, "Tampered.")
    with AudioCache(cache_dir) as cache:
        path = cache.wav_path(key)
    blob = bytearray(path.read_bytes())
    blob[1000] ^= 0x40
    path.write_bytes(bytes(blob))
    out = tmp_path / "t.wav"
    result = cli("cache", "get", "Tampered.", "-b", "espeak", "-o", str(out),
                 "--cache-dir", str(cache_dir))  # fmt: skip
    assert result.code == 1 and "sha256" in result.err and result.err.count("\n") == 1
    assert not out.exists()


def test_get_requires_an_output(cli, cache_dir: Path) -> None:
    assert cli("cache", "get", "x", "--cache-dir", str(cache_dir)).code == 2


# --- rm, prune, clear ----------------------------------------------------------------------


def test_rm_removes_the_selected_phrases_only(cli, cache_dir: Path) -> None:
    put(cache_dir, "Keep me.")
    put(cache_dir, "Drop me.")
    put(cache_dir, "Drop me.", voice="en-gb")  # same text, other voice: stays
    result = cli("cache", "rm", "Drop me.", "-b", "espeak", "--cache-dir", str(cache_dir))
    assert result.code == 0 and "removed 1 entry" in result.err
    with AudioCache(cache_dir) as cache:
        left = sorted((e.text, e.voice) for e in cache.entries())
    assert left == [("Drop me.", "en-gb"), ("Keep me.", "en")]


def test_rm_of_a_phrase_not_cached_exits_1_but_removes_the_others(cli, cache_dir: Path) -> None:
    put(cache_dir, "Here.")
    result = cli("cache", "rm", "Here.", "Absent.", "-b", "espeak", "--cache-dir", str(cache_dir))
    assert result.code == 1
    assert 'voiceprep: error: not cached: "Absent." (espeak, 24000 Hz, mono)' in result.err
    assert "removed 1 entry" in result.err
    with AudioCache(cache_dir) as cache:
        assert len(cache) == 0


def _texts(cache_dir: Path) -> set[str]:
    with AudioCache(cache_dir) as cache:
        return {e.text for e in cache.entries()}


def test_prune_by_count_keeps_the_most_recently_used(cli, cache_dir: Path) -> None:
    for text in ("first", "second", "third", "fourth"):
        put(cache_dir, text)
    result = cli("cache", "prune", "--max-entries", "2", "--cache-dir", str(cache_dir))
    assert result.code == 0 and "removed 2 entries" in result.err
    assert _texts(cache_dir) == {"third", "fourth"}


def test_prune_by_size(cli, cache_dir: Path) -> None:
    for text in ("one", "two", "three"):
        put(cache_dir, text, seconds=1.0)  # 48,044 bytes each
    result = cli("cache", "prune", "--max-size", "100kB", "--cache-dir", str(cache_dir))
    assert result.code == 0
    assert _texts(cache_dir) == {"two", "three"}
    with AudioCache(cache_dir) as cache:
        assert cache.stats().bytes <= 100_000


def test_prune_by_age(cli, cache_dir: Path) -> None:
    old = put(cache_dir, "old")
    put(cache_dir, "recent")
    # Make one entry look untouched for 40 days, as the index would after that long.
    with sqlite3.connect(cache_dir / "index.sqlite") as db:
        db.execute("UPDATE entries SET last_used = last_used - 40 * 86400 WHERE key = ?", (old,))
    result = cli("cache", "prune", "--older-than", "30d", "--cache-dir", str(cache_dir))
    assert result.code == 0 and "removed 1 entry" in result.err
    assert _texts(cache_dir) == {"recent"}


def test_prune_needs_a_limit_and_checks_its_units(cli, cache_dir: Path) -> None:
    put(cache_dir, "x")
    assert cli("cache", "prune", "--cache-dir", str(cache_dir)).code == 2
    bad = cli("cache", "prune", "--max-size", "lots", "--cache-dir", str(cache_dir))
    assert bad.errors == [
        "voiceprep: error: cache prune: invalid --max-size 'lots': "
        "expected a size such as 500MB, 2GiB or 1048576"
    ]
    assert cli("cache", "prune", "--older-than", "soon", "--cache-dir", str(cache_dir)).code == 2
    assert _texts(cache_dir) == {"x"}


def test_clear_with_yes_removes_everything(cli, cache_dir: Path) -> None:
    put(cache_dir, "a")
    put(cache_dir, "b")
    result = cli("cache", "clear", "--yes", "--cache-dir", str(cache_dir))
    assert result.code == 0 and "removed 2 entries" in result.err
    assert _texts(cache_dir) == set()
    assert not list((cache_dir / "audio").rglob("*.wav"))


def test_clear_without_yes_off_a_terminal_refuses(cli, cache_dir: Path) -> None:
    put(cache_dir, "a")
    result = cli("cache", "clear", "--cache-dir", str(cache_dir))
    assert result.code == 2 and "--yes" in result.err
    assert _texts(cache_dir) == {"a"}


# --- verify ------------------------------------------------------------------------------


def test_verify_finds_damage_repair_fixes_it_and_a_second_verify_is_clean(
    cli, cache_dir: Path
) -> None:
    gone = put(cache_dir, "Gone.")
    altered = put(cache_dir, "Altered.")
    put(cache_dir, "Fine.")
    with AudioCache(cache_dir) as cache:
        gone_path, altered_path = cache.wav_path(gone), cache.wav_path(altered)
    gone_path.unlink()
    blob = bytearray(altered_path.read_bytes())
    blob[500] ^= 0x01
    altered_path.write_bytes(bytes(blob))
    orphan = altered_path.parent / ("f" * 64 + ".0123456789abcdef.wav")
    orphan.write_bytes(b"RIFF")
    temp = altered_path.parent / ("e" * 64 + ".crashed-1-1.tmp")
    temp.write_bytes(b"partial")
    for leftover in (orphan, temp):
        os.utime(leftover, (0, 0))  # old leftovers of a crashed writer

    first = cli("cache", "verify", "--cache-dir", str(cache_dir))
    assert first.code == 1
    assert "Gone.: audio file missing" in first.err
    assert "Altered.:" in first.err and "sha256" in first.err
    assert str(orphan) in first.err and str(temp) in first.err

    repaired = cli("cache", "verify", "--repair", "--cache-dir", str(cache_dir))
    assert repaired.code == 0 and "repaired" in repaired.err
    assert not orphan.exists() and not temp.exists() and not altered_path.exists()

    second = cli("cache", "verify", "--json", "--cache-dir", str(cache_dir))
    assert second.code == 0 and "no damage" in second.err
    report = json.loads(second.out)
    assert report["checked"] == 1 and not report["damaged"] and report["missing"] == []
    assert _texts(cache_dir) == {"Fine."}


# --- merge, export --------------------------------------------------------------------------


def test_merge_imports_new_keys_and_skips_existing_ones(cli, tmp_path: Path) -> None:
    dest, shard1, shard2 = tmp_path / "dest", tmp_path / "shard1", tmp_path / "shard2"
    put(dest, "x", 300)
    put(dest, "y", 400)
    put(shard1, "y", 999)  # same key as dest's: dest keeps its own
    put(shard1, "z", 500)
    put(shard2, "z", 500)
    put(shard2, "w", 600)
    result = cli("cache", "merge", str(shard1), str(shard2), "--cache-dir", str(dest))
    assert result.code == 0
    assert f"{shard1}: imported 1, skipped 1" in result.err
    assert f"{shard2}: imported 1, skipped 1" in result.err
    assert _texts(dest) == {"w", "x", "y", "z"}
    out = tmp_path / "y.pcm"
    assert (
        cli("cache", "get", "y", "-b", "espeak", "-o", str(out), "--cache-dir", str(dest)).code == 0
    )
    assert abs(freq_of(out.read_bytes(), 24000) - 400) < 5
    assert cli("cache", "verify", "--cache-dir", str(dest)).code == 0


def test_merge_of_a_directory_that_is_not_a_cache_is_a_usage_error(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = cli("cache", "merge", str(tmp_path / "empty"), "--cache-dir", str(tmp_path / "d"))
    assert result.code == 2 and "not a voiceprep cache" in result.err


def test_export_writes_named_playable_wavs_and_a_manifest(
    cli, cache_dir: Path, tmp_path: Path
) -> None:
    put(cache_dir, "One moment.", 440)
    put(cache_dir, "Thank you!", 660, rate=16000)
    out = tmp_path / "prompts"
    result = cli("cache", "export", str(out), "--cache-dir", str(cache_dir))
    assert result.code == 0 and "exported 2 files" in result.err
    manifest = json.loads((out / "manifest.json").read_text())
    by_file = {row["file"]: row for row in manifest["entries"]}
    assert set(by_file) == {"one-moment.wav", "thank-you.wav"}
    for name, row in by_file.items():
        data = (out / name).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        pcm = b"".join(decode(out / name, rate=row["rate"], channels=1))
        expected = 440 if row["text"] == "One moment." else 660
        assert abs(freq_of(pcm, row["rate"]) - expected) < 5


# --- a cache from the future ---------------------------------------------------------------


def test_a_newer_schema_is_refused_with_one_line_and_left_untouched(
    cli, cache_dir: Path, tmp_path: Path
) -> None:
    put(cache_dir, "Hello")
    index = cache_dir / "index.sqlite"
    with sqlite3.connect(index) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    before = index.read_bytes()
    for argv in (
        ["ls"],
        ["stats"],
        ["verify", "--repair"],
        ["get", "Hello", "-b", "espeak", "-o", str(tmp_path / "h.wav")],
        ["rm", "Hello", "-b", "espeak"],
        ["prune", "--max-entries", "1"],
        ["clear", "--yes"],
    ):
        result = cli("cache", *argv, "--cache-dir", str(cache_dir))
        assert result.code == 1, argv
        assert result.err.startswith("voiceprep: error: ") and "newer voiceprep" in result.err
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert index.read_bytes() == before
    assert not (tmp_path / "h.wav").exists()


def test_what_the_library_fetches_through_piper_the_cli_gets_by_default(
    cli, cache_dir: Path, tmp_path: Path
) -> None:
    # The spec's example: TTSAudioCache(get_backend("piper"), directory=...) and then
    # `voiceprep cache get` with no selection flags finds the same entry.
    import asyncio

    from voiceprep import TTSAudioCache

    prompts = TTSAudioCache(get_backend("piper"), directory=cache_dir)
    pcm = asyncio.run(prompts.fetch("One moment."))
    prompts.close()
    assert len(pcm) > 24000  # over half a second of speech at 24 kHz
    out = tmp_path / "one.wav"
    assert (
        cli("cache", "get", "One moment.", "-o", str(out), "--cache-dir", str(cache_dir)).code == 0
    )
    blob = out.read_bytes()
    assert blob[parse_wav_header(blob).data_offset :] == pcm


def test_cache_help_does_not_load_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from voiceprep.cli import main\n"
        "try:\n    main(['cache', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'av', 'httpx', 'piper', 'numpy'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "ls" in out.stdout and "verify" in out.stdout
