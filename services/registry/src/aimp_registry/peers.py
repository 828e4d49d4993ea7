"""Peer replication as values: tasks, their HTTP form, batching and Eureka's rules.

Eureka peers forward every client-originated write to each other with the header
``x-netflix-discovery-replication: true``; the receiver applies it and never
forwards it again. Conflicts are settled by ``lastDirtyTimestamp``:

- a replicated heartbeat naming a *newer* document than the receiver holds, or
  an instance it does not know, is answered 404: the sender re-sends the register;
- one naming an *older* document is answered 409 with the receiver's instance:
  the sender takes that newer copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Eureka's header marking a request as replicated from a peer.
REPLICATION_HEADER = "x-netflix-discovery-replication"


class Action(StrEnum):
    REGISTER = "register"
    HEARTBEAT = "heartbeat"
    CANCEL = "cancel"
    STATUS = "status"
    DELETE_STATUS = "delete_status"
    METADATA = "metadata"


@dataclass(frozen=True)
class Task:
    """One write to replay on a peer."""

    action: Action
    app: str
    instance_id: str
    #: Query parameters (status, lastDirtyTimestamp, metadata items, ...).
    params: dict[str, str] = field(default_factory=dict)
    #: The register body (``{"instance": {...}}``) for REGISTER.
    body: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.app, self.instance_id)


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    params: dict[str, str]
    json: dict[str, Any] | None


def http_call(task: Task) -> HttpCall:
    """The Eureka REST call that replays ``task`` (path relative to the peer's base URL)."""
    base = f"/apps/{task.app}/{task.instance_id}"
    match task.action:
        case Action.REGISTER:
            return HttpCall("POST", f"/apps/{task.app}", {}, task.body)
        case Action.HEARTBEAT:
            return HttpCall("PUT", base, task.params, None)
        case Action.CANCEL:
            return HttpCall("DELETE", base, {}, None)
        case Action.STATUS:
            return HttpCall("PUT", f"{base}/status", task.params, None)
        case Action.DELETE_STATUS:
            return HttpCall("DELETE", f"{base}/status", task.params, None)
        case Action.METADATA:
            return HttpCall("PUT", f"{base}/metadata", task.params, None)
    raise ValueError(f"unknown replication action {task.action!r}")  # pragma: no cover


def coalesce(tasks: list[Task]) -> list[list[Task]]:
    """Group a batch by instance, keeping each instance's order, dropping what is moot.

    A heartbeat followed by a later heartbeat or register of the same instance is
    moot, and so is everything before a cancel. Groups can then be sent
    concurrently while each instance's own writes stay in order.
    """
    groups: dict[tuple[str, str], list[Task]] = {}
    for task in tasks:
        group = groups.setdefault(task.key, [])
        if task.action == Action.CANCEL:
            group.clear()
        elif task.action in (Action.HEARTBEAT, Action.REGISTER):
            group[:] = [t for t in group if t.action != Action.HEARTBEAT]
        group.append(task)
    return [g for g in groups.values() if g]


class Reaction(StrEnum):
    """What the sender does with a peer's answer."""

    DONE = "ok"
    #: The peer does not know the instance or holds an older document: send the register.
    RESEND_REGISTER = "not_found"
    #: The peer holds a newer document and sent it: take it locally (not forwarded).
    TAKE_PEERS_COPY = "conflict"
    #: Transport error or 5xx: try again after a backoff.
    RETRY = "retry"
    #: Any other refusal: log and drop (the next write or heartbeat repairs it).
    GIVE_UP = "failed"


def reaction(action: Action, status_code: int | None) -> Reaction:
    """Eureka's sender rules for a peer's answer (None = no answer at all)."""
    if status_code is None or status_code >= 500:
        return Reaction.RETRY
    if 200 <= status_code < 300:
        return Reaction.DONE
    if action == Action.HEARTBEAT and status_code == 404:
        return Reaction.RESEND_REGISTER
    if action == Action.HEARTBEAT and status_code == 409:
        return Reaction.TAKE_PEERS_COPY
    if action == Action.CANCEL and status_code == 404:
        return Reaction.DONE  # already gone there
    if action in (Action.STATUS, Action.DELETE_STATUS, Action.METADATA) and status_code == 404:
        return Reaction.RESEND_REGISTER  # the peer missed the instance; give it the whole
    return Reaction.GIVE_UP
