"""Which headers cross the gateway (RFC 9110 §7.6.1): end-to-end ones pass both ways.

Hop-by-hop headers (and any named in ``Connection``) stop here;
``content-length`` is recomputed; the gateway's own ``x-request-id``,
``traceparent`` and ``X-Forwarded-For`` replace or extend the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable

RawHeaders = Iterable[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
#: Never forwarded upstream: recomputed (length, host), replaced by the gateway, or
#: already answered by it (``expect: 100-continue``: the whole body has been read).
_REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
    b"traceparent",
}
#: Never passed back: recomputed by the server or added by the gateway's middleware.
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", b"date", b"x-request-id", b"traceparent"}


def _connection_listed(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Extra hop-by-hop names a ``Connection`` header lists."""
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            names.update(p.strip().lower() for p in value.split(b",") if p.strip())
    return frozenset(names)


def upstream_request_headers(
    raw: RawHeaders,
    *,
    client_ip: str | None,
    request_id: str,
    traceparent: str,
) -> list[tuple[str, str]]:
    """Headers for the upstream request, from the caller's ASGI (lower-case) headers."""
    headers = list(raw)
    listed = _connection_listed(headers)
    out: list[tuple[str, str]] = []
    forwarded_for = ""
    for name, value in headers:
        if name in _REQUEST_DROP or name in listed or name.startswith(b"proxy-"):
            continue
        if name == b"x-forwarded-for":
            forwarded_for = value.decode("latin-1")
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if client_ip:
        forwarded_for = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    if forwarded_for:
        out.append(("X-Forwarded-For", forwarded_for))
    out.append(("x-request-id", request_id))
    if traceparent:
        out.append(("traceparent", traceparent))
    return out


def downstream_response_headers(
    raw: RawHeaders, *, keep_length: bool = False
) -> list[tuple[bytes, bytes]]:
    """The upstream response's end-to-end headers, names lower-cased for ASGI.

    ``keep_length`` keeps the upstream ``content-length`` (a HEAD response has none
    of its body, but its length header still describes the resource).
    """
    headers = [(name.lower(), value) for name, value in raw]
    listed = _connection_listed(headers)
    return [
        (name, value)
        for name, value in headers
        if not (
            (name in _RESPONSE_DROP and not (keep_length and name == b"content-length"))
            or name in listed
            or name.startswith(b"proxy-")
        )
    ]
