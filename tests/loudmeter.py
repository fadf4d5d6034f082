"""An independent loudness meter for the tests: the ffmpeg command-line program's
`ebur128` filter (a separate FFmpeg build from PyAV's, run as a subprocess), which
prints BS.1770 integrated loudness and the true peak (resampled to 192 kHz).

pyloudnorm is not used for pass/fail on short clips: it counts a final partial 400 ms
block (BS.1770 counts whole blocks only), which reads up to 0.5 LU low on a 1.3 s clip.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np

_SUMMARY = re.compile(
    r"Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS.*?Peak:\s+(-?[\d.]+|-inf) dBFS", re.S
)


def ffmpeg_loudness(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of float samples shaped (frames,) or (frames, channels)."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    command = ["ffmpeg", "-hide_banner", "-nostats", "-f", "f32le", "-ar", str(rate)]
    command += ["-ac", str(channels), "-i", "-", "-af", "ebur128=peak=true", "-f", "null", "-"]
    done = subprocess.run(command, input=data, capture_output=True, check=True)
    found = _SUMMARY.search(done.stderr.decode(errors="replace"))
    assert found, done.stderr[-2000:]
    return float(found.group(1)), float(found.group(2))
