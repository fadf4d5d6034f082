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
    """Base of every error voiceprep raises on purpose.

    `reason` says what is wrong; `path` (optional) names the file, phrase or request it is
    about. `str()` is the one line the CLI prints, `path: reason`; code that needs either
    part reads the field, never the message.
    """

    exit_code: int = ExitStatus.FAILURE

    def __init__(self, reason: str, *, path: object = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (the batch pool): keep every field.
        return _restore, (type(self), str(self), self.__dict__.copy())


def _restore(cls: type[VoiceprepError], message: str, fields: dict[str, object]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(fields)
    return error


# --- usage and input (exit 2) -------------------------------------------------------


class UsageError(VoiceprepError):
    """A bad option value or an input that cannot be read at all."""

    exit_code = ExitStatus.USAGE


class InvalidValueError(UsageError):
    """A setting's value is not one it accepts: `name` (the setting, or the option as the
    user spelled it), `value` (as given), `accepted` (what would do), `origin` (None for
    the command line, else where it came from: `VOICEPREP_RATE`, `voiceprep.toml: key
    'rate'`)."""

    def __init__(
        self, name: str, value: object, accepted: str, *, origin: str | None = None
    ) -> None:
        self.name, self.value, self.accepted, self.origin = name, value, accepted, origin
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(f"invalid {name} {shown}: expected {accepted}", path=origin)

    def renamed(self, name: str) -> InvalidValueError:
        return InvalidValueError(name, self.value, self.accepted, origin=self.origin)

    def located(self, origin: str) -> InvalidValueError:
        return InvalidValueError(self.name, self.value, self.accepted, origin=origin)


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


class WriteError(VoiceprepError):
    """Writing an output failed midway (a full disk, an I/O error, a closed pipe): exit 1.
    Nothing half-written is left behind where the output is a regular file."""


# --- cache ----------------------------------------------------------------------------


class CacheError(VoiceprepError):
    """The on-disk cache cannot do what was asked."""


class CacheVersionError(CacheError):
    """The cache was written by a newer voiceprep (unknown schema version)."""


class CacheReadOnlyError(CacheError):
    """A write was asked of a cache on a read-only filesystem or directory."""


class CacheCorruptError(CacheError):
    """An entry's audio does not match its recorded sha256 or format."""


class CacheIndexError(CacheCorruptError):
    """The cache index itself is damaged (malformed, empty, not an index): repair rebuilds it."""


class NotCachedError(VoiceprepError):
    """A read-only server (`serve --read-only`): the phrase is not in the cache."""


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


# --- remote stores ----------------------------------------------------------------------


class RemoteError(VoiceprepError):
    """A remote store (fsspec URL) cannot do what was asked."""


class RemoteUnavailableError(RemoteError):
    """The remote cannot be reached or failed mid-transfer (connection, timeout, 5xx)."""


class RemoteAccessError(RemoteError):
    """The remote refused the credentials for this operation (e.g. a read-only key pushing)."""


class ImplausibleAudioError(BackendError):
    """The synthesis cannot be the text spoken (silent, far too short or long, mostly
    silence): refused by the plausibility gate (voiceprep.gate). Never cached."""
