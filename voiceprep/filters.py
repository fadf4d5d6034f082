"""Streaming libavfilter filters over float32 audio (frames, channels): each keeps its
state across chunks, so a long file filtered chunk by chunk is the whole file filtered
at once.

- `Limiter`: `alimiter`, a look-ahead peak limiter, its delay compensated (output frame
  k is input frame k).
- `HighPass`: `highpass`, a second-order Butterworth high-pass (libavfilter's default
  Q of 0.707): what band-limits a prompt for the phone line (voiceprep.telephony).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from voiceprep.audio_format import layout_of
from voiceprep.loudness import _frame, linear

if TYPE_CHECKING:
    import numpy as np


class AudioFilter:
    """One libavfilter filter (`name`, `args`) between an abuffer and a sink, converting
    back to packed float32 in the input's layout."""

    def __init__(self, rate: int, channels: int, name: str, args: str) -> None:
        import av.filter

        self.rate = rate
        self._graph = av.filter.Graph()
        layout = layout_of(channels)
        source = self._graph.add_abuffer(format="flt", sample_rate=rate, layout=layout)
        step = self._graph.add(name, args)
        convert = self._graph.add("aformat", f"sample_fmts=flt:channel_layouts={layout}")
        self._sink = self._graph.add("abuffersink")
        source.link_to(step)
        step.link_to(convert)
        convert.link_to(self._sink)
        self._graph.configure()
        self._channels = channels
        self._pts = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        if len(samples):
            self._graph.push(_frame(samples, self.rate, self._pts))
            self._pts += len(samples)
        return self._drain()

    def flush(self) -> np.ndarray:
        import av

        with contextlib.suppress(av.error.EOFError):
            self._graph.push(None)
        return self._drain()

    def whole(self, samples: np.ndarray) -> np.ndarray:
        """A whole clip through the filter (same length out)."""
        import numpy as np

        head = self.push(samples)
        return np.concatenate([head, self.flush()])[: len(samples)]

    def _drain(self) -> np.ndarray:
        import av
        import numpy as np

        out = []
        while True:
            try:
                frame: Any = self._sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            out.append(frame.to_ndarray().reshape(-1, self._channels))
        if not out:
            return np.zeros((0, self._channels), dtype=np.float32)
        return np.concatenate(out)


class Limiter(AudioFilter):
    """A streaming look-ahead peak limiter at `limit_db` dBFS (5 ms attack, 50 ms release,
    auto-level off, latency compensated)."""

    def __init__(self, rate: int, channels: int, limit_db: float) -> None:
        level = max(0.0625, min(1.0, linear(limit_db)))
        args = f"limit={level:.6f}:attack=5:release=50:level=0:latency=1"
        super().__init__(rate, channels, "alimiter", args)


class HighPass(AudioFilter):
    """A streaming second-order Butterworth high-pass at `hz`."""

    def __init__(self, rate: int, channels: int, hz: float) -> None:
        super().__init__(rate, channels, "highpass", f"f={hz:g}:poles=2")
