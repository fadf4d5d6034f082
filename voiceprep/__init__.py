"""voiceprep: audio in the exact shape a voice agent plays.

The public API is imported lazily so that `import voiceprep` (and the CLI's start-up)
does not pay for PyAV until audio is actually touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "decode": "voiceprep.decoding",
    "probe": "voiceprep.decoding",
    "load_audio_file": "voiceprep.decoding",
    "AudioInfo": "voiceprep.decoding",
    "AudioCache": "voiceprep.cache",
    "CacheEntry": "voiceprep.cache",
    "TTSAudioCache": "voiceprep.tts_cache",
    "get_backend": "voiceprep.backends",
    "SynthesizedAudio": "voiceprep.backends",
    "BackendIdentity": "voiceprep.keys",
    "cache_key": "voiceprep.keys",
    "normalize_text": "voiceprep.keys",
}

__all__ = [
    "AudioCache",
    "AudioInfo",
    "BackendIdentity",
    "CacheEntry",
    "SynthesizedAudio",
    "TTSAudioCache",
    "__version__",
    "cache_key",
    "decode",
    "get_backend",
    "load_audio_file",
    "normalize_text",
    "probe",
]

if TYPE_CHECKING:
    from voiceprep.backends import SynthesizedAudio, get_backend
    from voiceprep.cache import AudioCache, CacheEntry
    from voiceprep.decoding import AudioInfo, decode, load_audio_file, probe
    from voiceprep.keys import BackendIdentity, cache_key, normalize_text
    from voiceprep.tts_cache import TTSAudioCache


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'voiceprep' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
