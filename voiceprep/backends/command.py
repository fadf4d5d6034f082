"""The `command` backend: any program that reads text on stdin and writes audio on stdout.

    -O cmd='["say-to-wav", "--voice", "{voice}"]'    (a JSON list: exact argv)
    -O cmd='say-to-wav --voice {voice}'              (split like a POSIX shell would split
                                                      words — but no shell ever runs)

The output is any format libav reads (WAV, MP3, FLAC, Ogg…), or raw s16le PCM when
`-O rate=…` (and optionally `-O channels=…`, default 1) declares it. In argv items, `{voice}`,
`{rate}` and `{channels}` are replaced by the voice and the target rate and channel count.
A non-zero exit fails at once, naming the program and the last line of its stderr.
The cache identity holds the argv and the declared raw format.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import AsyncIterator, Mapping

from voiceprep.backends._http import whole_samples
from voiceprep.backends._options import as_int, check_known
from voiceprep.backends._process import ProgramResult, run_program, stream_program
from voiceprep.backends._stream import pcm_chunks, wav_chunks
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import (
    BackendUnavailableError,
    EmptyAudioError,
    PermanentBackendError,
    UsageError,
)
from voiceprep.keys import BackendIdentity
from voiceprep.units import check_channels, check_rate

OPTIONS = {
    "cmd": 'the program and its arguments: a JSON list (["prog", "arg"]) or a plain string',
    "rate": "the output is raw s16le PCM at this rate (else: any format libav reads)",
    "channels": "channels of the raw PCM output (with rate; default 1)",
}
_NEEDS_CMD = 'needs -O cmd=\'["program", "arg", …]\''


def parse_cmd(value: str) -> list[str]:
    """A JSON list of strings, or a string split into words (quotes respected, no shell)."""
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            argv = json.loads(stripped)
        except ValueError as exc:
            raise UsageError(f"command: option cmd is not a valid JSON list ({exc})") from None
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise UsageError("command: option cmd must be a JSON list of strings")
    else:
        try:
            argv = shlex.split(stripped)
        except ValueError as exc:
            raise UsageError(f"command: option cmd: {exc}") from None
    if not argv or not argv[0]:
        raise UsageError("command: option cmd is empty")
    return argv


class CommandBackend:
    """A local program as a TTS backend."""

    name = "command"

    def __init__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        options = dict(options or {})
        check_known(self.name, options, OPTIONS)
        self.default_voice = voice
        self.argv = parse_cmd(options["cmd"]) if options.get("cmd") else None
        self.raw_rate: int | None = None
        self.raw_channels: int | None = None
        if "rate" in options:
            self.raw_rate = check_rate(as_int(self.name, "rate", options["rate"]))
            self.raw_channels = 1
        if "channels" in options:
            if self.raw_rate is None:
                raise UsageError("command: option channels needs option rate (raw PCM output)")
            channels = as_int(self.name, "channels", options["channels"])
            self.raw_channels = check_channels(channels)

    def __repr__(self) -> str:
        return f"CommandBackend(argv={self.argv!r})"

    def _require_argv(self) -> list[str]:
        if self.argv is None:
            raise UsageError(f"command: {_NEEDS_CMD}")
        return self.argv

    def identity(self, voice: str | None = None) -> BackendIdentity:
        options: dict[str, object] = {"cmd": list(self._require_argv())}
        if self.raw_rate is not None:
            options["rate"] = self.raw_rate
            options["channels"] = self.raw_channels
        return BackendIdentity(
            name=self.name, model=None, voice=voice or self.default_voice, options=options
        )

    def unavailable_reason(self) -> str | None:
        if self.argv is None:
            return _NEEDS_CMD
        if shutil.which(self.argv[0]) is None:
            return f"program {self.argv[0]!r} not found"
        return None

    def command_line(self, *, voice: str | None, rate: int, channels: int) -> list[str]:
        """The argv with {voice}, {rate} and {channels} filled in."""
        voice = voice or self.default_voice
        argv = []
        for item in self._require_argv():
            if "{voice}" in item:
                if voice is None:
                    raise UsageError("command: the command uses {voice} but no --voice is given")
                item = item.replace("{voice}", voice)
            argv.append(item.replace("{rate}", str(rate)).replace("{channels}", str(channels)))
        return argv

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        argv = self.command_line(voice=voice, rate=rate, channels=channels)
        try:
            result = await run_program(argv, text.encode("utf-8"))
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"command: {exc}") from None
        _check(argv[0], result)
        if self.raw_rate is not None:
            channels_out = self.raw_channels or 1
            pcm = whole_samples(result.stdout, channels_out)
            return SynthesizedAudio(pcm, rate=self.raw_rate, channels=channels_out)
        return SynthesizedAudio(result.stdout)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """Raw PCM output (`-O rate=`) is passed on as the program writes it, and so is a
        WAV with a header the program writes first (sizes 0xFFFFFFFF allowed); any other
        format is decoded whole when the program exits."""
        argv = self.command_line(voice=voice, rate=rate, channels=channels)
        empty = f"command: {argv[0]}: wrote no audio on stdout"
        output = stream_program(
            argv, text.encode("utf-8"), check=lambda result: _check(argv[0], result)
        )
        if self.raw_rate is not None:
            chunks = pcm_chunks(
                _renamed(output), rate=self.raw_rate, channels=self.raw_channels or 1, empty=empty
            )
        else:
            chunks = wav_chunks(_renamed(output), rate=rate, channels=channels, empty=empty)
        async for chunk in chunks:
            yield chunk


async def _renamed(output: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`output`, with a program that cannot start reported as the command backend's."""
    try:
        async for piece in output:
            yield piece
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"command: {exc}") from None


def _check(program: str, result: ProgramResult) -> None:
    """Raise what a finished run deserves: a non-zero exit, or nothing on stdout."""
    if result.returncode != 0:
        last = result.stderr_last_line()
        status = f"exit status {result.returncode}"
        raise PermanentBackendError(f"command: {program}: {status}" + (f": {last}" if last else ""))
    if not result.stdout:
        raise EmptyAudioError(f"command: {program}: wrote no audio on stdout")
