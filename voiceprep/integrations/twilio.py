"""Twilio Media Streams: cached prompts into a call's websocket, and the caller's audio out.

No Twilio SDK is needed (Media Streams is JSON over a websocket). Twilio plays and sends
8 kHz mono μ-law, base64, in `media` messages; a `mark` sent after the audio comes back
when playback reaches it; `clear` stops playback (barge-in).

    from voiceprep.integrations.twilio import media_messages

    pcm = await cache.fetch("Thanks for calling.")        # TTSAudioCache, any rate
    for message in media_messages(pcm, sample_rate=cache.rate, stream_sid=sid, mark="intro"):
        await websocket.send_json(message)

docs/examples/twilio_app.py is a complete Starlette app (tests/test_twilio.py runs it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from typing import Any

from voiceprep.errors import UsageError
from voiceprep.output import OutputSpec, convert_pcm
from voiceprep.phonecodec import decode_g711
from voiceprep.telephony import SILENCE

__all__ = [
    "FRAME_BYTES",
    "RATE",
    "CallerAudio",
    "clear_message",
    "inbound_pcm",
    "media_messages",
]

RATE = 8000  # Twilio's audio/x-mulaw
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law: the frame Twilio itself sends
_ULAW = OutputSpec(rate=RATE, channels=1, sample_format="ulaw")


def media_messages(
    pcm: bytes,
    *,
    sample_rate: int,
    stream_sid: str,
    channels: int = 1,
    mark: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The JSON-ready messages that play `pcm` (s16le at `sample_rate`/`channels`) on the
    call: `media` messages of 20 ms (160 bytes of 8 kHz μ-law, base64), the last padded
    with μ-law silence, then a `mark` named `mark` when given."""
    ulaw = convert_pcm(pcm, rate=sample_rate, channels=channels, spec=_ULAW)
    for start in range(0, len(ulaw), FRAME_BYTES):
        frame = ulaw[start : start + FRAME_BYTES]
        frame += bytes([SILENCE["ulaw"]]) * (FRAME_BYTES - len(frame))
        payload = base64.b64encode(frame).decode("ascii")
        yield {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
    if mark is not None:
        yield {"event": "mark", "streamSid": stream_sid, "mark": {"name": mark}}


def clear_message(stream_sid: str) -> dict[str, Any]:
    """The message that stops what is playing (barge-in)."""
    return {"event": "clear", "streamSid": stream_sid}


def inbound_pcm(message: Mapping[str, Any] | str | bytes, *, sample_rate: int) -> bytes:
    """The caller's audio of one inbound `media` message (a dict, or its JSON text) as
    s16le mono at `sample_rate`. UsageError for anything else. Each message is resampled
    on its own (at 8000 Hz it is exact); for a call's stream of messages at another rate,
    `CallerAudio` resamples them as one signal."""
    if isinstance(message, str | bytes):
        try:
            message = json.loads(message)
        except ValueError:
            raise UsageError("not a Twilio media message: invalid JSON") from None
    if not isinstance(message, Mapping) or message.get("event") != "media":
        raise UsageError("not a Twilio media message (event is not 'media')")
    media = message.get("media")
    payload = media.get("payload") if isinstance(media, Mapping) else None
    if not isinstance(payload, str):
        raise UsageError("not a Twilio media message: no media.payload")
    try:
        ulaw = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise UsageError("not a Twilio media message: payload is not base64") from None
    pcm = decode_g711(ulaw, "ulaw")
    if sample_rate == RATE or not pcm:
        return pcm
    return convert_pcm(pcm, rate=RATE, channels=1, spec=OutputSpec(rate=sample_rate, channels=1))


class CallerAudio:
    """The caller's audio across a call: each inbound `media` message in, s16le mono at
    `sample_rate` out, resampled as one continuous signal (one libswresample state for
    the call, so no seam every 20 ms)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler: Any = None

    def feed(self, message: Mapping[str, Any] | str | bytes) -> bytes:
        """The audio of one inbound message (UsageError for anything else)."""
        pcm = inbound_pcm(message, sample_rate=RATE)
        if self.sample_rate == RATE or not pcm:
            return pcm
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.sample_rate = RATE
        frame.planes[0].update(pcm)
        return self._converted(self._resampler.resample(frame))

    def flush(self) -> bytes:
        """What the resampler still holds, at the end of the call."""
        if self._resampler is None:
            return b""
        return self._converted(self._resampler.resample(None))

    @staticmethod
    def _converted(frames: Any) -> bytes:
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
