"""Placeholder: commands registered here are written by the owner of this module."""

from __future__ import annotations

from voiceprep.cli._app import app  # noqa: F401
