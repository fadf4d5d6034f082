"""The default of each setting, in one place that costs nothing to import (the CLI's
`--help` shows them; `voiceprep.config.Settings` applies them)."""

from __future__ import annotations

BACKEND = "piper"
RATE = 24000  # Hz
CHANNELS = 1
JOBS = 4
REMOTE_JOBS = 8  # cache push/pull: transfers at once
RETRIES = 3
TIMEOUT = 60.0  # seconds per attempt
GATE_MODES = ("strict", "relaxed", "off")  # the plausibility gate (voiceprep.gate)
GATE = "strict"

# The processing chain (voiceprep.process.ProcessSettings), in the units its flags take.
TRUE_PEAK = -1.5  # dBTP, the limiter's ceiling with --loudness
SILENCE_THRESHOLD = -50.0  # dBFS, with --trim-silence
TRIM_PAD = 50.0  # ms of silence kept at each end by --trim-silence
FADE = 0.0  # ms, --fade-in / --fade-out
PAD = 0.0  # ms, --pad-start / --pad-end
