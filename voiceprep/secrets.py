"""Secrets: API keys read from the environment, and their removal from every message.

Keys come from the environment only (never from files or flags). Files and Kubernetes
secrets often end in a newline, so `env_secret` strips surrounding whitespace. Every key
variable it reads is remembered, and `redact` removes from a message the key now set in
each remembered variable and in each of `SECRET_ENV_VARS` (a key is secret before a
backend uses it), and any run of 8 or more characters of one of them (except a run that
is a plain lowercase word): a provider that echoes part of a key ("Incorrect API key provided:
sk-ab***************xyz12345") leaks nothing either. Text shaped like a key (`sk-…`,
`xi-…`, `key_…`) is removed too, whatever its value.

The HTTP layer, the retry warnings and the CLI's error printer all go through `redact`. A message
about a remote store goes through `scrub`: `redact`, plus the stores' credentials
(`CREDENTIAL_ENV_VARS`, fsspec's `FSSPEC_*` ones) and a URL's userinfo.
"""

from __future__ import annotations

import os
import re

# Environment variables that hold credentials (the built-in backends and the providers'
# ones); a plugin's keys are covered once it reads them through `env_secret`.
SECRET_ENV_VARS = (
    "OPENAI_API_KEY",
    "ELEVENLABS_API_KEY",
    "CARTESIA_API_KEY",
    "DEEPGRAM_API_KEY",
    "AZURE_SPEECH_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_ACCESS_TOKEN",
)
REDACTED = "[redacted]"
# The shortest run of a key that is removed wherever it appears. Shorter runs are too
# likely to be ordinary words; shorter keys are removed whole.
MIN_RUN = 8
_KEYLIKE = re.compile(r"\b(?:sk|xi|key)[-_][A-Za-z0-9*_\-.]{6,}")
_names: set[str] = set(SECRET_ENV_VARS)


def remember(name: str) -> None:
    """Treat environment variable `name` as a secret: `redact` removes its value."""
    _names.add(name)


def env_secret(name: str) -> str | None:
    """The key in environment variable `name`, stripped; None when unset or blank.

    The variable is remembered, so that `redact` removes its value from every message.
    """
    remember(name)
    value = os.environ.get(name, "").strip()
    return value or None


def configured_secrets() -> set[str]:
    """Every secret value set now, in a variable read through `env_secret` or listed."""
    values = set()
    for name in _names:
        value = os.environ.get(name, "").strip()
        if value:
            values.add(value)
    return values


def redact(message: str, *extra: str | None) -> str:
    """`message` without any configured secret (nor `extra` ones), nor a run of 8 or more
    characters of one, nor anything shaped like a key."""
    for secret in sorted(configured_secrets() | {s.strip() for s in extra if s}, key=len):
        if secret:
            message = _remove(message, secret)
    return _KEYLIKE.sub(REDACTED, message)


def _remove(message: str, secret: str) -> str:
    if len(secret) <= MIN_RUN:
        return message.replace(secret, REDACTED)
    # Mark every character covered by an 8-character window of the secret: this covers
    # any longer run of it (each of its windows is one of the secret's).
    windows = {secret[i : i + MIN_RUN] for i in range(len(secret) - MIN_RUN + 1)}
    marked = bytearray(len(message))
    found = False
    for i in range(len(message) - MIN_RUN + 1):
        if message[i : i + MIN_RUN] in windows:
            marked[i : i + MIN_RUN] = b"\x01" * MIN_RUN
            found = True
    if not found:
        return message
    out: list[str] = []
    i = 0
    while i < len(message):
        if not marked[i]:
            out.append(message[i])
            i += 1
            continue
        end = i
        while end < len(message) and marked[end]:
            end += 1
        run = message[i:end]
        # A run that is a plain lowercase word ("elevenlabs" in a test key, or in a
        # message) is a word, not a fragment of a random key: of a random 62-symbol key's
        # 8-character windows, about one in a thousand is all lowercase letters.
        word = run.isascii() and run.isalpha() and run.islower() and secret not in run
        out.append(run if word else REDACTED)
        i = end
    return "".join(out)


# --- the remote stores' credentials ----------------------------------------------------

_MIN_SECRET = 6  # a shorter value is no real credential

# Environment variables holding credentials for the remote stores fsspec reaches: `scrub`
# removes their values from every message about a remote.
CREDENTIAL_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",  # adlfs's service principal
    "AZURE_CLIENT_SECRET",  # azure-identity's
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
# fsspec's own configuration (`FSSPEC_<PROTOCOL>_<ARGUMENT>`, e.g. FSSPEC_GCS_TOKEN: the one
# way to hand gcsfs a token through the environment): an argument named like a credential.
# Compiled when first used (re caches it), not when every command starts: 2 M instructions.
_FSSPEC_CREDENTIAL = (
    r"(?i)FSSPEC_[A-Z0-9]+_\w*(?:KEY|SECRET|TOKEN|PASSWORD|CONNECTION_STRING|CREDENTIALS?|SAS)"
)
# The parts of an Azure Storage connection string that are no credential (names and
# endpoints): kept in messages, so that an error still says which host failed.
_PLAIN_CONNECTION_PARTS = frozenset(
    name.lower()
    for name in (
        "DefaultEndpointsProtocol",
        "AccountName",
        "EndpointSuffix",
        "BlobEndpoint",
        "BlobSecondaryEndpoint",
        "DfsEndpoint",
        "FileEndpoint",
        "QueueEndpoint",
        "TableEndpoint",
        "UseDevelopmentStorage",
        "DevelopmentStorageProxyUri",
    )
)


def scrub(message: str) -> str:
    """`message` without any credential set in the environment (nor a URL's userinfo)."""
    # A value this short is no real credential, and removing it would mangle the message.
    secrets = [value for value in _credentials() if len(value) >= _MIN_SECRET]
    message = redact(message, *secrets)
    return re.sub(r"(://)[^/@\s]*@", r"\1[redacted]@", message)


def _credentials() -> list[str]:
    fsspec = [name for name in os.environ if re.fullmatch(_FSSPEC_CREDENTIAL, name)]
    names = [*CREDENTIAL_ENV_VARS, *fsspec]
    values: list[str] = []
    for name in names:
        value = os.environ.get(name, "").strip()
        if name.upper().endswith("CONNECTION_STRING"):
            values += _connection_string_secrets(value)
        else:
            values.append(value)
    return values


def _connection_string_secrets(value: str) -> list[str]:
    """The credentials of an Azure Storage connection string (AccountKey=…;
    SharedAccessSignature=…: every part not known to be a name or a plain endpoint); the
    whole string when it does not read as `Name=value;…`."""
    parts = [part.partition("=") for part in value.split(";") if part.strip()]
    if any(not equals or not name.strip() for name, equals, _ in parts):
        return [value]
    return [
        part.strip()
        for name, _, part in parts
        if name.strip().lower() not in _PLAIN_CONNECTION_PARTS or "?" in part
    ]


__all__ = [
    "CREDENTIAL_ENV_VARS",
    "MIN_RUN",
    "REDACTED",
    "SECRET_ENV_VARS",
    "configured_secrets",
    "env_secret",
    "redact",
    "scrub",
]
