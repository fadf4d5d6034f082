"""The terminal layer (voiceprep.cli._output), driven in-process through an injected
Terminal: tables, key-value summaries and progress look right on a terminal and stay
plain, aligned and bar-free when piped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from audiogen import sine_pcm
from helpers import CLI, on_terminal

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.cli import _output
from voiceprep.keys import cache_key


def fill(directory: Path, *texts: str) -> None:
    identity = get_backend("espeak").identity(None)
    with AudioCache(directory) as cache:
        for text in texts:
            key = cache_key(identity, text, rate=24000, channels=1)
            pcm = sine_pcm(440, 0.5)
            cache.put(key, pcm, rate=24000, channels=1, text=text, identity=identity)


def visible(text: str) -> list[str]:
    """The lines as a terminal shows them (styles removed)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()


LONG = "A long prompt that says a great deal about opening hours and holidays " * 2


def test_ls_on_a_terminal_is_a_table_with_the_text_first(cli: CLI, tmp_path: Path) -> None:
    fill(tmp_path / "c", "Hello.", LONG)
    result = cli("cache", "ls", "--cache-dir", tmp_path / "c", terminal=on_terminal(100))
    assert result.code == 0, result.err
    lines = visible(result.text)
    assert lines[0].split()[:3] == ["TEXT", "BACKEND", "VOICE"]
    assert all(len(line) <= 100 for line in lines)  # the width given, long text folded
    assert LONG.split()[-1] in result.text  # folded, not cut
    assert not re.search(r"\x1b\[3[0-9]", result.text)  # NO_COLOR: no colours (bold is fine)
    assert any("Hello." in line and "espeak" in line for line in lines)


def test_ls_piped_puts_free_text_last_so_columns_align(cli: CLI, tmp_path: Path) -> None:
    fill(tmp_path / "c", "Hello.", LONG)
    lines = cli("cache", "ls", "--cache-dir", tmp_path / "c").text.splitlines()
    assert lines[0].split() == [
        "BACKEND", "VOICE", "RATE", "CHANNELS", "DURATION", "LOUDNESS", "SIZE", "LAST_USED",
        "HITS", "TEXT",
    ]  # fmt: skip
    starts = {line.index("TEXT") if i == 0 else None for i, line in enumerate(lines)}
    text_column = lines[0].index("TEXT")
    assert starts and all(line[text_column - 2 : text_column] == "  " for line in lines)
    assert lines[1][text_column:] in ("Hello.", LONG.strip())
    assert "\x1b[" not in "".join(lines)


def test_a_narrow_terminal_is_respected(cli: CLI, tmp_path: Path) -> None:
    fill(tmp_path / "c", LONG)
    result = cli("cache", "ls", "--cache-dir", tmp_path / "c", terminal=on_terminal(60))
    assert all(len(line) <= 60 for line in visible(result.text))


def test_summaries_are_name_value_lines_on_both(cli: CLI, tmp_path: Path) -> None:
    fill(tmp_path / "c", "Hello.")
    piped = cli("cache", "stats", "--cache-dir", tmp_path / "c").text.splitlines()
    assert piped[1] == "entries:   1"
    shown = "\n".join(
        visible(cli("cache", "stats", "--cache-dir", tmp_path / "c", terminal=on_terminal()).text)
    )
    assert "entries" in shown and "audio" in shown and "0.5 s" in shown


def test_json_is_the_same_on_a_terminal_and_piped(cli: CLI, tmp_path: Path) -> None:
    fill(tmp_path / "c", "Hello.")
    args = ("cache", "ls", "--json", "--cache-dir", tmp_path / "c")
    assert json.loads(cli(*args).out) == json.loads(cli(*args, terminal=on_terminal()).out)


def test_warm_progress_only_on_a_terminal(cli: CLI, tmp_path: Path) -> None:
    phrases = tmp_path / "p.txt"
    phrases.write_text("One.\nTwo.\n")
    args = ("warm", phrases, "-b", "espeak", "--cache-dir", tmp_path / "c")
    piped = cli(*args)
    assert piped.code == 0, piped.err
    assert "synthesizing" not in piped.err  # no bar, and 2 phrases is too few for lines
    assert piped.text.splitlines()[0] == "phrases:          2"


def test_terminal_detection_reads_the_streams() -> None:
    term = _output.Terminal.detect()
    assert term.stdout_tty is False  # pytest captures stdout
    with _output.use(on_terminal(80, no_color=False)) as injected:
        assert _output.terminal() is injected
        assert _output.stdout_is_terminal() and _output.stderr_is_terminal()
        assert _output.err_console().width == 80
    assert _output.terminal() == term


def test_progress_is_silent_when_piped_and_counts_tenths_when_asked(cli: CLI) -> None:
    piped = _output.Terminal(False, False)
    with _output.use(piped), _output.progress(40, "x", plain_tenths="phrases") as bar:
        assert not bar.live
        for done in range(1, 41):
            bar.done(done)
        bar.line("warning", "careful")
    err = cli.capture.readouterr().err.decode()
    assert err.splitlines()[0] == "  4/40 phrases done"
    assert err.splitlines()[-1] == "voiceprep: warning: careful"
    assert len(err.splitlines()) == 11
