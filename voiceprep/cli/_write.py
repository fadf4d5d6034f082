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
from typing import BinaryIO

from voiceprep.audio_format import STDIO
from voiceprep.cli import _output
from voiceprep.errors import UsageError


def audio_stdout() -> BinaryIO:
    """stdout for binary audio; UsageError when it is a terminal."""
    from voiceprep.output import TERMINAL_REFUSAL

    if _output.stdout_closed():  # started with `>&-`: refused before any work
        raise _output.stdout_closed_error()
    if _output.stdout_is_terminal():
        raise UsageError(TERMINAL_REFUSAL)
    return sys.stdout.buffer


def check_output(output: str, *, force: bool) -> None:
    """Refuse now what writing `output` would refuse later (an existing file without
    --force, a directory, a terminal on stdout)."""
    from voiceprep.output import output_target

    if output == STDIO:
        audio_stdout()
    else:
        output_target(Path(output), force=force)


def write_audio(
    pcm: bytes,
    output: str,
    *,
    rate: int,
    channels: int,
    container: str | None = None,
    force: bool = False,
) -> None:
    """s16 PCM to `output` (a file, or - for stdout) as raw or WAV: `container`, else WAV
    when the file name ends in .wav."""
    from voiceprep.output import OutputSpec, container_for, write_pcm

    spec = OutputSpec(rate=rate, channels=channels, container=container_for(output, container))
    write_pcm(pcm, audio_stdout() if output == STDIO else output, spec, force=force)


def report_written(output: str, seconds: float, detail: str = "") -> None:
    """`wrote OUT (S s of audio, DETAIL)` on stderr, when it is a terminal."""
    if output != STDIO and _output.stderr_is_terminal():
        extra = f", {detail}" if detail else ""
        _output.info(f"wrote {output} ({seconds:.2f} s of audio{extra})")
