"""Trace context without spans: W3C traceparent parsed, continued and passed on per call."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.tracing import (
    TraceContext,
    TraceMiddleware,
    current_trace_id,
    current_traceparent,
    inject_headers,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, True)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, False)),
        (f"00-{TRACE}-{PARENT}-03", (TRACE, True)),  # other flag bits: only 'sampled' counts
        (f"01-{TRACE}-{PARENT}-00-future-part", (TRACE, False)),  # a later version may extend
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly four parts
        (f"ff-{TRACE}-{PARENT}-01", None),  # version ff is invalid
        (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # hex must be lower case
        (f"00-{TRACE[:-1]}-{PARENT}-01", None),
        ("garbage", None),
    ],
)
def test_traceparent_is_parsed_as_w3c_says(value: str, expected: tuple[str, bool] | None) -> None:
    """Valid values give (trace id, sampled); every invalid form is refused."""
    assert parse_traceparent(value) == expected


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_without_error(value: str) -> None:
    """No header value makes the parser raise; a result is always 32 hex digits."""
    parsed = parse_traceparent(value)
    assert parsed is None or (len(parsed[0]) == 32 and int(parsed[0], 16) > 0)


def test_a_child_continues_the_trace_with_a_new_span() -> None:
    """The caller's trace id and sampled flag are kept; the span id is new and never zero."""
    child = TraceContext.child_of(f"00-{TRACE}-{PARENT}-00", "k=v")
    version, trace_id, span_id, flags = child.traceparent.split("-")
    assert (version, trace_id, flags, child.tracestate) == ("00", TRACE, "00", "k=v")
    assert span_id not in (PARENT, "0" * 16) and len(span_id) == 16


def test_without_a_valid_parent_a_new_sampled_trace_starts() -> None:
    """No or an invalid traceparent: a fresh trace id, sampled, and no tracestate."""
    a, b = TraceContext.child_of(None, "k=v"), TraceContext.child_of("00-bad", None)
    assert a.trace_id != b.trace_id and a.sampled and b.sampled and a.tracestate == ""
    assert parse_traceparent(a.traceparent) == (a.trace_id, True)


async def test_the_middleware_sets_headers_and_the_calls_context() -> None:
    """Responses carry x-request-id and traceparent; code below sees the same context."""
    seen: dict[str, Any] = {}

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen["trace_id"] = current_trace_id()
        seen["traceparent"] = current_traceparent()
        seen["injected"] = inject_headers({})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "headers": [
            (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
            (b"tracestate", b"k=v"),
            (b"x-request-id", b"req-1"),
        ],
    }
    await TraceMiddleware(app, "test")(scope, None, send)
    headers = dict(sent[0]["headers"])
    assert headers[b"x-request-id"] == b"req-1" and scope["state"]["request_id"] == "req-1"
    assert headers[b"traceparent"].decode() == seen["traceparent"]
    assert seen["trace_id"] == TRACE
    assert seen["injected"] == {"traceparent": seen["traceparent"], "tracestate": "k=v"}
    assert current_trace_id() == ""  # the call's context ended with it
