"""The Typer application: every command registered in one table, help rendered as plain
text (like pip's and ffmpeg's), usage errors turned into one line.

To add a command, write its function in a `voiceprep/cli/<module>.py` (no decorator) and
add one `Command(...)` row to `COMMANDS` below; a row whose path has two words ("cache
get") goes into the group named by the first word, declared in `GROUPS`. The function's
docstring is its help: a first line (shown in the command list), paragraphs, and an
`Examples:` block that is printed as written. Every option that takes a value declares a
capital `metavar` that its help text uses; `tests/test_cli_help.py` checks all of this.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo

from voiceprep.cli import _output
from voiceprep.cli._options import option_name
from voiceprep.cli._values import Unparsed, install
from voiceprep.errors import InvalidValueError
from voiceprep.units import ACCEPTED


@dataclass(frozen=True)
class Command:
    path: str  # "decode", or "cache get" for a command of the `cache` group
    target: str  # "voiceprep.cli.decode:decode_command"


GROUPS: dict[str, str] = {
    "cache": "Inspect and manage the on-disk TTS audio cache.",
}

COMMANDS: tuple[Command, ...] = (
    Command("decode", "voiceprep.cli.decode:decode_command"),
    Command("info", "voiceprep.cli.decode:info_command"),
    Command("warm", "voiceprep.cli.warm:warm_command"),
    Command("say", "voiceprep.cli.warm:say_command"),
    Command("serve", "voiceprep.cli.serve:serve_command"),
    Command("backends", "voiceprep.cli.backends:backends_command"),
    Command("cache path", "voiceprep.cli.cache:path_command"),
    Command("cache ls", "voiceprep.cli.cache:ls_command"),
    Command("cache stats", "voiceprep.cli.cache:stats_command"),
    Command("cache get", "voiceprep.cli.cache:get_command"),
    Command("cache export", "voiceprep.cli.cache:export_command"),
    Command("cache rm", "voiceprep.cli.cache:rm_command"),
    Command("cache prune", "voiceprep.cli.cache:prune_command"),
    Command("cache clear", "voiceprep.cli.cache:clear_command"),
    Command("cache verify", "voiceprep.cli.cache_repair:verify_command"),
    Command("cache merge", "voiceprep.cli.cache_repair:merge_command"),
    Command("cache push", "voiceprep.cli.remote:push_command"),
    Command("cache pull", "voiceprep.cli.remote:pull_command"),
)

_EXAMPLES = "Examples:"


# --- help: plain text, capital metavars, one style for defaults ------------------------


def split_help(text: str | None) -> tuple[str, str]:
    """A docstring → (description, the `Examples:` block's lines as written)."""
    text = inspect.cleandoc(text or "")
    description, _, examples = text.partition(_EXAMPLES)
    return description.strip(), textwrap.dedent(examples).strip("\n")


def _default_text(param: Any) -> str | None:
    """`[default: 24000]`: the option's `show_default` text, or its real default."""
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return shown
    if getattr(param, "is_flag", False) or not shown:
        return None
    default = param.default
    if default is None or callable(default) or default in ((), []):
        return None
    return str(getattr(default, "value", default))


def param_row(param: Any) -> tuple[str, str]:
    if param.param_type_name == "argument":
        name = param.metavar or param.name.upper()
        left = name + ("..." if param.nargs != 1 else "")
    else:
        opts = sorted(param.opts, key=lambda o: (o.startswith("--"), o))
        left = ", ".join(opts)
        if not param.is_flag and not param.count:
            left += f" {param.metavar}" + ("..." if param.nargs != 1 else "")
    help_text = " ".join((param.help or "").split())
    default = _default_text(param)
    if default is not None:
        help_text = f"{help_text} [default: {default}]".strip()
    return left, help_text


def _usage_piece(param: Any) -> str:
    name = (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")
    return name if param.required else f"[{name}]"


class _HelpMixin:
    """Plain-text help for a command or a group (Typer's own rendering shows `<int>`,
    `<bool>` on flags and `{INPUT}` in usage lines)."""

    help: str | None

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = ["[OPTIONS]"]
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if param.param_type_name == "argument":
                pieces.append(_usage_piece(param))
        if isinstance(self, TyperGroup):
            pieces.append("COMMAND [ARGS]...")
        return pieces

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        description, _ = split_help(self.help)
        if description:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(description)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = [p for p in self.get_params(ctx) if not p.hidden]  # type: ignore[attr-defined]
        arguments = [param_row(p) for p in params if p.param_type_name == "argument"]
        options = [param_row(p) for p in params if p.param_type_name == "option"]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
        if isinstance(self, TyperGroup):
            self.format_commands(ctx, formatter)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        _, examples = split_help(self.help)
        if examples:
            with formatter.section("Examples"):
                for line in examples.splitlines():
                    formatter.write(" " * formatter.current_indent + line + "\n")


class VoiceprepCommand(_HelpMixin, TyperCommand):
    """Every voiceprep command: its values converted without pydantic (cli._values)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))
        return super().parse_args(ctx, args)


class _Group(_HelpMixin, TyperGroup):
    """The root group and `cache`: usage errors anywhere on the command line (unknown
    command or option, bad or missing value) become one `voiceprep: error:` line, exit 2.

    Typer would print a usage block and a boxed message; the spec asks for one line. The
    root group parses its own options, then invokes every subcommand and subgroup, so
    wrapping its `parse_args` and `invoke` covers them all. Typer's parsing errors all
    derive from `typer.TyperException`.

    Its commands come from `COMMANDS`, each imported and built when first asked for
    (`_Commands`): `voiceprep decode` imports and builds `decode` alone.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        if not self.commands:
            self.commands = _Commands("" if self.name == app.info.name else self.name or "")

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))  # (here: Typer adds completion options after __init__)
        with _one_line_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors(ctx):
            return super().invoke(ctx)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # in the order of COMMANDS, not sorted

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                description, _ = split_help(command.help)
                rows.append((name, description.split("\n\n")[0].replace("\n", " ")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@contextmanager
def _one_line_errors(ctx: Any) -> Iterator[None]:
    try:
        yield
    except InvalidValueError as exc:
        # A value refused by a command's own checks (`-r 5`): name the command, as the
        # parser's refusals do. The innermost group is the first to see it.
        if exc.origin is not None or not ctx.invoked_subcommand:
            raise
        command = f"{ctx.command_path} {ctx.invoked_subcommand}".partition(" ")[2]
        raise exc.located(command) from None
    except typer.TyperException as exc:
        # `voiceprep` or `voiceprep cache` alone: that "error" is the help text, shown as is.
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        _output.error(_usage_message(exc, getattr(exc, "ctx", None) or ctx))
        raise typer.Exit(exc.exit_code) from None


def _usage_message(exc: typer.TyperException, ctx: Any) -> str:
    """`cache get: missing option '-o' / '--output'; see 'voiceprep cache get --help'`, or
    for a value the parser refused, `invalid -r/--rate 'fast': expected a sample rate…`."""
    command = ctx.command_path.partition(" ")[2]  # without the program name
    invalid = _invalid_value(exc)
    if invalid is not None:
        return str(invalid.located(command) if command else invalid)
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    if command:
        message = f"{command}: {message}"
    if message.endswith("?"):  # "Did you mean 'decode'?" is hint enough
        return message
    return f"{message}; see '{ctx.command_path} --help'"


# What a value of each Python type is, said to a user (the parser's own words name types).
_ACCEPTED_TYPES = {"int_parsing": "a whole number", "float_parsing": "a number"}
_ACCEPTED_METAVARS = {"SEC": "a number of seconds", "N": "a whole number"}


def _invalid_value(exc: Exception) -> InvalidValueError | None:
    """The parser refused a value: our error naming the option, the value and what is
    accepted, from the exception's fields (the option, and cli._values' record of the input)."""
    param = getattr(exc, "param", None)
    if param is None or param.param_type_name != "option":
        return None
    if isinstance(exc.__cause__, InvalidValueError):  # one of our checks, as a callback
        return exc.__cause__.renamed(option_name(param.opts))
    problem = exc.__cause__
    if not isinstance(problem, Unparsed):
        return None
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        accepted = " or ".join(str(getattr(c, "value", c)) for c in choices)
    else:
        accepted = (
            ACCEPTED.get(param.name)
            or _ACCEPTED_METAVARS.get(param.metavar)
            or _ACCEPTED_TYPES.get(problem.kind, "")
        )
    if not accepted:
        return None
    return InvalidValueError(option_name(param.opts), problem.value, accepted)


_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


app = typer.Typer(
    name="voiceprep",
    help="Audio in the exact shape a voice agent plays: decode files to raw PCM and "
    "prebuild TTS prompts into a shared on-disk cache.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (docs/cli.md)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=_SETTINGS,
)


class _Commands(MutableMapping[str, Any]):
    """A group's commands and subgroups from `COMMANDS` and `GROUPS`, each built on first
    access (its module imported, its parameters read) and kept."""

    def __init__(self, group: str) -> None:
        self._targets: dict[str, str] = {}  # name → "module:function", "" for a group
        for row in COMMANDS:
            parent, _, name = row.path.rpartition(" ")
            if parent == group:
                self._targets[name] = row.target
        if not group:
            self._targets |= dict.fromkeys(GROUPS, "")
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            target = self._targets[name]  # (a KeyError: no such command)
            self._built[name] = _command(name, target) if target else _group(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._targets.setdefault(name, "")
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._targets[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


def _command(name: str, target: str) -> Any:
    module, _, function = target.partition(":")
    callback = getattr(importlib.import_module(module), function)
    info = CommandInfo(name=name, callback=callback, cls=VoiceprepCommand)
    return typer.main.get_command_from_info(
        info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=None
    )


def _group(name: str) -> _Group:
    return _Group(
        name=name,
        help=GROUPS[name],
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings=_SETTINGS,
    )
