"""Unit tests of the concurrency limit and bounded queue."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_registry_sidecar.admission import Gate, Rejected, Verdict, admit


def test_admit_runs_below_limit() -> None:
    """A call runs at once while slots are free and nobody waits."""
    assert admit(in_flight=3, queued=0, limit=4, queue_size=2, draining=False) is Verdict.RUN


def test_admit_queues_behind_waiters() -> None:
    """A free slot is not taken past calls already waiting (arrival order is kept)."""
    assert admit(in_flight=3, queued=1, limit=4, queue_size=2, draining=False) is Verdict.QUEUE


def test_admit_refuses_when_queue_full() -> None:
    """With every slot busy and the queue full, the call is refused."""
    assert admit(in_flight=4, queued=2, limit=4, queue_size=2, draining=False) is Verdict.FULL
    assert admit(in_flight=4, queued=0, limit=4, queue_size=0, draining=False) is Verdict.FULL


def test_admit_refuses_everything_while_draining() -> None:
    """A draining sidecar takes no new call, even when idle."""
    assert admit(in_flight=0, queued=0, limit=4, queue_size=2, draining=True) is Verdict.DRAINING


@given(
    limit=st.integers(1, 5),
    queue_size=st.integers(0, 5),
    steps=st.lists(st.booleans(), max_size=60),
)
def test_admit_never_exceeds_bounds(limit: int, queue_size: int, steps: list[bool]) -> None:
    """Under any arrival/completion order, running <= limit and waiting <= queue size."""
    running = queued = refused = arrived = 0
    for arrive in steps:
        if arrive:
            arrived += 1
            verdict = admit(
                in_flight=running,
                queued=queued,
                limit=limit,
                queue_size=queue_size,
                draining=False,
            )
            if verdict is Verdict.RUN:
                running += 1
            elif verdict is Verdict.QUEUE:
                queued += 1
            else:
                # A refusal only happens when the pod is really full.
                assert (running, queued) == (limit, queue_size)
                refused += 1
        elif running:
            running -= 1
            if queued:  # the released slot goes to the longest waiter
                queued -= 1
                running += 1
        assert running <= limit and queued <= queue_size
        assert running + queued + refused <= arrived


async def test_gate_limits_queues_and_refuses() -> None:
    """Two run, one waits, the fourth is refused; a finished call lets the waiter run."""
    gate = Gate(limit=2, queue_size=1)
    release = asyncio.Event()
    order: list[str] = []

    async def call(name: str) -> None:
        async with gate.slot():
            order.append(name)
            await release.wait()

    tasks = [asyncio.create_task(call(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0.01)
    assert (gate.in_flight, gate.queued) == (2, 1)
    assert order == ["a", "b"]
    with pytest.raises(Rejected) as refused:
        async with gate.slot():
            pass
    assert refused.value.verdict is Verdict.FULL
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert (gate.in_flight, gate.queued) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A queued call whose client went away frees its queue place."""
    gate = Gate(limit=1, queue_size=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert gate.queued == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.queued == 0
    release.set()
    await holder
    assert gate.in_flight == 0


async def test_drain_waits_for_admitted_calls() -> None:
    """Drain refuses new calls, waits for running ones, and reports a timeout."""
    gate = Gate(limit=1, queue_size=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert await gate.drain(0.05) is False
    with pytest.raises(Rejected) as refused:
        async with gate.slot():
            pass
    assert refused.value.verdict is Verdict.DRAINING
    release.set()
    assert await gate.drain(1.0) is True
    await holder
