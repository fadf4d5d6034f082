"""MkDocs hook: the CLI reference page is rendered from the Typer app, never written by hand.

`docs/cli.md` holds the marker below; every command's usage, help and options replace it
at build time, so the reference cannot drift from the program.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- voiceprep-cli-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_reference())


def render_reference() -> str:
    """Markdown for `voiceprep` and every command and subcommand under it."""
    # Typer ships its own copy of Click: reach its classes through the app, never `click`.
    import typer

    from voiceprep.cli import app

    root = typer.main.get_command(app)
    sections: list[str] = []

    def walk(command: Any, path: list[str], parent: Any) -> None:
        settings = dict(getattr(command, "context_settings", None) or {})
        ctx = command.context_class(command, info_name=path[-1], parent=parent, **settings)
        sections.append(_section(command, ctx, path))
        if _is_group(command):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(root, ["voiceprep"], None)
    return "\n\n".join(sections) + "\n"


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _section(command: Any, ctx: Any, path: list[str]) -> str:
    from voiceprep.cli._app import param_row, split_help

    title = " ".join(path)
    level = "#" * min(len(path) + 1, 4)
    lines = [f"{level} `{title}`", ""]
    text, examples = split_help(command.help)
    if text:
        lines += [text, ""]
    usage = " ".join([title, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    if _is_group(command):
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                rows.append(f"| `{name}` | {_cell(sub.get_short_help_str(limit=120))} |")
        if rows:
            lines += ["| command | what it does |", "|---|---|", *rows, ""]
    # The same (names, help) pairs `--help` prints.
    records = [param_row(p) for p in command.get_params(ctx) if not p.hidden]
    if records:
        lines += ["| argument / option | description |", "|---|---|"]
        for names, help_text in records:
            lines.append(f"| `{_cell(names)}` | {_cell(help_text) or ' '} |")
        lines.append("")
    if examples:
        lines += ["Examples:", "", "```text", examples, "```", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    text = " ".join(text.split()).replace("\\[", "[")  # Rich's escaping, not ours
    return text.replace("|", "\\|")
