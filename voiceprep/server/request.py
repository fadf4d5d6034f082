"""SpeechRequest: OpenAI's `POST /v1/audio/speech` body, validated.

`model`, `input` and `voice` are required, as OpenAI's API requires them. How each field
maps onto the backend (documented in docs/serve.md):

- `input`: the text, 1–4096 characters (OpenAI's limit), not blank.
- `voice`: through the VoiceMap (an unknown voice is a 400).
- `model`: any non-empty name is accepted and does not change the audio: the server's
  backend and its `-O` options make the sound, as they did for `warm`.
- `response_format`: mp3 (OpenAI's default), opus, aac, flac, wav or pcm; and ulaw or
  alaw (8 kHz G.711, an extension for phone lines).
- `sample_rate`: as speaches takes it, 8000–48000 Hz, for `pcm` and `wav` (absent: pcm
  at 24 kHz as OpenAI's, wav at the cache's rate); a 400 with any other format.
- `speed`: 1.0 (or absent). Anything else is a 400: the backend's options fix the pace,
  and a cached prompt is not stretched.
- `instructions`: absent or empty; anything else is a 400 for the same reason.
- `stream_format`: `audio` (the default: the bytes) or `sse` (OpenAI's events), for every
  model.
- `timestamp_granularities`: `["word"]` (as OpenRouter takes it) adds the words' timings
  to an `sse` stream, when the audio has them; with `audio` it is a 400 (raw bytes have
  nowhere to carry them); `[]` or absent: none.
- Other fields are ignored.

A body OpenAI would refuse is a 400 here too, whatever its shape: JSON nested past
Python's recursion limit, a lone surrogate in a string (it cannot be UTF-8: no key, no
backend could take it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from voiceprep.server.errors import ApiError
from voiceprep.server.formats import DEFAULT_FORMAT, FORMATS, RESAMPLED_FORMATS
from voiceprep.server.voices import VoiceMap

MAX_INPUT_CHARS = 4096
STREAM_FORMATS = ("audio", "sse")
SAMPLE_RATES = (8000, 48000)  # speaches' bounds of `sample_rate`


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str  # as the client named it
    backend_voice: str | None  # what the backend is asked for (None: its default)
    response_format: str
    model: str
    stream_format: str = "audio"
    sample_rate: int | None = None  # pcm and wav only
    word_timestamps: bool = False  # timestamp_granularities: ["word"]


def parse_speech_request(body: bytes, voices: VoiceMap) -> SpeechRequest:
    payload = _json_object(body)
    model = _required_string(payload, "model")
    text = _required_string(payload, "input")
    if len(text) > MAX_INPUT_CHARS:
        raise ApiError(
            400,
            f"input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}",
            param="input",
            code="string_above_max_length",
        )
    if not text.strip():
        raise ApiError(400, "input is blank", param="input", code="invalid_value")
    _check_encodable(text, "input")
    voice = _required_string(payload, "voice")
    fmt = payload.get("response_format", DEFAULT_FORMAT)
    if fmt is None:
        fmt = DEFAULT_FORMAT
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ApiError(
            400,
            f"unknown response_format {_shown(fmt)}: expected one of {', '.join(FORMATS)}",
            param="response_format",
            code="invalid_value",
        )
    _check_speed(payload.get("speed"))
    instructions = payload.get("instructions")
    if instructions not in (None, ""):
        raise ApiError(
            400,
            "instructions are not supported: the server's backend options set the style",
            param="instructions",
            code="unsupported_parameter",
        )
    stream_format = payload.get("stream_format") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise ApiError(
            400,
            f"unknown stream_format {_shown(stream_format)}: expected audio or sse",
            param="stream_format",
            code="invalid_value",
        )
    return SpeechRequest(
        text=text,
        voice=voice,
        backend_voice=voices.backend_voice(voice),
        response_format=fmt,
        model=model,
        stream_format=stream_format,
        sample_rate=_sample_rate(payload.get("sample_rate"), fmt),
        word_timestamps=_word_timestamps(payload.get("timestamp_granularities"), stream_format),
    )


def _word_timestamps(value: Any, stream_format: str) -> bool:
    if value is None or value == []:
        return False
    if not isinstance(value, list) or any(g != "word" for g in value):
        raise ApiError(
            400,
            f'unknown timestamp_granularities {_shown(value)}: expected ["word"]',
            param="timestamp_granularities",
            code="invalid_value",
        )
    if stream_format != "sse":
        raise ApiError(
            400,
            "timestamp_granularities needs stream_format sse",
            param="timestamp_granularities",
            code="invalid_value",
        )
    return True


def _sample_rate(value: Any, fmt: str) -> int | None:
    if value is None:
        return None
    low, high = SAMPLE_RATES
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            400, "'sample_rate' must be an integer", param="sample_rate", code="invalid_type"
        )
    if not low <= value <= high:
        raise ApiError(
            400,
            f"sample_rate {value} is outside {low}–{high}",
            param="sample_rate",
            code="invalid_value",
        )
    if fmt not in RESAMPLED_FORMATS:
        raise ApiError(
            400,
            f"sample_rate applies to pcm and wav, not {fmt}",
            param="sample_rate",
            code="unsupported_value",
        )
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 JSON", code="invalid_json") from None
    except ValueError as exc:
        raise ApiError(
            400, f"the body is not valid JSON: {exc.args[0]}", code="invalid_json"
        ) from None
    except RecursionError:
        raise ApiError(400, "the body's JSON is nested too deeply", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return payload


def _required_string(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None or value == "":
        raise ApiError(
            400, f"missing required parameter: {name!r}", param=name, code="missing_required"
        )
    if not isinstance(value, str):
        raise ApiError(400, f"{name!r} must be a string", param=name, code="invalid_type")
    return value


def _check_encodable(value: str, name: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ApiError(
            400,
            f"{name!r} holds a lone surrogate (\\ud800–\\udfff): not valid Unicode text",
            param=name,
            code="invalid_value",
        ) from None


def _check_speed(speed: Any) -> None:
    if speed is None:
        return
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed):
        raise ApiError(400, "'speed' must be a number", param="speed", code="invalid_type")
    if not 0.25 <= speed <= 4.0:
        raise ApiError(
            400, f"speed {speed} is outside 0.25–4.0", param="speed", code="invalid_value"
        )
    if speed != 1.0:
        raise ApiError(
            400,
            f"speed {speed} is not supported: this server speaks at the pace of its "
            "backend's options (speed 1.0)",
            param="speed",
            code="unsupported_value",
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
