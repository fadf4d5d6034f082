"""The review page: every prompt of a set on one self-contained HTML page.

`warm --export DIR` and `cache export DIR` write it as `DIR/index.html` next to the WAVs
(`export_page`); `voiceprep serve` shows it for its cache at `/review` (`CachePage`).
One row per prompt: its id and text, backend and voice, duration, integrated loudness,
true peak, clipped samples, leading and trailing silence, the plausibility gate's verdict,
a waveform and a player. Outliers are flagged (`flag_rows`).

The page needs no network: its data is inlined as JSON (Chromium cannot `fetch()` a file
from a `file://` page), its script and style are inline and pinned by a Content Security
Policy that allows nothing else, and its players load the WAVs by relative URL. Text from
the cache is data: the page builds its rows with `textContent`, never as markup.

Measures: loudness.py (true peak, silence; integrated loudness comes from the cache index
when it is recorded there, else it is measured) and gate.py (the verdict of the default,
strict gate). The waveform is the peak of each of `WAVE_COLUMNS` slices, in percent of
full scale.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import re
import statistics
import subprocess
import sys
import threading
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from voiceprep import defaults
from voiceprep.errors import CacheError, VoiceprepError
from voiceprep.gate import judge
from voiceprep.loudness import frame_level, measure, to_float

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache, CacheEntry
    from voiceprep.export import ExportReport, ManifestEntry

__all__ = [
    "PAGE_NAME",
    "CachePage",
    "Measures",
    "ReviewRow",
    "export_page",
    "flag_rows",
    "measure_prompt",
    "measure_worker",
    "PageMeasurer",
    "render",
]

PAGE_NAME = "index.html"
LOUDNESS_SPREAD = 2.0  # LU from the set's median (EBU R128 practice: ±1–2 LU)
MAX_SILENCE = 0.3  # seconds at either end
CEILING = defaults.TRUE_PEAK  # dBTP: the processing chain's default ceiling
WORKER_FROM = 200  # prompts: fewer are measured in the export's process (see PageMeasurer)
WAVE_COLUMNS = 100
_FULL_SCALE = (-32768, 32767)
_CLIP_DB = 20.0 * math.log10(32767 / 32768)  # dBFS (as loudness.db): below, none clipped
_TEMPLATE = "review.html"
# The worker leaves without tearing its interpreter down (a tenth of a second under load).
_WORKER = (
    "import os, sys; from voiceprep.review import measure_worker; measure_worker(); "
    "sys.stdout.flush(); os._exit(0)"
)
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@dataclass(frozen=True)
class Measures:
    """What the page shows of one prompt's audio. Levels None when undefined (silence)."""

    duration: float  # seconds
    loudness: float | None  # integrated, LUFS
    true_peak: float | None  # dBTP
    clipped: int  # samples at full scale
    leading_silence: float  # seconds
    trailing_silence: float  # seconds
    gate: str | None  # the strict gate's reason for refusing it; None: plausible
    wave: list[int]  # peak of each slice, 0–100 % of full scale


