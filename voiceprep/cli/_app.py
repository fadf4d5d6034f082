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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from voiceprep.cli import _output
from voiceprep.cli._options import option_name
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
    """Every voiceprep command (registered with `cls=`)."""


class _Group(_HelpMixin, TyperGroup):
    """The root group and `cache`: usage errors anywhere on the command line (unknown
    command or option, bad or missing value) become one `voiceprep: error:` line, exit 2.

    Typer would print a usage block and a boxed message; the spec asks for one line. The
    root group parses its own options, then invokes every subcommand and subgroup, so
    wrapping its `parse_args` and `invoke` covers them all. Typer's parsing errors all
    derive from `typer.TyperException`.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
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
    accepted, from the exception's fields (the option, and pydantic's record of the input)."""
    param = getattr(exc, "param", None)
    if param is None or param.param_type_name != "option":
        return None
    if isinstance(exc.__cause__, InvalidValueError):  # one of our checks, as a callback
        return exc.__cause__.renamed(option_name(param.opts))
    errors = getattr(exc.__cause__, "errors", None)
    if not callable(errors):
        return None
    problem = errors()[0]
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        accepted = " or ".join(str(getattr(c, "value", c)) for c in choices)
    else:
        accepted = (
            ACCEPTED.get(param.name)
            or _ACCEPTED_METAVARS.get(param.metavar)
            or _ACCEPTED_TYPES.get(problem["type"], "")
        )
    if not accepted:
        return None
    return InvalidValueError(option_name(param.opts), problem["input"], accepted)


_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


def _typer(*, add_completion: bool = False, **options: Any) -> typer.Typer:
    return typer.Typer(
        cls=_Group,
        no_args_is_help=True,
        add_completion=add_completion,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=_SETTINGS,
        **options,
    )


app = _typer(
    name="voiceprep",
    help="Audio in the exact shape a voice agent plays: decode files to raw PCM and "
    "prebuild TTS prompts into a shared on-disk cache.",
    add_completion=True,  # --install-completion / --show-completion (docs/cli.md)
)


def _target(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def register(root: typer.Typer, commands: tuple[Command, ...] = COMMANDS) -> None:
    """Add every command of the table (and their groups) to `root`."""
    groups: dict[str, typer.Typer] = {}
    for row in commands:
        group_name, _, name = row.path.rpartition(" ")
        parent = root
        if group_name:
            if group_name not in groups:
                groups[group_name] = _typer(name=group_name, help=GROUPS[group_name])
            parent = groups[group_name]
        parent.command(name, cls=VoiceprepCommand)(_target(row.target))
    for group_name, group in groups.items():
        root.add_typer(group, name=group_name)
