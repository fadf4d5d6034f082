"""`warm --remote`: a shared remote before and after a warm (voiceprep.warm).

Before, `pull_missing` pulls the plan's missing entries (they become cached in the plan);
after, `push_listed` pushes what the remote lacks. A remote that fails is reported, never
raised: the warm goes on locally. `voiceprep.warm.record_remote` puts both into the
summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceprep.errors import RemoteError
from voiceprep.plan import WarmPlan
from voiceprep.remote import pull, push

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache


@dataclass(frozen=True)
class RemoteFailure:
    """What went wrong moving entries to or from a remote (`warm --remote`)."""

    direction: str  # "pull" or "push"
    key: str | None  # None: the remote as a whole (unreachable, stopped mid-way)
    reason: str


@dataclass(frozen=True)
class RemotePull:
    """What `pull_missing` did: entries pulled (now cached in the plan), entries refused
    (synthesized instead), and whether the remote is usable, so worth pushing to."""

    url: str
    pulled: frozenset[str]
    refused: list[RemoteFailure]
    failure: RemoteFailure | None  # the remote as a whole (unreachable, stopped mid-way)

    @property
    def usable(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class RemotePush:
    url: str
    pushed: int
    failures: list[RemoteFailure]


def pull_missing(cache: AudioCache, url: str, *, plan: WarmPlan, **transfer: Any) -> RemotePull:
    """Before a warm: pull the plan's missing entries from the remote; they are marked
    cached in `plan`. A remote that fails is reported, never raised: the warm goes on
    locally (and does not push). `transfer`: `jobs`, `on_start`, `on_progress` of
    `voiceprep.remote.pull`."""
    wanted = {item.key for item in plan.missing}
    if not wanted:
        return RemotePull(url, frozenset(), [], None)
    try:
        report = pull(cache, url, keys=wanted, **transfer)
    except RemoteError as exc:
        return RemotePull(url, frozenset(), [], RemoteFailure("pull", None, str(exc)))
    pulled = frozenset(report.moved)
    plan.mark_cached(pulled)
    refused = [RemoteFailure("pull", key, why) for key, why in report.failed]
    failure = RemoteFailure("pull", None, report.stopped) if report.stopped else None
    return RemotePull(url, pulled, refused, failure)


def push_listed(cache: AudioCache, url: str, *, plan: WarmPlan, **transfer: Any) -> RemotePush:
    """After a warm: push what the remote lacks of the plan's entries. A failure is
    reported, never raised: the warm itself succeeded. `transfer`: as `pull_missing`."""
    keys = {item.key for item in plan.items}
    try:
        report = push(cache, url, keys=keys, **transfer)
    except RemoteError as exc:
        return RemotePush(url, 0, [RemoteFailure("push", None, str(exc))])
    failures = [RemoteFailure("push", key, why) for key, why in report.failed]
    if report.stopped is not None:
        failures.append(RemoteFailure("push", None, report.stopped))
    return RemotePush(url, len(report.moved), failures)
