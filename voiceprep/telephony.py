"""What phone systems play: the file names Asterisk gives its sound formats, and the
telephony preset.

A file named `hello.ulaw` (or `.ul`, `.mulaw`, `.pcmu`) is 8 kHz mono μ-law with no
header; `.alaw` (`.al`, `.pcma`) the same in A-law; `.sln` 8 kHz s16le; `.sln16`,
`.sln24`, `.sln32`, `.sln48` s16le at that many kHz; `.g722` a raw G.722 bitstream of
16 kHz audio. voiceprep writes these shapes when an output is so named, and reads such a
file back by its name (`decode`, `info`), since a raw file carries no header saying what
it holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

G711 = ("ulaw", "alaw")  # the G.711 sample formats (voiceprep.audio_format's table)
G711_RATE = 8000
G722_RATE = 16000  # G.722 codes 16 kHz audio
# The byte of digital silence: what pads a G.711 frame (μ-law 0xFF, A-law 0xD5).
SILENCE = {"ulaw": 0xFF, "alaw": 0xD5}


@dataclass(frozen=True)
class PhoneFile:
    """What a file with this suffix holds (always mono, always raw)."""

    sample_format: str  # ulaw, alaw, or s16 (for g722: the audio before coding)
    rate: int
    av_format: str  # libav's name of the raw format, to read it back
    codec: str | None = None  # "g722": coded from s16

    def describe(self, suffix: str) -> str:
        """What the error messages say a file of this name holds."""
        if self.codec == "g722":
            return f"a {suffix} file holds G.722 ({self.rate} Hz mono audio)"
        what = {"ulaw": "μ-law", "alaw": "A-law"}.get(self.sample_format, "s16le")
        return f"a {suffix} file holds {self.rate} Hz mono {what}, raw"


_ULAW = PhoneFile("ulaw", G711_RATE, "mulaw")
_ALAW = PhoneFile("alaw", G711_RATE, "alaw")
PHONE_FILES: dict[str, PhoneFile] = {
    **dict.fromkeys((".ulaw", ".ul", ".mulaw", ".pcmu"), _ULAW),
    **dict.fromkeys((".alaw", ".al", ".pcma"), _ALAW),
    ".sln": PhoneFile("s16", G711_RATE, "s16le"),
    **{f".sln{k}": PhoneFile("s16", k * 1000, "s16le") for k in (16, 24, 32, 48)},
    ".g722": PhoneFile("s16", G722_RATE, "g722", codec="g722"),
}
# The names voiceprep gives G.711 raw files of its own choosing (decode without -o).
G711_SUFFIX = {"ulaw": ".ulaw", "alaw": ".alaw"}


def phone_file(path: str | os.PathLike[str] | None) -> PhoneFile | None:
    """The shape a file of this name must hold, or None for any other name."""
    if path is None:
        return None
    return PHONE_FILES.get(Path(path).suffix.lower())


def raw_input_options(source: Any) -> dict[str, Any]:
    """`av.open` arguments reading a path with a phone suffix as that raw format (nothing
    for anything else: libav probes it)."""
    if not isinstance(source, str | os.PathLike):
        return {}
    phone = phone_file(source)
    if phone is None:
        return {}
    options = {} if phone.codec else {"sample_rate": str(phone.rate), "ch_layout": "mono"}
    return {"format": phone.av_format, "options": options}


# --- the telephony preset ---------------------------------------------------------------
# Band-limited for the line as Asterisk's own prompts are made (a high-pass near 100 Hz
# before companding), at the level docs/processing.md recommends for telephony, -20 LUFS:
# about 2 dB over the nominal level of speech on a line (RFC 7874 §4, after ITU-T G.169
# and G.115: -19 dBm0 active speech, an RMS of 2600 in 16-bit PCM, -22 dBFS; on an
# espeak-ng prompt K-weighted loudness read within 1 LU of the active-speech RMS), under
# a -3 dBTP ceiling that leaves G.711 and transcoding headroom. Files written by decode,
# say and cache get are 8 kHz μ-law.
TELEPHONY_PROCESS = {"highpass": 100.0, "loudness": -20.0, "true_peak": -3.0}
TELEPHONY_SAMPLE_FORMAT = "ulaw"
