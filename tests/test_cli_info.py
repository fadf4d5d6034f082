"""`voiceprep info` end to end: real files made with PyAV, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from audiogen import write_sine
from helpers import CLI, read_terminal


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("info")
    (d / "notes.txt").write_text("shopping list\n")
    return {
        "mp3": write_sine(d / "voice.mp3", seconds=3.0, rate=44100, channels=2, codec="mp3"),
        "flac": write_sine(d / "hold.flac", seconds=1.5, rate=16000, codec="flac"),
        "wav": write_sine(d / "surround.wav", seconds=0.5, rate=48000, channels=6),
        "opus": write_sine(d / "prompt.ogg", seconds=2.0, rate=48000, codec="opus"),
        "text": d / "notes.txt",
        "missing": d / "missing.mp3",
    }


def test_json_gives_one_object_per_input_with_the_facts(files: dict[str, Path], cli: CLI) -> None:
    result = cli("info", files["mp3"], files["flac"], files["wav"], files["opus"], "--json")

    assert result.code == 0, result.err
    assert result.err == ""
    rows = json.loads(result.text)
    assert [row["file"] for row in rows] == [str(files[k]) for k in ("mp3", "flac", "wav", "opus")]
    mp3, flac, wav, opus = rows
    assert (mp3["container"], mp3["rate"], mp3["channels"], mp3["layout"]) == (
        "mp3",
        44100,
        2,
        "stereo",
    )
    assert mp3["codec"] == "mp3"  # the codec, not libav's decoder "mp3float"
    assert mp3["duration"] == pytest.approx(3.0, abs=0.1)
    assert 100_000 < mp3["bitrate"] < 400_000
    assert (flac["codec"], flac["rate"], flac["channels"]) == ("flac", 16000, 1)
    assert flac["duration"] == pytest.approx(1.5, abs=0.01)
    assert (wav["container"], wav["codec"], wav["rate"], wav["channels"]) == (
        "wav",
        "pcm_s16le",
        48000,
        6,
    )
    assert wav["duration"] == pytest.approx(0.5, abs=0.001)
    assert wav["bitrate"] == 48000 * 6 * 16
    assert (opus["codec"], opus["channels"]) == ("opus", 1)
    assert opus["duration"] == pytest.approx(2.0, abs=0.05)


def test_table_when_piped_is_aligned_plain_text(files: dict[str, Path], cli: CLI) -> None:
    result = cli("info", files["flac"], files["mp3"])

    assert result.code == 0, result.err
    header, *lines = result.text.splitlines()
    assert header.split() == [
        "FILE",
        "CONTAINER",
        "CODEC",
        "RATE",
        "CHANNELS",
        "DURATION",
        "BITRATE",
    ]
    assert "\x1b[" not in result.text  # no colour codes in a pipe
    assert len(lines) == 2
    flac_line, mp3_line = lines
    assert flac_line.startswith(str(files["flac"]))
    assert "16000 Hz" in flac_line and "1 (mono)" in flac_line and "0:01.500" in flac_line
    assert "44100 Hz" in mp3_line and "2 (stereo)" in mp3_line and "kb/s" in mp3_line
    # Aligned: every column starts at the same offset on every line.
    assert header.index("RATE") == flac_line.index("16000 Hz") == mp3_line.index("44100 Hz")


def test_bad_inputs_get_one_line_each_and_the_rest_is_still_shown(
    files: dict[str, Path], cli: CLI
) -> None:
    result = cli("info", files["text"], files["flac"], files["missing"])

    assert result.code == 2  # a missing input is a usage error; it outranks 1
    errors = result.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"voiceprep: error: {files['text']}: ")
    assert errors[1] == f"voiceprep: error: {files['missing']}: no such file"
    assert "Traceback" not in result.err
    lines = result.text.splitlines()
    assert len(lines) == 2 and lines[1].startswith(str(files["flac"]))


def test_a_file_that_is_not_audio_exits_1(files: dict[str, Path], cli: CLI) -> None:
    result = cli("info", files["mp3"], files["text"], "--json")

    assert result.code == 1
    rows = json.loads(result.text)
    assert rows[0]["rate"] == 44100
    assert rows[1]["file"] == str(files["text"]) and rows[1]["error"]
    assert "container" not in rows[1]
    assert len(result.err.splitlines()) == 1


def test_stdin(files: dict[str, Path], cli: CLI) -> None:
    result = cli("info", "-", "--json", stdin=files["flac"].read_bytes())

    assert result.code == 0, result.err
    [row] = json.loads(result.text)
    assert (row["file"], row["codec"], row["rate"]) == ("-", "flac", 16000)


def test_unknown_option_is_a_one_line_usage_error(files: dict[str, Path], cli: CLI) -> None:
    result = cli("info", files["mp3"], "--yaml")

    assert result.code == 2
    assert result.text == ""
    [line] = result.err.splitlines()
    assert line.startswith("voiceprep: error: ") and "--yaml" in line


def _on_a_terminal(cli: CLI, *args: str | Path, env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; return the exit code and screen."""
    import pty

    primary, secondary = pty.openpty()
    proc = cli.popen(*args, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    screen = read_terminal(primary)
    return proc.wait(timeout=60), screen


@pytest.mark.parametrize("no_color", [False, True])
def test_table_on_a_terminal(files: dict[str, Path], cli: CLI, no_color: bool) -> None:
    env = {"NO_COLOR": "1"} if no_color else {"FORCE_COLOR": "1"}
    env["COLUMNS"] = "200"

    code, screen = _on_a_terminal(cli, "info", files["flac"], files["missing"], env=env)

    assert code == 2
    assert f"voiceprep: error: {files['missing']}: no such file" in screen
    assert str(files["flac"]) in screen and "16000 Hz" in screen and "1 (mono)" in screen
    assert "\x1b[1m" in screen  # a Rich table: bold headings
    assert ("\x1b[36m" in screen) is not no_color  # file names in cyan, unless NO_COLOR
