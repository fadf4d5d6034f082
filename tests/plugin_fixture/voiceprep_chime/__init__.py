"""voiceprep-chime: a minimal third-party TTS backend for voiceprep.

Every phrase becomes a sine tone ("chime") of `-O pitch=HZ` (default 440 Hz) lasting
0.3 s plus 40 ms per character, returned as a WAV. It implements the whole backend
protocol: the factory signature, identity(), async synthesize(), unavailable_reason().
"""

from __future__ import annotations

import asyncio
import io
import math
import struct
import wave
from collections.abc import Mapping

from voiceprep.backends import SynthesizedAudio
from voiceprep.errors import UsageError
from voiceprep.keys import BackendIdentity

RATE = 16000


class ChimeBackend:
    name = "chime"

    def __init__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        options = dict(options or {})
        unknown = set(options) - {"pitch"}
        if unknown:
            raise UsageError(f"chime: unknown option {sorted(unknown)[0]!r} (options: pitch)")
        try:
            self.pitch = float(options.get("pitch", "440"))
        except ValueError:
            raise UsageError(f"chime: option pitch={options['pitch']!r}: expected Hz") from None
        self.default_voice = voice or "bell"

    def identity(self, voice: str | None = None) -> BackendIdentity:
        # Everything that changes the sound; computed without any I/O.
        return BackendIdentity(
            name=self.name,
            model="chime-1",
            voice=voice or self.default_voice,
            options={"pitch": self.pitch},
        )

    def unavailable_reason(self) -> str | None:
        return None

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        # CPU work goes to a thread so the event loop stays free.
        return SynthesizedAudio(await asyncio.to_thread(self._wav, text))

    def _wav(self, text: str) -> bytes:
        count = int(RATE * (0.3 + 0.04 * len(text)))
        step = 2 * math.pi * self.pitch / RATE
        frames = struct.pack(f"<{count}h", *(int(12000 * math.sin(step * i)) for i in range(count)))
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(frames)
        return out.getvalue()
