"""Usage errors on any command, and at the top level, are one `voiceprep: error:` line
and exit 2: never Typer's usage block and box, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from helpers import CLI

from voiceprep.cli._app import app

BOX_DRAWING = set("─│╭╮╰╯┌┐└┘━┃")


def assert_one_usage_line(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("voiceprep: error: ")
    for word in words:
        assert word in lines[0]
    assert not BOX_DRAWING & set(err)
    assert "Traceback" not in err and "Usage:" not in err


def command_paths() -> list[list[str]]:
    """Every command and group of the real app, as the words that name it."""
    paths: list[list[str]] = []

    def walk(command: typer.core.TyperCommand | typer.core.TyperGroup, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


COMMANDS = command_paths()


def test_the_app_has_the_commands_the_spec_lists() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {"decode", "info", "warm", "say", "backends", "cache", "cache get", "cache rm"}
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "voiceprep")
def test_an_unknown_option_is_one_line_on_every_command(path: list[str], cli: CLI) -> None:
    code, out, err = cli(*[*path, "--frobnicate"])
    assert_one_usage_line(code, out, err, "--frobnicate", f"'voiceprep {' '.join(path)}")


def test_unknown_command_suggests_the_near_one(cli: CLI) -> None:
    code, out, err = cli(*["decod"])
    assert_one_usage_line(code, out, err, "'decod'", "'decode'")


def test_unknown_cache_subcommand(cli: CLI) -> None:
    code, out, err = cli(*["cache", "nope"])
    assert_one_usage_line(code, out, err, "cache", "'nope'")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["decode", "in.wav", "-r", "fast"], ["decode", "--rate", "'fast'", "sample rate in Hz"]),
        (["decode", "in.wav", "--format", "mp3"], ["decode", "--format", "mp3"]),
        (["warm", "phrases.txt", "-j", "many"], ["warm", "--jobs"]),
        (["cache", "prune", "--max-entries", "lots"], ["cache prune", "--max-entries"]),
        (["cache", "get", "Hi", "-o", "-", "--format", "mp3"], ["cache get", "--format", "mp3"]),
        (["cache", "get", "Hi"], ["cache get", "--output"]),
        (["say"], ["say", "TEXT"]),
        (["info"], ["info", "INPUT"]),
        (["backends", "extra"], ["backends", "extra"]),
    ],
)
def test_bad_or_missing_values_are_one_line(args: list[str], words: list[str], cli: CLI) -> None:
    code, out, err = cli(*args)
    assert_one_usage_line(code, out, err, *words)


@pytest.mark.parametrize("args", [[], ["cache"]])
def test_no_command_still_shows_the_help(args: list[str], cli: CLI) -> None:
    code, out, err = cli(*args)
    assert code == 2
    assert "Usage:" in out + err and "Commands" in out + err
    assert "voiceprep: error:" not in out + err


@pytest.mark.parametrize(
    "args", [["decod"], ["--frobnicate"], ["cache", "nope"], ["decode", "-r", "x", "in.wav"]]
)
def test_the_installed_program_prints_one_line_and_loads_nothing_heavy(args: list[str]) -> None:
    """As a user runs it (pipes, a fresh process), and without importing av/httpx/piper."""
    probe = (
        "import sys\n"
        "from voiceprep.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'av', 'httpx', 'piper'})\n"
        "print('HEAVY=' + ','.join(heavy), 'CODE=' + str(code))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "HEAVY= CODE=2"
    assert_one_usage_line(2, "", result.stderr)
    direct = subprocess.run(
        [sys.executable, "-m", "voiceprep", *args], capture_output=True, text=True, timeout=60
    )
    assert_one_usage_line(direct.returncode, direct.stdout, direct.stderr)


@pytest.mark.parametrize("command", ["say", "cache get"])
def test_audio_output_into_a_directory_is_one_line(command: str, tmp_path: Path, cli: CLI) -> None:
    """say and cache get write audio the same way: a directory as OUT is refused, in one
    line, and nothing is left behind in it."""
    cache = ["--cache-dir", str(tmp_path / "cache"), "-b", "espeak"]
    code, _, err = cli(*["say", "Hello.", "-o", str(tmp_path / "hello.wav"), *cache])
    assert code == 0, err
    target = tmp_path / "out"
    target.mkdir()

    code, out, err = cli(*[*command.split(), "Hello.", "-o", str(target), *cache])

    assert_one_usage_line(code, out, err, f"{target}: is a directory")
    assert list(target.iterdir()) == []


PARSER_WORDS = ("Input should", "Value error", "valid integer", "is not one of", "option:")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["decode", "x.mp3", "-r", "fast"],
            "decode: invalid -r/--rate 'fast': expected a sample rate in Hz, 8000–192000",
        ),
        (
            ["decode", "x.mp3", "-r", "7000"],
            "decode: invalid -r/--rate 7000: expected a sample rate in Hz, 8000–192000",
        ),
        (
            ["decode", "x.mp3", "-c", "3"],
            "decode: invalid -c/--channels 3: expected 1 (mono) or 2 (stereo)",
        ),
        (
            ["decode", "x.mp3", "--format", "mp3"],
            "decode: invalid --format 'mp3': expected raw or wav",
        ),
        (
            ["decode", "x.mp3", "--sample-format", "s8"],
            "decode: invalid --sample-format 's8': expected s16, f32, ulaw or alaw",
        ),
        (
            ["decode", "x.mp3", "-j", "2.5"],
            "decode: invalid -j/--jobs '2.5': expected a whole number, 1 or more",
        ),
        (
            ["decode", "x.mp3", "--start", "soon"],
            "decode: invalid --start 'soon': expected a number of seconds",
        ),
        (
            ["warm", "x.txt", "--timeout", "0"],
            "warm: invalid --timeout 0.0: expected a number of seconds above 0",
        ),
        (["say", "Hi", "-O", "speed"], "say: invalid -O/--option 'speed': expected KEY=VALUE"),
        (
            ["cache", "prune", "--max-size", "5XB"],
            "cache prune: invalid --max-size '5XB': expected a size such as 500MB, 2GiB or 1048576",
        ),
        (
            ["cache", "prune", "--older-than", "3y"],
            "cache prune: invalid --older-than '3y': expected an age such as 30d, 12h, 90m or 45s",
        ),
        (
            ["cache", "get", "Hi", "-o", "x.wav", "-r", "1"],
            "cache get: invalid -r/--rate 1: expected a sample rate in Hz, 8000–192000",
        ),
    ],
)
def test_a_bad_value_names_the_option_the_value_and_what_is_accepted(
    cli: CLI, args: list[str], line: str
) -> None:
    result = cli(*args)
    assert result.code == 2
    assert result.err_lines == [f"voiceprep: error: {line}"]
    assert not any(word in result.err for word in PARSER_WORDS)
