"""Header forwarding: end-to-end headers pass both ways, hop-by-hop ones stop here."""

from __future__ import annotations

from aimp_gateway.headers import downstream_response_headers, upstream_request_headers


def test_request_headers_keep_end_to_end_and_drop_hop_by_hop() -> None:
    """Authorization and inference headers pass; hop-by-hop and Connection-listed ones go."""
    raw = [
        (b"host", b"gw:8080"),
        (b"authorization", b"Bearer t"),
        (b"inference-header-content-length", b"123"),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"999"),
        (b"connection", b"keep-alive, x-secret-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-secret-hop", b"1"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"expect", b"100-continue"),
        (b"proxy-authorization", b"Basic x"),
        (b"x-request-id", b"caller-chosen"),
        (b"traceparent", b"00-caller-00"),
        (b"tracestate", b"k=v"),
        (b"accept", b"*/*"),
        (b"accept", b"application/json"),
    ]
    out = upstream_request_headers(
        raw, client_ip="10.0.0.7", request_id="rid-1", traceparent="00-gw-01"
    )
    names = [n.lower() for n, _ in out]
    assert ("authorization", "Bearer t") in out
    assert ("inference-header-content-length", "123") in out
    assert ("tracestate", "k=v") in out
    assert [v for n, v in out if n == "accept"] == ["*/*", "application/json"]
    for dropped in (
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "x-secret-hop",
        "te",
        "transfer-encoding",
        "upgrade",
        "expect",
        "proxy-authorization",
    ):
        assert dropped not in names
    assert dict(out)["x-request-id"] == "rid-1" and names.count("x-request-id") == 1
    assert dict(out)["traceparent"] == "00-gw-01" and names.count("traceparent") == 1
    assert dict(out)["X-Forwarded-For"] == "10.0.0.7"


def test_forwarded_for_is_appended() -> None:
    """An existing X-Forwarded-For chain is extended with the caller's address."""
    out = upstream_request_headers(
        [(b"x-forwarded-for", b"1.2.3.4")], client_ip="10.0.0.7", request_id="r", traceparent=""
    )
    assert dict(out)["X-Forwarded-For"] == "1.2.3.4, 10.0.0.7"
    assert "traceparent" not in dict(out)


def test_response_headers_pass_except_hop_by_hop_and_recomputed() -> None:
    """Inference-Header-Content-Length comes back; length, date and hop-by-hop do not."""
    raw = [
        (b"Inference-Header-Content-Length", b"77"),
        (b"Content-Type", b"application/octet-stream"),
        (b"Content-Length", b"100"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"close"),
        (b"Date", b"Mon"),
        (b"X-Request-Id", b"pod"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]
    out = downstream_response_headers(raw)
    assert out == [
        (b"inference-header-content-length", b"77"),
        (b"content-type", b"application/octet-stream"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert (b"content-length", b"100") in downstream_response_headers(raw, keep_length=True)
