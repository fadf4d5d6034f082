"""The one set of rules for the audio that `decode`, `say` and `cache get` write.

- `-o -` (or no `-o` where stdout is the default) writes to stdout, and is refused when
  stdout is a terminal, with one message for all three commands.
- A regular file that exists is replaced only with `--force` (checked before any work, so
  `say` never pays for a synthesis it cannot store), and atomically.
- A character device (`/dev/null`), a FIFO or `/dev/stdout` is written in place, and a
  symlink is followed to its file (voiceprep.output.output_target).
- When stderr is a terminal, a command that wrote a file says so: `wrote OUT (2.50 s of
  audio)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from voiceprep.audio_format import STDIO
from voiceprep.cli import _output
from voiceprep.errors import UsageError
from voiceprep.output import (
    TERMINAL_REFUSAL,
    OutputSpec,
    convert_pcm,
    output_spec,
    output_target,
    write_pcm,
)

if TYPE_CHECKING:
    from voiceprep.cli._options import Container
    from voiceprep.config import Settings


def audio_stdout() -> BinaryIO:
    """stdout for binary audio; UsageError when it is a terminal."""
    if _output.stdout_closed():  # started with `>&-`: refused before any work
        raise _output.stdout_closed_error()
    if _output.stdout_is_terminal():
        raise UsageError(TERMINAL_REFUSAL)
    return sys.stdout.buffer


def check_output(output: str, *, force: bool) -> None:
    """Refuse now what writing `output` would refuse later (an existing file without
    --force, a directory, a terminal on stdout)."""
    if output == STDIO:
        audio_stdout()
    else:
        output_target(Path(output), force=force)


def checked_output(
    output: str,
    settings: Settings,
    *,
    container: Container | None,
    sample_format: str | None,
    force: bool,
) -> OutputSpec:
    """What `say` and `cache get` write for a phrase selected by `settings` (held at their
    rate and channels): that, unless OUT's suffix (.ulaw, .sln16, .g722, ...),
    `sample_format` or the telephony preset asks for another shape (G.711: 8000 Hz). A
    contradiction (`--format wav` for a .ulaw) is a UsageError, and so is what writing
    OUT would refuse (see `check_output`): both before any work."""
    spec = output_spec(
        None if output == STDIO else output,
        rate=None,
        channels=None,
        sample_format=sample_format,
        container=container.value if container else None,
        default_rate=settings.rate,
        default_channels=settings.channels,
        telephony=settings.process.telephony,
    )
    check_output(output, force=force)
    return spec


def write_audio(
    pcm: bytes, output: str, spec: OutputSpec, *, rate: int, channels: int, force: bool = False
) -> float:
    """s16 PCM at `rate`/`channels` to `output` (a file, or - for stdout), converted to
    `spec` (see `checked_output`); returns the seconds written."""
    data = convert_pcm(pcm, rate=rate, channels=channels, spec=spec)
    write_pcm(data, audio_stdout() if output == STDIO else output, spec, force=force)
    return spec.seconds(len(data))


def report_written(output: str, seconds: float, detail: str = "") -> None:
    """`wrote OUT (S s of audio, DETAIL)` on stderr, when it is a terminal."""
    if output != STDIO and _output.stderr_is_terminal():
        extra = f", {detail}" if detail else ""
        _output.info(f"wrote {output} ({seconds:.2f} s of audio{extra})")
