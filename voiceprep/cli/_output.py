"""The one terminal layer: where the CLI writes and how it looks there.

Data goes to stdout, everything else (warnings, errors, progress, "wrote x") to stderr.
On a terminal: Rich tables and progress bars (no colour with NO_COLOR); piped: plain,
aligned lines and no bars. What "a terminal" is comes from one injectable `Terminal`
(is each stream a terminal, NO_COLOR, the width), so tests set it in-process with
`use(Terminal(...))` instead of needing a pseudo-terminal. Rich is imported only when
something is drawn, so `--help` and `--version` stay light.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceprep.cli._safe import safe_message

if TYPE_CHECKING:
    from rich.console import Console


def stdout_closed_error() -> OSError:
    return OSError(errno.EBADF, "it is closed")


class ClosedStdout(io.RawIOBase):
    """sys.stdout of a process started with it closed (`>&-`), where Python leaves None:
    every write fails as the closed descriptor would (as coreutils' do), so a command that
    prints reports it in one line, and one that writes only files works."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise stdout_closed_error()

    @property
    def buffer(self) -> ClosedStdout:  # binary writes (audio) fail alike
        return self


def stdout_closed() -> bool:
    return isinstance(sys.stdout, ClosedStdout)


@dataclass(frozen=True)
class Terminal:
    """What the CLI knows of where its output goes."""

    stdout_tty: bool
    stderr_tty: bool
    stdin_tty: bool = False
    no_color: bool = False
    width: int | None = None  # None: ask the terminal (Rich does), else fixed

    @classmethod
    def detect(cls) -> Terminal:
        def tty(stream: Any) -> bool:
            try:
                return bool(stream.isatty())
            except (AttributeError, ValueError):  # closed or replaced stream
                return False

        return cls(
            stdout_tty=tty(sys.stdout),
            stderr_tty=tty(sys.stderr),
            stdin_tty=tty(sys.stdin),
            no_color="NO_COLOR" in os.environ,
        )


_injected: list[Terminal] = []


def terminal() -> Terminal:
    """The injected Terminal, else the one the process really has (looked at each time:
    streams get redirected)."""
    return _injected[-1] if _injected else Terminal.detect()


@contextmanager
def use(term: Terminal) -> Iterator[Terminal]:
    """Behave as if the output went to `term` (for tests)."""
    _injected.append(term)
    try:
        yield term
    finally:
        _injected.pop()


def stderr_is_terminal() -> bool:
    return terminal().stderr_tty


def stdout_is_terminal() -> bool:
    return terminal().stdout_tty


def stdin_is_terminal() -> bool:
    return terminal().stdin_tty


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    term = terminal()
    return Console(
        file=sys.stderr if stderr else sys.stdout,
        force_terminal=term.stderr_tty if stderr else term.stdout_tty,
        no_color=term.no_color,
        width=term.width,
        highlight=False,
    )


def err_console() -> Console:
    return _console(stderr=True)


def out_console() -> Console:
    return _console(stderr=False)


# --- message lines (stderr) -------------------------------------------------------------

_PREVIEW = 60  # characters of a phrase shown in messages


def phrase(text: str, source: str = "") -> str:
    """A phrase as every message quotes it: `"Thanks for calling." (prompts.txt:3)`, long
    ones cut to 60 characters."""
    shown = text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"
    where = f" ({source})" if source else ""
    return f"{json.dumps(shown, ensure_ascii=False)}{where}"


def error(message: str) -> None:
    """One line on stderr: `voiceprep: error: <message>` (secrets and controls removed)."""
    print(f"voiceprep: error: {safe_message(message)}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"voiceprep: warning: {safe_message(message)}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    print(safe_message(message), file=sys.stderr, flush=True)


# --- data (stdout) ----------------------------------------------------------------------


def print_json(data: Any, *, ascii_only: bool = False) -> None:
    """JSON on stdout: an object indented, a list one element per line.

    One element per line stays readable and greppable, and keeps json's C encoder (indent=
    would fall back to the pure-Python one, 10x slower over 10,000 cache entries).
    `ascii_only` escapes non-ASCII: for text taken from argv (file names), which may hold
    undecodable bytes that stdout could not encode.
    """
    if isinstance(data, list):
        rows = ",\n".join("  " + json.dumps(row, ensure_ascii=ascii_only) for row in data)
        sys.stdout.write(f"[\n{rows}\n]\n" if data else "[]\n")
    else:
        sys.stdout.write(json.dumps(data, ensure_ascii=ascii_only, indent=2) + "\n")


@dataclass(frozen=True)
class Column:
    name: str
    right: bool = False  # numbers: right-aligned on a terminal
    wide: bool = False  # free text: folds on a terminal, printed last when piped
    style: str | None = None  # Rich style on a terminal ("cyan"), dropped by NO_COLOR


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, dim: Sequence[bool] = ()
) -> None:
    """Rows on stdout: a Rich table on a terminal (`dim` rows greyed), else aligned plain
    columns under capitalized headers, a `wide` column last so the others stay aligned
    whatever its length (as `ls -l` does)."""
    if stdout_is_terminal():
        from rich.table import Table

        grid = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            grid.add_column(
                column.name.upper(),
                justify="right" if column.right else "left",
                overflow="fold" if column.wide else "ellipsis",
                style=column.style,
            )
        for i, row in enumerate(rows):
            grid.add_row(*row, style="dim" if i < len(dim) and dim[i] else None)
        out_console().print(grid, markup=False)
        return
    order = sorted(range(len(columns)), key=lambda i: columns[i].wide)
    lines = [[columns[i].name.upper().replace(" ", "_") for i in order]]
    lines += [[row[i] for i in order] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(order))]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def fields(pairs: Sequence[tuple[str, str]]) -> None:
    """`name: value` lines on stdout (a bold two-column grid on a terminal)."""
    if stdout_is_terminal():
        from rich.table import Table

        grid = Table(show_header=False, box=None, pad_edge=False)
        grid.add_column(style="bold")
        grid.add_column(justify="right")
        for name, value in pairs:
            grid.add_row(name, value)
        out_console().print(grid, markup=False)
        return
    width = max((len(name) for name, _ in pairs), default=0) + 1
    for name, value in pairs:
        sys.stdout.write(f"{name + ':':<{width}} {value}\n")


