"""The default of each setting, in one place that costs nothing to import (the CLI's
`--help` shows them; `voiceprep.config.Settings` applies them)."""

from __future__ import annotations

BACKEND = "piper"
RATE = 24000  # Hz
CHANNELS = 1
JOBS = 4
RETRIES = 3
TIMEOUT = 60.0  # seconds per attempt
