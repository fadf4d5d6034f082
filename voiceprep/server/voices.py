"""VoiceMap: which backend voice a request's `voice` names.

Clients send OpenAI's voice names (Pipecat refuses any other; LiveKit defaults to "ash").
The server never passes the request's string to the backend: a voice is only ever one the
operator configured, so a request cannot pick a model file or a paid voice.

- With no alias table (`[serve.voices]` / `--voice-alias`), each of OpenAI's voice names
  means the server's voice (`--voice`, else the backend's default): the voice `warm`
  used, so what `warm` stored is what every client hears.
- With a table, exactly its names are accepted, each naming a backend voice.
- Anything else is a 400, never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping

from voiceprep.server.errors import ApiError

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)


class VoiceMap:
    def __init__(
        self, aliases: Mapping[str, str | None], *, default_voice: str | None = None
    ) -> None:
        if aliases:
            self._table = dict(aliases)
        else:
            self._table = dict.fromkeys(OPENAI_VOICES, default_voice)

    @property
    def names(self) -> list[str]:
        return sorted(self._table)

    def backend_voice(self, name: str) -> str | None:
        """The backend voice for `name` (None: the backend's default); ApiError if unknown."""
        if name not in self._table:
            shown = name if len(name) <= 64 else name[:61] + "..."
            raise ApiError(
                400,
                f"unknown voice {shown!r}: this server offers {', '.join(self.names)}",
                param="voice",
                code="invalid_value",
            )
        return self._table[name]