@dataclass(frozen=True)
class ReviewRow:
    """One prompt on the page: `name` is its id (else what names it: the exported file,
    a key's first digits); `src` is its player's URL, relative to the page."""

    key: str
    name: str
    text: str
    src: str | None
    backend: str | None
    voice: str | None
    measures: Measures
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        m = self.measures
        return {
            "key": self.key,
            "name": self.name,
            "text": self.text,
            "src": self.src,
            "backend": self.backend,
            "voice": self.voice,
            "duration": round(m.duration, 3),
            "loudness": _round(m.loudness),
            "truePeak": _round(m.true_peak),
            "clipped": m.clipped,
            "lead": round(m.leading_silence, 3),
            "trail": round(m.trailing_silence, 3),
            "gate": m.gate,
            "wave": m.wave,
            "flags": self.flags,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def measure_prompt(
    pcm: bytes, *, rate: int, channels: int, text: str, loudness: float | None = None
) -> Measures:
    """Measure s16le PCM. `loudness`: its integrated loudness when already known."""
    import numpy as np

    samples = to_float(pcm, channels)
    level = measure(samples, rate, integrated=loudness)
    clipped = 0
    if level.sample_peak is not None and level.sample_peak >= _CLIP_DB:  # else none is
        ints = np.frombuffer(pcm, dtype="<i2")
        clipped = int(np.count_nonzero((ints == _FULL_SCALE[0]) | (ints == _FULL_SCALE[1])))
    verdict = judge(pcm, rate=rate, channels=channels, text=text)
    return Measures(
        duration=level.duration,
        loudness=level.integrated,
        true_peak=level.true_peak,
        clipped=clipped,
        leading_silence=level.leading_silence,
        trailing_silence=level.trailing_silence,
        gate=verdict.reason,
        wave=waveform(samples),
    )


class PageMeasurer:
    """The measures of an export's prompts for its page, taken as the export writes their
    files (`add`), from the PCM it has in hand.

    With `WORKER_FROM` prompts or more, a prompt whose measures are of an s16 WAV (every
    layout's but the raw telephony codecs') is measured by a worker process (this Python,
    `-c`, in a session of its own so that Ctrl-C reaches only voiceprep) reading the WAV
    just written, while the export waits for its next files to reach the disk: an export
    is mostly `fsync`, so the page then adds little to its time. (A thread would compete
    for the GIL with the export's own Python code, handing it over a thousand times.) The
    worker is sent a JSON line per prompt and answers at the end of its input, a JSON line
    per prompt, into a pipe that holds them all. What it does not answer (it failed, it
    could not be started), `export_page` measures from the files.
    """

    def __init__(self, directory: Path, prompts: int) -> None:
        self.directory = directory
        self._measured: dict[str, Measures] = {}
        self._sent: set[str] = set()
        self._worker: subprocess.Popen[bytes] | None = None
        if prompts >= WORKER_FROM:
            with contextlib.suppress(OSError, ValueError):  # no interpreter to start: here
                self._worker = subprocess.Popen(
                    [sys.executable, "-c", _WORKER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                _widen(self._worker.stdout)

    def __enter__(self) -> PageMeasurer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self, entry: CacheEntry, text: str, pcm: bytes, files: Sequence[tuple[ManifestEntry, bytes]]
    ) -> None:
        """An entry as the export wrote it: its cached audio `pcm` and each file written
        of it with the file's PCM (s16le for an s16 WAV). Measured is what `export_page`
        shows: the s16 WAV its player plays, else the cached audio."""
        if entry.key in self._measured or entry.key in self._sent:
            return
        player = _playable([written for written, _ in files])
        rate, channels, data = entry.rate, entry.channels, pcm
        for written, file_pcm in files:
            if written is player and written.format == "s16":
                rate, channels, data = written.rate, written.channels, file_pcm
                if self._send(entry, text, written):
                    return
        known = _known_loudness(entry, rate, channels)
        self._measured[entry.key] = measure_prompt(
            data, rate=rate, channels=channels, text=text, loudness=known
        )

    def _send(self, entry: CacheEntry, text: str, wav: ManifestEntry) -> bool:
        if self._worker is None or self._worker.stdin is None:
            return False
        job = {
            "key": entry.key,
            "text": text,
            "file": str(self.directory / wav.file),
            "loudness": _known_loudness(entry, wav.rate, wav.channels),
        }
        try:
            self._worker.stdin.write(json.dumps(job).encode() + b"\n")
        except OSError:  # the worker is gone: the rest is measured here
            self.close()
            return False
        self._sent.add(entry.key)
        return True

    def results(self) -> dict[str, Measures]:
        """Every prompt's measures, by key (waiting for the worker's)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            try:
                answer, _ = worker.communicate()
                if worker.returncode == 0:
                    for line in answer.splitlines():
                        key, values = json.loads(line)
                        self._measured[key] = Measures(**values)
            except (OSError, ValueError, TypeError):
                pass  # measured from the files instead
        return self._measured

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()
            worker.communicate()


def _widen(pipe: Any) -> None:
    """Let the pipe hold the worker's whole answer (Linux: up to 1 MiB, the unprivileged
    maximum; about 1,800 prompts) so that it is written at once, not in 64 KiB turns
    between the two processes."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


def _known_loudness(entry: CacheEntry | None, rate: int, channels: int) -> float | None:
    """The index's loudness, when the audio measured is the cached audio (the flat
    layout's WAVs are)."""
    same = entry is not None and (rate, channels) == (entry.rate, entry.channels)
    return entry.loudness if entry is not None and same else None


def measure_worker() -> None:
    """`PageMeasurer`'s worker: prompts from stdin, their measures to stdout at its end,
    one JSON line each (a WAV it cannot read is left out)."""
    answer = []
    for line in sys.stdin.buffer:
        job = json.loads(line)
        try:
            pcm, rate, channels = wav_pcm(Path(job["file"]).read_bytes(), job["file"])
        except (OSError, VoiceprepError):
            continue
        measures = measure_prompt(
            pcm, rate=rate, channels=channels, text=job["text"], loudness=job["loudness"]
        )
        answer.append(json.dumps([job["key"], vars(measures)], separators=(",", ":")))
    sys.stdout.write("\n".join(answer))


def waveform(samples: Any, columns: int = WAVE_COLUMNS) -> list[int]:
    """Peak of each of `columns` equal slices (all channels), in percent of full scale."""
    import numpy as np

    if not len(samples):
        return []
    level = frame_level(samples)
    if len(level) < columns:
        level = np.repeat(level, -(-columns // len(level)))
    starts = np.arange(columns) * len(level) // columns
    peaks = np.maximum.reduceat(level, starts)
    percent: list[int] = np.minimum(np.ceil(peaks * 100.0), 100).astype(int).tolist()
    return percent


def flag_rows(rows: Sequence[ReviewRow]) -> float | None:
    """Fill each row's `flags` (what a reviewer should listen to first); returns the set's
    median loudness (LUFS), None when no prompt has one."""
    levels = [r.measures.loudness for r in rows if r.measures.loudness is not None]
    median = statistics.median(levels) if levels else None
    for row in rows:
        m, flags = row.measures, row.flags
        flags.clear()
        if m.loudness is not None and median is not None:
            off = m.loudness - median
            if abs(off) > LOUDNESS_SPREAD:
                flags.append(f"loudness {off:+.1f} LU from the median")
        elif m.loudness is None:
            flags.append("silent")
        if m.true_peak is not None and m.true_peak > CEILING:
            flags.append(f"true peak over {CEILING:g} dBTP")
        if m.clipped:
            flags.append(f"{m.clipped} clipped samples")
        for seconds, where in ((m.leading_silence, "before"), (m.trailing_silence, "after")):
            if round(seconds * 1000) > MAX_SILENCE * 1000:  # as shown: whole milliseconds
                flags.append(f"{seconds * 1000:.0f} ms of silence {where}")
        if m.gate is not None:
            flags.append(f"gate: {m.gate}")
    return median


def render(rows: Sequence[ReviewRow], *, title: str) -> str:
    """The page: `rows` flagged and inlined into the template as JSON."""
    median = flag_rows(rows)
    data = {
        "title": title,
        "median": _round(median),
        "spread": LOUDNESS_SPREAD,
        "ceiling": CEILING,
        "maxSilence": MAX_SILENCE,
        "rows": [row.as_dict() for row in rows],
    }
    # Inside <script type="application/json"> only "</script" could end the block: with
    # every <, > and & escaped, no text from the cache can close it or open markup.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    template = resources.files("voiceprep").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for match in _INLINE.finditer(template):
        digest = base64.b64encode(hashlib.sha256(match.group(2).encode()).digest()).decode()
        hashes[match.group(1)].append(f"'sha256-{digest}'")
    policy = (
        "default-src 'none'; "
        f"script-src {' '.join(hashes['script'])}; "
        f"style-src {' '.join(hashes['style'])}; "
        "img-src data:; media-src 'self' file:; form-action 'none'; base-uri 'none'"
    )
    return template.replace("__CSP__", policy).replace("__DATA__", payload)


def wav_pcm(blob: bytes, where: str) -> tuple[bytes, int, int]:
    """(s16le PCM, rate, channels) of a WAV file's bytes."""
    try:
        with wave.open(io.BytesIO(blob)) as reader:
            if reader.getsampwidth() != 2:
                raise VoiceprepError(f"{where}: not 16-bit PCM")
            pcm = reader.readframes(reader.getnframes())
            return pcm, reader.getframerate(), reader.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise VoiceprepError(f"{where}: not a WAV file: {exc}") from None


def export_page(
    cache: AudioCache, report: ExportReport, measured: Mapping[str, Measures] | None = None
) -> bytes:
    """The page of an export: one row per exported prompt, in manifest order. Its player
    plays the prompt's file a browser plays best (an s16 WAV at the highest rate, else a
    G.711 WAV; none when the layout wrote only raw telephony formats), and the measures
    are of that s16 WAV, or else of the cached audio the files were made from.
    `measured`: the measures the export took as it wrote (`PageMeasurer`), by key;
    the others are measured here, from the files."""
    files: dict[str, list[ManifestEntry]] = {}
    for exported in report.written:
        files.setdefault(exported.key, []).append(exported)
    measured = measured or {}
    unmeasured = any(key not in measured for key in files)
    entries = {entry.key: entry for entry in cache.entries()} if unmeasured else {}
    rows = []
    for key, written in files.items():
        player, first = _playable(written), written[0]
        measures = measured.get(key)
        if measures is None:
            measures = _measure_file(cache, report, entries.get(key), key, first.text, player)
        name = first.id or PurePosixPath(first.file).stem
        src = player.file if player is not None else None
        rows.append(ReviewRow(key, name, first.text, src, first.backend, first.voice, measures))
    title = f"{report.directory.name or report.directory.resolve().name}: prompt review"
    return render(rows, title=title).encode("utf-8")


def _measure_file(
    cache: AudioCache,
    report: ExportReport,
    entry: CacheEntry | None,
    key: str,
    text: str,
    player: ManifestEntry | None,
) -> Measures:
    """The measures of an exported prompt, read back: its s16 WAV or the cached audio."""
    if player is not None and player.format == "s16":
        path = report.directory / player.file
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise VoiceprepError(f"{path}: cannot read: {exc.strerror}") from None
        pcm, rate, channels = wav_pcm(blob, player.file)
    else:
        pcm, rate, channels = wav_pcm(_entry_file(cache, key), key)
    known = _known_loudness(entry, rate, channels)
    return measure_prompt(pcm, rate=rate, channels=channels, text=text, loudness=known)


def _playable(files: list[ManifestEntry]) -> ManifestEntry | None:
    wavs = [f for f in files if f.file.endswith(".wav")]
    return max(wavs, key=lambda f: (f.format == "s16", f.rate), default=None)


def _entry_file(cache: AudioCache, key: str) -> bytes:
    try:
        return cache.entry_bytes(key)
    except (KeyError, CacheError) as exc:
        raise VoiceprepError(f"{key[:16]}: not readable from the cache: {exc}") from None


class CachePage:
    """Serve's `/review`: the page of every entry of a cache, players pointing at
    `<audio_prefix><key>.wav`. Measures are kept per entry (key and sha256) while it is
    in the cache, so a page after the first measures only what is new."""

    def __init__(self, cache: AudioCache, *, audio_prefix: str = "review/audio/") -> None:
        self.cache = cache
        self.audio_prefix = audio_prefix
        self._measured: dict[tuple[str, str], Measures] = {}
        self._lock = threading.Lock()  # two pages at once: the second reuses the first's work

    def html(self) -> str:
        with self._lock:
            return self._html()

    def _html(self) -> str:
        entries = sorted(self.cache.entries(), key=lambda e: (e.text, e.key))
        present = {(entry.key, entry.sha256) for entry in entries}
        self._measured = {memo: m for memo, m in self._measured.items() if memo in present}
        rows = []
        for entry in entries:
            measures = self._measures(entry)
            if measures is not None:
                src = f"{self.audio_prefix}{entry.key}.wav"
                name = entry.key[:12]
                row = ReviewRow(
                    entry.key, name, entry.text, src, entry.backend, entry.voice, measures
                )
                rows.append(row)
        return render(rows, title=f"{self.cache.directory.name}: prompt review")

    def audio(self, key: str) -> bytes | None:
        """An entry's file (a WAV), checked; None when not cached or damaged."""
        try:
            return self.cache.entry_bytes(key)
        except (KeyError, CacheError):
            return None

    def _measures(self, entry: CacheEntry) -> Measures | None:
        memo = (entry.key, entry.sha256)
        if memo not in self._measured:
            blob = self.audio(entry.key)
            if blob is None:
                return None
            pcm, rate, channels = wav_pcm(blob, entry.key)
            self._measured[memo] = measure_prompt(
                pcm, rate=rate, channels=channels, text=entry.text, loudness=entry.loudness
            )
        return self._measured[memo]
