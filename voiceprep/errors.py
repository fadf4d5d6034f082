"""The one error hierarchy of voiceprep.

Library code raises these; the CLI turns them into one line on stderr and the exit code
each class carries (1: something failed, 2: usage or unreadable input). Messages name the
file or phrase and the reason, and never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """The exit codes of the command line (and the one home of their numbers)."""

    OK = 0
    FAILURE = 1  # ran, but something failed: a decode, a phrase, cache damage, a miss
    USAGE = 2  # a bad option value, or an input that cannot be read at all
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class VoiceprepError(Exception):
    """Base of every error voiceprep raises on purpose."""

    exit_code: int = ExitStatus.FAILURE


# --- usage and input (exit 2) -------------------------------------------------------


class UsageError(VoiceprepError):
    """A bad option value or an input that cannot be read at all."""

    exit_code = ExitStatus.USAGE


class InputError(UsageError):
    """An input file is missing, a directory, or unreadable."""


class PhraseListError(UsageError):
    """A phrase list is malformed (bad JSON, missing `text` column, invalid UTF-8)."""


class ConfigError(UsageError):
    """voiceprep.toml or [tool.voiceprep] holds something invalid."""


# --- decoding (exit 1) -----------------------------------------------------------------


class DecodeError(VoiceprepError):
    """A file could be opened but would not decode (not audio, truncated, corrupt)."""


class NoAudioStreamError(DecodeError, ValueError):
    """The file has no audio stream. Also a ValueError, as the original API promised."""


class OutputExistsError(UsageError):
    """The output exists and --force was not given."""


class OutputError(UsageError):
    """The output cannot be created: no such directory, permission denied, a directory."""


# --- cache ----------------------------------------------------------------------------


class CacheError(VoiceprepError):
    """The on-disk cache cannot do what was asked."""


class CacheVersionError(CacheError):
    """The cache was written by a newer voiceprep (unknown schema version)."""


class CacheReadOnlyError(CacheError):
    """A write was asked of a cache on a read-only filesystem or directory."""


class CacheCorruptError(CacheError):
    """An entry's audio does not match its recorded sha256 or format."""


class CacheFormatMismatchError(CacheError):
    """An entry exists but at another rate or channel count than asked for."""


# --- backends -------------------------------------------------------------------------


class BackendError(VoiceprepError):
    """A TTS backend failed to produce audio."""


class BackendNotFoundError(BackendError, UsageError):
    """No backend of that name is installed."""

    exit_code = ExitStatus.USAGE


class BackendUnavailableError(BackendError):
    """The backend is installed but cannot run here (missing program, model or key)."""


class TransientBackendError(BackendError):
    """A failure worth retrying: timeout, connection error, HTTP 429 or 5xx."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    """A failure not worth retrying: HTTP 400/403/404, a rejected request."""


class AuthenticationError(PermanentBackendError):
    """The provider refused the credentials (HTTP 401/403): the whole run stops."""


class EmptyAudioError(BackendError):
    """The backend returned no audio. Never cached."""


class ImplausibleAudioError(BackendError):
    """The synthesis cannot be the text spoken (silent, far too short or long, mostly
    silence): refused by the plausibility gate (voiceprep.gate). Never cached."""
