"""The README and the docs say the same thing about what an agent framework plays."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_mention_of_what_livekit_plays_says_48_khz_mono() -> None:
    mentions = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text(encoding="utf-8").splitlines():
            if "LiveKit" in line and re.search(r"\d+ kHz", line):
                mentions.append((page.name, line))
    assert {name for name, _ in mentions} >= {"README.md", "decode.md"}
    for name, line in mentions:
        assert "48 kHz mono" in line, (name, line)
        assert "stereo" not in line, (name, line)
