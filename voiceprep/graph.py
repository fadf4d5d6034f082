"""libavfilter graphs that decode a file entirely in libav: the decoder's fast path.

`amovie` demuxes and decodes inside the graph, `aformat` converts (libswresample with its
defaults, as the ffmpeg CLI), `asetnsamples` groups the output into chunks: Python sees one
frame per chunk. `whole_file()` decodes a file from its start; `segment()` from a seek point,
for one piece of a file decoded across processes (voiceprep.segments). A segment's graph
adds `asettb` (timestamps counted in input samples) and `atrim`, so the resampler starts at
exactly the input sample the caller names: started on the same sample grid as the serial
decode's resampler, it computes the same output samples once its filter has filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceprep.audio_format import AudioFormat

# libav's name of each sample format (the formats themselves: voiceprep.audio_format)
AV_FORMATS = {"s16": "s16", "f32": "flt"}
# Samples per yielded chunk (and per resampler call on the robust path). Bigger means
# less Python per second of audio: 1 s instead of 0.25 s saved 3–10 % on a 30-minute
# AAC file; a chunk is still small (at most 1.5 MB: 192 kHz stereo f32).
CHUNK_SECONDS = 1.0


@dataclass(frozen=True)
class Target:
    """The output format asked for."""

    rate: int
    channels: int
    av_format: str
    sample_bytes: int

    @classmethod
    def of(cls, shape: AudioFormat) -> Target:
        return cls(shape.rate, shape.channels, AV_FORMATS[shape.sample_format], shape.sample_bytes)

    @property
    def layout(self) -> str:
        return "mono" if self.channels == 1 else "stereo"

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_bytes

    @property
    def chunk_samples(self) -> int:
        return max(1024, int(self.rate * CHUNK_SECONDS))


def whole_file(path: Path, target: Target) -> Iterator[bytes]:
    """amovie → aformat → asetnsamples → sink: every PCM chunk of the file.

    amovie opens the file itself (it is not opened twice: the index of a long MP4 costs
    megabytes) and picks the best audio stream ("da"), as `streams.best("audio")` does.
    An FFmpegError means a corrupt packet or a format change: the caller falls back.
    """
    sink = _configured(path, target, {}, [])
    yield from _pull_all(sink, target.frame_bytes)


def segment(path: Path, target: Target, *, seek: float, first_sample: int) -> Iterator[bytes]:
    """The PCM of the file from input sample `first_sample` on (counted as the stream's
    timestamps count, at its rate), demuxing from `seek` seconds (before it, so that the
    decoder settles). One decoding thread: the pieces are the parallelism (FLAC's frame
    threads cost ~15 % more CPU than they save on a core the other pieces use)."""
    trim = [("asettb", {"expr": "1/sr"}), ("atrim", {"start_pts": str(first_sample)})]
    sink = _configured(path, target, {"seek_point": f"{seek:.6f}", "dec_threads": "1"}, trim)
    yield from _pull_all(sink, target.frame_bytes)


def _configured(
    path: Path,
    target: Target | None,
    movie_options: dict[str, str],
    middle: list[tuple[str, dict[str, str]]],
) -> Any:
    """amovie → `middle` → (aformat → asetnsamples, for a target) → abuffersink,
    configured; the sink."""
    from av.filter import Graph

    graph = Graph()
    chain = [graph.add("amovie", filename=_name(path), streams="da", **movie_options)]
    chain += [graph.add(name, **options) for name, options in middle]
    if target is not None:
        chain.append(
            graph.add(
                "aformat",
                sample_fmts=target.av_format,
                sample_rates=str(target.rate),
                channel_layouts=target.layout,
            )
        )
        chain.append(graph.add("asetnsamples", n=str(target.chunk_samples), p="0"))
    chain.append(graph.add("abuffersink"))
    for before, after in zip(chain, chain[1:], strict=False):
        before.link_to(after)
    graph.configure()
    return chain[-1]


def _name(path: Path) -> str:
    # "file:" keeps a name with a colon from being read as a protocol.
    return "file:" + str(path.resolve())


def _pull_all(sink: Any, frame_bytes: int) -> Iterator[bytes]:
    import av

    while True:
        try:
            frame = sink.pull()
        except av.error.EOFError:
            return
        # (EAGAIN, never seen with amovie as the source, would raise an FFmpegError: the
        # caller then falls back to the robust path rather than stop early.)
        # planes[0] carries alignment padding past the samples: slice it off.
        yield bytes(memoryview(frame.planes[0])[: frame.samples * frame_bytes])
