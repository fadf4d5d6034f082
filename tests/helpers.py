"""The one way tests run voiceprep's command line, and the terminal helper.

Tests get a `CLI` from the `cli` fixture (tests/conftest.py), which has already cleared
every `VOICEPREP_*` variable and moved into an empty working directory (so neither the
developer's shell nor a stray voiceprep.toml leaks in):

    def test_x(cli):
        result = cli("cache", "ls", "--json")              # in this process: fast
        assert result.code == 0 and json.loads(result.out) == []
        result = cli.process("decode", "-", stdin=data)    # a real process: pipes, signals
        proc = cli.popen("warm", "big.txt")                # a running one: Ctrl-C tests

`result.out` is stdout's bytes (`result.text` decoded), `result.err` stderr's text and
`result.errors` its `voiceprep: error:` lines. Audio is made with `audiogen`.
"""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from voiceprep.cli._output import Terminal

Arg = str | os.PathLike[str]


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    def __iter__(self) -> Iterator[Any]:
        """`code, out, err = cli(...)`, with stdout decoded."""
        return iter((self.code, self.text, self.err))

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err_lines if line.startswith("voiceprep: error: ")]


@dataclass
class CLI:
    """`voiceprep ARGS` in this process (`cli(...)`) or in a child (`cli.process(...)`),
    both in the isolated environment the fixture set up."""

    capture: pytest.CaptureFixture[bytes]
    monkeypatch: pytest.MonkeyPatch
    cwd: Path

    def __call__(
        self,
        *args: Arg,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
        terminal: Terminal | None = None,
    ) -> Result:
        """`terminal`: behave as on that terminal (see `on_terminal`), output still captured."""
        from voiceprep.cli import _output, main

        with self.monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
            self.capture.readouterr()  # drop what the test printed before
            code: int | str | None = 0
            with _output.use(terminal or _output.Terminal.detect()):
                try:
                    main([os.fspath(a) for a in args])
                except SystemExit as exc:
                    code = exc.code
            captured = self.capture.readouterr()
        if not isinstance(code, int):
            code = 0 if code is None else 1
        return Result(code, captured.out, captured.err.decode(errors="replace"))

    def _command(self, args: Sequence[Arg]) -> list[str]:
        return voiceprep_command(*args)

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return {**isolated_environment(), **(env or {})}

    def process(
        self,
        *args: Arg,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> Result:
        """In a fresh process with pipes for stdin/stdout/stderr, as a user runs it."""
        done = subprocess.run(
            self._command(args),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            cwd=cwd or self.cwd,
            env=self._environment(env),
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr.decode(errors="replace"))

    def popen(
        self,
        *args: Arg,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        **options: object,
    ) -> subprocess.Popen[bytes]:
        """A running `voiceprep ARGS` (stdin/stdout/stderr as given in `options`)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self._command(args),
            cwd=cwd or self.cwd,
            env=self._environment(env),
            **options,
        )


# The child installs Python's default Ctrl-C handler itself: a process started in the
# background by a non-interactive shell (`pytest &`, some CI runners) inherits SIGINT
# ignored, and a Ctrl-C test would then wait for a child that never stops.
_CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'voiceprep'; from voiceprep.cli import main; main(sys.argv[1:])"
)


def voiceprep_command(*args: Arg) -> list[str]:
    """The argv that runs `voiceprep ARGS` in a child process, Ctrl-C handled as at a shell."""
    return [sys.executable, "-c", _CHILD, *map(os.fspath, args)]


def run_voiceprep(
    *args: Arg | bytes,
    input: bytes = b"",
    stdout: int | None = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """`voiceprep ARGS` in a child process, its stdout where `stdout` says (a pipe, a
    device, a closed pipe…); arguments may be bytes (argv that is not UTF-8)."""
    return subprocess.run(
        [os.fsencode(a) for a in voiceprep_command()] + [os.fsencode(a) for a in args],
        input=input,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**isolated_environment(), **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def on_terminal(width: int = 100, *, no_color: bool = True) -> Terminal:
    """stdin, stdout and stderr all terminals `width` columns wide (for `cli(terminal=)`)."""
    from voiceprep.cli._output import Terminal

    return Terminal(True, True, stdin_tty=True, no_color=no_color, width=width)


def isolated_environment() -> dict[str, str]:
    """os.environ without any VOICEPREP_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VOICEPREP_")}


def read_terminal(primary: int, timeout: float = 60) -> str:
    """Everything a program writes to a pseudo-terminal until it closes it; closes `primary`.

    Each wait is bounded, so a hung child fails the test instead of hanging the suite.
    """
    screen = b""
    while select.select([primary], [], [], timeout)[0]:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the terminal closed, the program ended
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    return screen.decode(errors="replace")
