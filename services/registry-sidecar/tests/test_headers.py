"""Unit tests of which headers cross the proxy."""

from __future__ import annotations

from aimp_registry_sidecar.headers import downstream_response_headers, upstream_request_headers


def test_request_keeps_end_to_end_and_drops_hop_by_hop() -> None:
    """Inference and auth headers pass; hop-by-hop, Connection-named and length headers do not."""
    raw = [
        (b"host", b"gw:8080"),
        (b"content-length", b"99"),
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-hop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"inference-header-content-length", b"123"),
        (b"authorization", b"Bearer abc"),
        (b"content-type", b"application/octet-stream"),
        (b"traceparent", b"00-old-old-01"),
        (b"x-request-id", b"caller-id"),
    ]
    out = upstream_request_headers(raw, request_id="rid-1", trace={"traceparent": "00-new"})
    assert out == [
        ("inference-header-content-length", "123"),
        ("authorization", "Bearer abc"),
        ("content-type", "application/octet-stream"),
        ("x-request-id", "rid-1"),
        ("traceparent", "00-new"),
    ]


def test_response_recomputes_length_and_keeps_duplicates() -> None:
    """The answer carries the upstream's end-to-end headers (repeats kept) and our length."""
    raw = [
        (b"Content-Type", b"application/octet-stream"),
        (b"Inference-Header-Content-Length", b"42"),
        (b"Content-Length", b"1000"),
        (b"Connection", b"close"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"x-request-id", b"upstream-id"),
    ]
    out = downstream_response_headers(raw, body_length=7)
    assert out == [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", b"42"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"7"),
    ]


def test_head_answer_keeps_upstream_length() -> None:
    """For HEAD there is no body, so the upstream's Content-Length is passed on unchanged."""
    out = downstream_response_headers([(b"Content-Length", b"1000")], body_length=None)
    assert out == [(b"content-length", b"1000")]
