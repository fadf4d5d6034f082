"""Remote stores: the cache's entry files on object storage or a shared directory.

A remote is an fsspec URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…` or a plain
path). It holds self-describing entry files only, no database, one object per key:
`<url>/voiceprep-v1/<key[:2]>/<key>.wav`. What is there is found with one listing, so
`push` of a cache the remote already holds costs a listing, not a request per entry.

Objects are immutable: push never replaces one. On S3 and Azure the PUT is conditional
(`If-None-Match: *`), on GCS the upload is (`ifGenerationMatch=0`), each atomic; on a shared
directory a file is written under a temporary name, fsynced and hard-linked into place (a
link never replaces anything), so a reader never sees a partial object. Two pushers of one
key both succeed and one object remains: every object for a key holds that key's text,
voice and format, so either is right.

Everything read from a remote is input: a name that is not `<key>.wav` in its own shard is
ignored, an object larger than `MAX_OBJECT_BYTES` is refused, an object is read only up
to the size its RIFF header gives (data past it: refused as padded), and every object is checked
with `voiceprep.cache.read_entry` (sha256 of the audio, and the key recomputed from its
text and key parts) and must carry the key its name says, before anything is imported.
A shared directory's symlinks are never followed. Local paths are chosen by the cache.

Credentials come from the environment and each provider's usual configuration, as s3fs,
gcsfs and adlfs read them (`AWS_*`, `AWS_ENDPOINT_URL_S3` for S3-compatible stores, …),
never from the URL; they never appear in a message (`scrub`).

Modules: `store` (one remote: URL, names, listing, single objects), `transfer` (push and
pull), `readthrough` (a remote consulted on a local miss). Nothing here prints; transfers
report through callbacks and `TransferReport`.
"""

from voiceprep.remote.readthrough import ReadThrough, read_through
from voiceprep.remote.store import (
    LAYOUT,
    MAX_OBJECT_BYTES,
    Remote,
    check_object,
    check_url,
    open_remote,
)
from voiceprep.remote.transfer import DEFAULT_JOBS, TransferReport, pull, push
from voiceprep.secrets import CREDENTIAL_ENV_VARS, scrub

__all__ = [
    "CREDENTIAL_ENV_VARS",
    "DEFAULT_JOBS",
    "LAYOUT",
    "MAX_OBJECT_BYTES",
    "ReadThrough",
    "Remote",
    "TransferReport",
    "check_object",
    "check_url",
    "open_remote",
    "pull",
    "push",
    "read_through",
    "scrub",
]