# --- progress (stderr) ------------------------------------------------------------------


class Progress:
    """A progress bar on stderr when it is a terminal, else nothing per step (or, with
    `plain_tenths`, a `done/total` line at each tenth so a CI log never looks hung).

    While a bar is live, message lines print above it through its console.
    """

    def __init__(self, bar: Any | None, task: Any | None, total: int, plain_tenths: str) -> None:
        self._bar, self._task, self.total = bar, task, total
        self._plain_tenths, self._tenths_shown = plain_tenths, 0

    @property
    def live(self) -> bool:
        return self._bar is not None

    def advance(self, count: int = 1, *, description: str | None = None) -> None:
        if self._bar is not None:
            extra = {} if description is None else {"description": description}
            self._bar.update(self._task, advance=count, **extra)

    def done(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)
            return
        if self._plain_tenths and self.total >= 20:
            tenth = completed * 10 // self.total
            if tenth > self._tenths_shown:
                self._tenths_shown = tenth
                info(f"  {completed}/{self.total} {self._plain_tenths} done")

    def line(self, kind: str, message: str) -> None:
        """A `voiceprep: <kind>: message` line (kind: error, warning)."""
        if self._bar is None:
            (error if kind == "error" else warning)(message)
            return
        text = f"voiceprep: {kind}: {safe_message(message)}"
        self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress(
    total: int | None,
    label: str,
    *,
    counter: str = "count",
    elapsed: bool = False,
    plain_tenths: str = "",
) -> Iterator[Progress]:
    """A `Progress` over `total` steps (None: no bar at all). `counter`: "count" (3/10),
    "percent"; `elapsed` shows the time so far instead of the time left."""
    if total is None or not total or not stderr_is_terminal():
        yield Progress(None, None, total or 0, plain_tenths)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as Bar,
    )

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn() if counter == "percent" else MofNCompleteColumn(),
        TimeElapsedColumn() if elapsed else TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    )
    with bar:
        yield Progress(bar, bar.add_task(label, total=total), total, plain_tenths)
