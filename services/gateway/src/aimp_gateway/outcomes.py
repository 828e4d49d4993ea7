"""How a call ended, as the request event's ``outcome`` names it (a pure mapping)."""

from __future__ import annotations

from aimp_core.events import Outcome

#: The status a call gets when its caller went away before the answer (nginx's 499).
CLIENT_CLOSED = 499

_GATEWAY: dict[int, Outcome] = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "throttled",
    502: "upstream_error",
    503: "unavailable",
    504: "timeout",
}
_UPSTREAM: dict[int, Outcome] = {429: "throttled", 503: "unavailable", 504: "timeout"}


def outcome_for(status: int, *, from_upstream: bool) -> Outcome:
    """``from_upstream``: the status came from the pod, not from the gateway's own checks."""
    if status < 400:
        return "ok"
    table = _UPSTREAM if from_upstream else _GATEWAY
    known = table.get(status)
    if known is not None:
        return known
    return "client_error" if status < 500 else "upstream_error"
