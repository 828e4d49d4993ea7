"""The request event the data plane publishes is exactly a valid RequestEvent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aimp_core.events import RequestEvent
from aimp_gateway.outcomes import outcome_for, request_event


@given(
    status=st.integers(min_value=100, max_value=599),
    from_upstream=st.booleans(),
    latency_ms=st.floats(min_value=0, max_value=1e6),
    bytes_in=st.integers(min_value=0, max_value=1 << 40),
)
def test_the_event_dict_is_a_valid_request_event(
    status: int, from_upstream: bool, latency_ms: float, bytes_in: int
) -> None:
    """Built without the model, the dict still validates and dumps back unchanged."""
    event = request_event(
        ts=1.5,
        trace_id="ab" * 16,
        request_id="r",
        client_id="c",
        service="s",
        revision="v1",
        instance_id="i",
        status=status,
        latency_ms=latency_ms,
        upstream_ms=0.0,
        bytes_in=bytes_in,
        bytes_out=2,
        outcome=outcome_for(status, from_upstream=from_upstream),
    )
    assert RequestEvent.model_validate(event).model_dump() == event


def test_event_ids_are_unique_hex() -> None:
    """Every event gets its own 32-hex-digit id (consumers deduplicate on it)."""
    ids = {
        request_event(
            ts=0, trace_id="", request_id="", client_id="", service="s", revision="",
            instance_id="", status=200, latency_ms=0, upstream_ms=0, bytes_in=0, bytes_out=0,
            outcome="ok",
        )["event_id"]
        for _ in range(1000)
    }  # fmt: skip
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
