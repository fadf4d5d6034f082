"""Decoding packet by packet: the decoder's robust path.

For everything the fast path (voiceprep.graph) does not take or does not survive: bytes,
file objects, pipes, stdin, and files with corrupt packets or a format change midway
(`amovie` stops at a corrupt packet, while the ffmpeg CLI decodes around it and rebuilds
its filter graph on a format change). Packets that fail to decode are skipped and
reported through `on_warning`; a new resampler starts when the input's rate, layout or
sample format changes. Frames are grouped in an `AudioFifo` before the resampler: fewer,
bigger resampler calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from voiceprep.errors import DecodeError
from voiceprep.graph import CHUNK_SECONDS, Target

WarningHandler = Callable[[str], None]


def decode_packets(
    container: Any,
    stream: Any,
    regroup: Regrouper,
    name: str,
    seekable: bool,
    on_warning: WarningHandler | None,
) -> Iterator[bytes]:
    """Packet by packet: skip corrupt packets, rebuild the resampler on format changes
    (the caller flushes `regroup` at the end)."""
    import av
    from av.stream import Discard

    for other in container.streams:
        if other is not stream:
            other.discard = Discard.all  # do not even parse video or subtitle packets
    if stream.codec_context.name == "flac":
        stream.thread_type = "FRAME"  # FLAC decodes frames in parallel; others cannot
    time_base = stream.time_base
    decoder = stream.codec_context
    for packet in _packets(container, stream, name, seekable, on_warning):
        try:
            frames = decoder.decode(packet)
        except av.error.InvalidDataError as exc:
            warn(on_warning, f"{name}: skipped a corrupt packet{_at(packet, time_base)}", exc)
            continue
        except av.error.FFmpegError as exc:
            warn(on_warning, f"{name}: skipped a packet{_at(packet, time_base)}", exc)
            continue
        for frame in frames:
            if not regroup.convertible(frame):
                # A damaged packet can decode as garbage of an impossible shape (an AAC
                # frame of 40 channels, from a bogus in-band channel configuration that
                # would stay): drop it, and start a fresh decoder from the stream's own
                # parameters for the packets after it.
                warn(
                    on_warning,
                    f"{name}: skipped a corrupt packet{_at(packet, time_base)} (it decodes"
                    f" as {frame.layout.nb_channels} channels, which cannot be converted)",
                )
                decoder = _fresh_decoder(stream)
                break
            yield from regroup.add(frame, name, on_warning)


def _packets(
    container: Any, stream: Any, name: str, seekable: bool, on_warning: WarningHandler | None
) -> Iterator[Any]:
    """Demuxed packets; a read error ends the stream, as in the ffmpeg CLI (truncated files)."""
    import av

    packets = container.demux(stream)
    count = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            if count == 0:
                raise DecodeError(_unreadablereason(container, exc, seekable), path=name) from None
            if isinstance(exc, av.error.PatchWelcomeError) and "ogg" in container.format.name:
                # A chained Ogg file's next link, which only a file can be read for.
                raise DecodeError(
                    "a chained Ogg stream (another stream follows the first) cannot be"
                    " decoded from a pipe; give the file's path",
                    path=name,
                ) from None
            warn(on_warning, f"{name}: stopped reading after {count} packets", exc)
            return
        count += 1
        yield packet


def _unreadablereason(container: Any, exc: Exception, seekable: bool) -> str:
    if not seekable and "mp4" in container.format.name:
        return (
            "cannot be read from a pipe: this MP4/M4A keeps its index at the end;"
            " give the file's path instead"
        )
    return f"not a readable audio file ({reason(exc)})"


class Regrouper:
    """AudioFifo in front of an AudioResampler, both rebuilt when the input format changes."""

    def __init__(self, target: Target, name: str) -> None:
        self.target = target
        self.name = name
        self.fifo: Any = None
        self.resampler: Any = None
        self.input_format: tuple[int, str, str] | None = None
        self.chunk = 0  # input samples per resampler call, set from the input's rate
        self.convertible_formats: dict[tuple[int, str, str], bool] = {}

    def convertible(self, frame: Any) -> bool:
        """Whether libswresample can convert frames of `frame`'s format at all (tried
        once per format, on a throwaway resampler: 32 channels and more cannot be)."""
        key = (frame.sample_rate, frame.layout.name, frame.format.name)
        known = self.convertible_formats.get(key)
        if known is None:
            known = self.convertible_formats[key] = _can_convert(frame, self.target)
        return known

    def add(self, frame: Any, name: str, on_warning: WarningHandler | None) -> Iterator[bytes]:
        # AudioFifo.write crashes (PyAV 18) on a frame of another format: compare first.
        key = (frame.sample_rate, frame.layout.name, frame.format.name)
        if key != self.input_format:
            yield from self._restart(frame, key, name, on_warning)
        frame.pts = None  # the fifo checks pts continuity; timing is counted in samples
        fifo = self.fifo
        fifo.write(frame)
        while fifo.samples >= self.chunk:
            yield from self._resample(fifo.read(self.chunk))

    def finish(self) -> Iterator[bytes]:
        if self.fifo is not None and self.fifo.samples:
            yield from self._resample(self.fifo.read())
        if self.resampler is not None:
            yield from self._resample(None)  # the resampler's delayed tail

    def _restart(
        self,
        frame: Any,
        key: tuple[int, str, str],
        name: str,
        on_warning: WarningHandler | None,
    ) -> Iterator[bytes]:
        """Flush what the old format left, as ffmpeg does when it rebuilds its graph."""
        import av

        if self.input_format is not None:
            old = self.input_format
            warn(
                on_warning,
                f"{name}: format changed mid-stream from {old[0]} Hz {old[1]}"
                f" to {key[0]} Hz {key[1]}",
            )
            yield from self.finish()
        self.input_format = key
        # Counted at the input's rate, so an output chunk stays about CHUNK_SECONDS long
        # whatever the two rates (8 kHz in, 192 kHz out must not make 24 s chunks).
        self.chunk = max(1024, int(key[0] * CHUNK_SECONDS))
        self.fifo = av.AudioFifo()
        self.resampler = av.AudioResampler(
            format=self.target.av_format, layout=self.target.layout, rate=self.target.rate
        )

    def _resample(self, frame: Any) -> Iterator[bytes]:
        import av

        frame_bytes = self.target.frame_bytes
        try:
            converted = self.resampler.resample(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(f"cannot convert the audio ({reason(exc)})", path=self.name) from None
        for out in converted:
            # planes[0] carries alignment padding past the samples: slice it off.
            yield bytes(memoryview(out.planes[0])[: out.samples * frame_bytes])


def _fresh_decoder(stream: Any) -> Any:
    """A new decoder for `stream`, configured from the container's parameters."""
    import av

    old = stream.codec_context
    decoder = av.CodecContext.create(old.codec.name, "r")
    decoder.extradata = old.extradata
    decoder.sample_rate = old.sample_rate
    decoder.layout = old.layout
    return decoder


def _can_convert(frame: Any, target: Target) -> bool:
    import av

    silent = av.AudioFrame(format=frame.format.name, layout=frame.layout, samples=64)
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = frame.sample_rate
    resampler = av.AudioResampler(format=target.av_format, layout=target.layout, rate=target.rate)
    try:
        resampler.resample(silent)
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _at(packet: Any, time_base: Any) -> str:
    if packet.pts is None or time_base is None:
        return ""
    return f" at {float(packet.pts * time_base):.2f} s"


def warn(handler: WarningHandler | None, message: str, exc: Exception | None = None) -> None:
    if handler is not None:
        handler(f"{message} ({reason(exc)})" if exc is not None else message)


def reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")
