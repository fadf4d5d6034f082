"""Every command's `--help` reads like pip's or ffmpeg's: capital metavars that the text
uses, flags without a value placeholder, no Python type names, one style for defaults,
examples, and paragraphs wrapped whole."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from voiceprep.cli import app
from voiceprep.cli._app import COMMANDS, GROUPS


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, (*path, name))
    return found


TREE = _walk(typer.main.get_command(app))
LEAVES = [(path, command) for path, command in TREE if not hasattr(command, "commands")]
# Python's names as Typer would show them: <int>, <bool>, list[str], {INPUT}, <path>, None.
PYTHON_WORDS = re.compile(r"<\w+(\|\w+)*>|\blist\[|\{[A-Z_]+\}|\b(None|NoneType|str|int|bool)\b")


def test_every_registered_command_is_in_the_tree() -> None:
    paths = {" ".join(path) for path, _ in TREE if path}
    assert {row.path for row in COMMANDS} | set(GROUPS) <= paths
    assert {" ".join(path) for path, _ in LEAVES} == {row.path for row in COMMANDS}


@pytest.mark.parametrize("path", [path for path, _ in TREE], ids=lambda p: " ".join(p) or "root")
def test_help_has_no_python_type_names(cli: Any, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    assert result.err == ""
    assert PYTHON_WORDS.search(result.text) is None, result.text
    assert "\\[" not in result.text  # no escaped markup left over
    usage = result.text.splitlines()[0]
    assert usage.startswith("Usage: voiceprep " + " ".join(path)), usage


@pytest.mark.parametrize(
    "path,command", LEAVES, ids=lambda p: " ".join(p) if isinstance(p, tuple) else ""
)
def test_options_show_capital_metavars_used_by_their_text(
    cli: Any, path: tuple[str, ...], command: Any
) -> None:
    text = cli(*path, "--help").text
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.metavar and param.metavar.isupper(), param.name
            continue
        if param.is_flag:
            # A flag takes no value: nothing follows its names in the help.
            names = ", ".join(sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
            assert re.search(rf"^  {re.escape(names)}  ", text, re.M), (names, text)
            continue
        metavar = param.metavar
        assert metavar and metavar == metavar.upper(), (path, param.opts)
        assert f"{param.opts[-1]} {metavar}" in text or f"{param.opts[0]} {metavar}" in text
        # The placeholder is the word the help text uses (SIZE in "keep at most SIZE").
        words = re.findall(r"[A-Z][A-Z=_/]*", metavar)
        assert any(word in (param.help or "") for word in words), (param.opts, param.help)


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=lambda p: " ".join(p))
def test_help_has_examples_and_one_style_of_default(cli: Any, path: tuple[str, ...]) -> None:
    text = cli(*path, "--help").text
    examples = text.partition("\nExamples:\n")[2]
    assert examples, text
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert lines and all(f"voiceprep {' '.join(path)}" in line for line in lines), lines
    assert "(default" not in text.lower()  # defaults only as [default: ...]
    assert re.search(r"\[default: [^\]]+\]", text) or "[default" not in text


def test_paragraphs_are_wrapped_whole(cli: Any) -> None:
    # `cache verify --help` once broke lines mid-sentence after each "--repair".
    text = cli("cache", "verify", "--help").text
    description = text.split("\n\n")[2]
    lines = [line.strip() for line in description.splitlines()]
    assert all(len(line) > 50 for line in lines[:-1]), lines
    assert " ".join(lines).startswith("Exit 1 when an entry is damaged")


def test_command_list_shows_whole_first_lines(cli: Any) -> None:
    text = cli("--help").text
    commands = text.partition("\nCommands:\n")[2]
    assert "..." not in commands
    for row in COMMANDS:
        if " " not in row.path:
            assert re.search(rf"^  {row.path} ", commands, re.M), row.path


# Options declared once (cli._options.option_group) and taken by several commands: each
# command shows the whole group, in one block, with the same help.
OPTION_GROUPS = {
    "selection": (
        ["--backend", "--voice", "--option", "--rate", "--channels", "--cache-dir"],
        ["warm", "say", "serve", "cache get", "cache rm", "cache pull"],
    ),
    "processing": (
        ["--loudness", "--true-peak", "--trim-silence", "--silence-threshold", "--trim-pad"]
        + ["--fade-in", "--fade-out", "--pad-start", "--pad-end"],
        ["decode", "warm", "say", "serve"],
    ),
}


@pytest.mark.parametrize("group", OPTION_GROUPS)
def test_an_option_group_reads_the_same_in_every_command(cli: Any, group: str) -> None:
    options, paths = OPTION_GROUPS[group]
    blocks = {}
    for path in paths:
        text = cli(*path.split(), "--help").text
        lines = text.partition("\nOptions:\n")[2].partition("\n\n")[0].splitlines()
        rows = [i for i, line in enumerate(lines) if line.startswith("  -")]
        names = [re.findall(r"--[\w-]+", lines[i])[0] for i in rows]
        first = names.index(options[0])
        assert names[first : first + len(options)] == options, (path, names)
        # The group's rows and the lines their help wraps onto, wherever the columns fall.
        block = lines[rows[first] : rows[first + len(options)]]
        blocks[path] = " ".join(" ".join(block).split())
    for path in paths[1:]:
        assert blocks[path] == blocks[paths[0]], path
