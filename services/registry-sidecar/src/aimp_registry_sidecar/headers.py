"""Which headers cross the proxy (pure functions over raw header lists).

End-to-end headers pass both ways unchanged (tritonclient's binary tensors rely
on ``Inference-Header-Content-Length``); hop-by-hop headers (RFC 9110 7.6.1) and
those a ``Connection`` header names stay behind. Lengths are recomputed for the
body actually sent, and trace headers are replaced by the sidecar's own.
"""

from __future__ import annotations

from collections.abc import Iterable

RawHeaders = Iterable[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Set again for the hop the sidecar makes (Host, length) or by the sidecar's middleware.
_REQUEST_REPLACED = frozenset({b"host", b"content-length", b"traceparent", b"tracestate"})
_RESPONSE_REPLACED = frozenset({b"content-length", b"x-request-id", b"traceparent", b"server"})


def _connection_listed(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return named


def _end_to_end(headers: RawHeaders, replaced: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    items = list(headers)
    dropped = HOP_BY_HOP | replaced | _connection_listed(items)
    return [(n, v) for n, v in items if n.lower() not in dropped]


def upstream_request_headers(
    headers: RawHeaders, *, request_id: str, trace: dict[str, str]
) -> list[tuple[str, str]]:
    """Headers for the upstream call: the caller's end-to-end ones plus our ids."""
    out = [
        (n.decode("latin-1"), v.decode("latin-1"))
        for n, v in _end_to_end(headers, _REQUEST_REPLACED)
        if n.lower() != b"x-request-id"
    ]
    out.append(("x-request-id", request_id))
    out.extend(trace.items())
    return out


def downstream_response_headers(
    headers: RawHeaders, *, body_length: int | None
) -> list[tuple[bytes, bytes]]:
    """Headers for our answer: the upstream's end-to-end ones and a length for our body.

    ``body_length`` None keeps the upstream's own Content-Length (answers to HEAD).
    """
    items = list(headers)
    out = [(n.lower(), v) for n, v in _end_to_end(items, _RESPONSE_REPLACED)]
    if body_length is None:
        out.extend((n.lower(), v) for n, v in items if n.lower() == b"content-length")
    else:
        out.append((b"content-length", str(body_length).encode()))
    return out
