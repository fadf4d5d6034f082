"""The processing options (voiceprep.process), defined once for every command that
produces audio: decode, warm, say, serve. A command decorated with `processing_options`
declares one keyword-only parameter `process` in their place (where they show in its
help) and gets their values in it, the mapping `resolve_settings` lays over the config
file's `[process]` table key by key (None means "not given"):

    @processing_options
    def my_command(..., *, process: Flags, ...) -> None:
        settings = resolve(..., process=process)

Synthesizing commands also take `Gate` (the plausibility gate, voiceprep.gate).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from voiceprep import defaults
from voiceprep.cli._options import option_group


def _number(flag: str, metavar: str, help: str, default: float | str) -> Any:
    """A processing option taking a number, its default shown as the library has it."""
    shown = default if isinstance(default, str) else f"{default:g}"
    return Annotated[
        float | None, typer.Option(flag, metavar=metavar, help=help, show_default=shown)
    ]


Loudness = _number(
    "--loudness",
    "LUFS",
    "Normalize integrated loudness to LUFS (e.g. -16, -23) by a measured gain.",
    "off",
)
TruePeak = _number(
    "--true-peak",
    "DBTP",
    "With --loudness, a limiter keeps the true peak under DBTP.",
    defaults.TRUE_PEAK,
)
TrimSilence = Annotated[
    bool | None,
    typer.Option(
        "--trim-silence/--no-trim-silence",
        help="Cut leading and trailing silence (never inside speech).",
        show_default="no",
    ),
]
SilenceThreshold = _number(
    "--silence-threshold",
    "DBFS",
    "With --trim-silence, samples under DBFS are silence.",
    defaults.SILENCE_THRESHOLD,
)
TrimPad = _number(
    "--trim-pad", "MS", "With --trim-silence, keep MS of silence at each end.", defaults.TRIM_PAD
)
FadeIn = _number("--fade-in", "MS", "Fade in over the first MS.", defaults.FADE)
FadeOut = _number("--fade-out", "MS", "Fade out over the last MS.", defaults.FADE)
PadStart = _number("--pad-start", "MS", "Add MS of silence before.", defaults.PAD)
PadEnd = _number("--pad-end", "MS", "Add MS of silence after.", defaults.PAD)


HighPass = Annotated[
    float | None,
    typer.Option(
        "--highpass",
        metavar="HZ",
        help="Cut what is below HZ (a 2nd-order Butterworth high-pass).",
        show_default="off",
    ),
]
Telephony = Annotated[
    bool | None,
    typer.Option(
        "--telephony",
        help="Prompts for phone lines: high-pass at 100 Hz, loudness -20 LUFS under "
        "-3 dBTP, and files written as 8 kHz μ-law unless OUT's name or --sample-format "
        "says otherwise.",
        show_default="off",
    ),
]


processing_options = option_group(
    "process",
    loudness=Loudness,
    true_peak=TruePeak,
    trim_silence=TrimSilence,
    silence_threshold=SilenceThreshold,
    trim_pad=TrimPad,
    fade_in=FadeIn,
    fade_out=FadeOut,
    pad_start=PadStart,
    pad_end=PadEnd,
    highpass=HighPass,
    telephony=Telephony,
)


GateMode = StrEnum("GateMode", {mode: mode for mode in defaults.GATE_MODES})  # type: ignore[misc]


Gate = Annotated[
    GateMode | None,
    typer.Option(
        "--gate",
        metavar="MODE",
        help="Plausibility check of each synthesis (silent, truncated, babbling), "
        f"MODE {', '.join(defaults.GATE_MODES[:-1])} or {defaults.GATE_MODES[-1]}.",
        show_default=defaults.GATE,
    ),
]
