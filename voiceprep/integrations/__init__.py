"""Agent framework integrations: `livekit`, `pipecat` (see docs/integrations.md).

Each module imports its framework: install the extra (`voiceprep[livekit]`,
`voiceprep[pipecat]`) and import the module itself, never this package's names.
"""
