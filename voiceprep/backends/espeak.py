"""The `espeak` backend: the espeak-ng program, text on stdin, WAV on stdout.

`espeak-ng --stdin` reads the whole of stdin at once (without it, espeak-ng speaks stdin
line by line, which would cut a multi-line phrase into separate utterances). The text never
appears on the command line, so it can start with `-` and cannot be read as an option.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Mapping

from voiceprep.backends._options import ConfiguredBackend, as_int
from voiceprep.backends._process import ProgramResult, run_program, stream_program
from voiceprep.backends._stream import wav_chunks
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import EmptyAudioError, PermanentBackendError, UsageError
from voiceprep.keys import BackendIdentity

PROGRAM = "espeak-ng"
DEFAULT_VOICE = "en"
OPTIONS = {
    "speed": "words per minute (-s), 80–450, espeak-ng's default 175",
    "pitch": "pitch (-p), 0–99, default 50",
    "amplitude": "volume (-a), 0–200, default 100",
    "word_gap": "pause between words (-g), in units of 10 ms",
}
_FLAGS = {"speed": "-s", "pitch": "-p", "amplitude": "-a", "word_gap": "-g"}
_RANGES = {"speed": (80, 450), "pitch": (0, 99), "amplitude": (0, 200), "word_gap": (0, 1000)}


class EspeakBackend(ConfiguredBackend):
    """espeak-ng through its command line; every option changes the sound."""

    name = "espeak"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE

    def configure(self, options: Mapping[str, str]) -> None:
        self.options: dict[str, int] = {}
        for key, value in options.items():
            low, high = _RANGES[key]
            number = as_int(self.name, key, value, low=low)
            if number > high:
                raise UsageError(f"espeak: option {key}={value!r}: must be {low}–{high}")
            self.options[key] = number

    def __repr__(self) -> str:
        return f"EspeakBackend(voice={self.default_voice!r}, options={self.options!r})"

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(
            name=self.name, model=None, voice=voice or self.default_voice, options=self.options
        )

    def unavailable_reason(self) -> str | None:
        if shutil.which(PROGRAM) is None:
            return f"{PROGRAM} not found on PATH (Debian/Ubuntu: apt install espeak-ng)"
        return None

    def argv(self, voice: str | None = None) -> list[str]:
        """The command line (without the text, which goes to stdin)."""
        argv = [PROGRAM, "--stdout", "--stdin", "-b", "1", "-v", voice or self.default_voice]
        for key, value in sorted(self.options.items()):
            argv += [_FLAGS[key], str(value)]
        return argv

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        result = await run_program(self.argv(voice), text.encode("utf-8"))
        _check(result)
        return SynthesizedAudio(result.stdout)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """espeak-ng writes its WAV to stdout as it speaks (a header with placeholder sizes,
        then the samples): passed on as it arrives."""
        output = stream_program(self.argv(voice), text.encode("utf-8"), check=_check)
        async for chunk in wav_chunks(
            output, rate=rate, channels=channels, empty=f"{PROGRAM}: produced no audio"
        ):
            yield chunk


def _check(result: ProgramResult) -> None:
    """Raise what a finished espeak-ng run deserves: a failure, or no audio."""
    problem = result.stderr_last_line()
    if result.returncode != 0:
        reason = problem or f"exit status {result.returncode}"
        raise PermanentBackendError(f"{PROGRAM}: {reason}")
    if not _has_samples(result.stdout):
        # espeak-ng exits 0 on an unknown voice, writing only an error on stderr.
        if problem:
            raise PermanentBackendError(f"{PROGRAM}: {problem}")
        raise EmptyAudioError(f"{PROGRAM}: produced no audio")


def _has_samples(wav: bytes) -> bool:
    # espeak-ng streams a 44-byte header with placeholder sizes, then the samples.
    return len(wav) > 44
