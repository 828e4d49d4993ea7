"""Unit tests of the Registrar's rounds against an in-memory registration (no network)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_registry_sidecar.registration import (
    Action,
    Registrar,
    RegistryUnreachable,
    next_action,
)


@dataclass
class MemoryRegistration:
    """Records every call; ``down`` makes calls fail, ``forget()`` drops the entry."""

    app: str = "IRIS"
    instance_id: str = "pod-1"
    status: str | None = None
    down: bool = False
    calls: list[str] = field(default_factory=list)

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise RegistryUnreachable("connection refused")

    async def register(self, status: str) -> None:
        self._call(f"register {status}")
        self.status = status

    async def renew(self, status: str) -> bool:
        self._call(f"renew {status}")
        return self.status is not None

    async def set_status(self, status: str) -> None:
        self._call(f"status {status}")
        self.status = status

    async def cancel(self) -> None:
        self._call("cancel")
        self.status = None

    def forget(self) -> None:
        self.status = None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(reg: MemoryRegistration, ready: list[bool], clock: Clock) -> Registrar:
    async def probe() -> bool:
        return ready[0]

    return Registrar(
        reg,
        probe=probe,
        renewal_interval_s=10,
        poll_interval_s=1,
        backoff_max_s=8,
        clock=clock,
    )


async def test_status_follows_readiness() -> None:
    """STARTING first, UP once ready, DOWN when readiness is lost, UP again when back."""
    reg, ready, clock = MemoryRegistration(), [False], Clock()
    registrar = make(reg, ready, clock)
    await registrar.tick()
    ready[0] = True
    await registrar.tick()
    ready[0] = False
    await registrar.tick()
    ready[0] = True
    await registrar.tick()
    await registrar.tick()  # nothing changed and no heartbeat due: no call
    assert reg.calls == ["register STARTING", "register UP", "register DOWN", "register UP"]
    assert registrar.registered_status == "UP"


async def test_renews_on_interval_and_reregisters_when_forgotten() -> None:
    """A heartbeat goes out once per renewal interval; a refused one re-registers at once."""
    reg, ready, clock = MemoryRegistration(), [True], Clock()
    registrar = make(reg, ready, clock)
    await registrar.tick()
    clock.now += 9.9
    await registrar.tick()
    assert reg.calls == ["register UP"]
    clock.now += 0.1
    await registrar.tick()
    assert reg.calls[-1] == "renew UP"
    reg.forget()  # e.g. the registry restarted
    clock.now += 10
    await registrar.tick()
    assert reg.calls[-2:] == ["renew UP", "register UP"]
    assert reg.status == "UP"


async def test_backs_off_while_unreachable_then_registers() -> None:
    """Failures wait 1, 2, 4... s between tries; the first success registers the current status."""
    reg, ready, clock = MemoryRegistration(down=True), [True], Clock()
    registrar = make(reg, ready, clock)
    tries_at: list[float] = []
    for _ in range(40):  # 20 s of rounds every 0.5 s
        before = len(reg.calls)
        await registrar.tick()
        if len(reg.calls) > before:
            tries_at.append(clock.now - 100)
        clock.now += 0.5
    assert tries_at == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert registrar.registered_status is None and registrar.failures == 5
    reg.down = False
    clock.now += 8
    await registrar.tick()
    assert reg.status == "UP" and registrar.failures == 0


async def test_leave_marks_out_of_service_drains_then_cancels() -> None:
    """Stopping pins OUT_OF_SERVICE, runs the drain, then deregisters, in that order."""
    reg, ready, clock = MemoryRegistration(), [True], Clock()
    registrar = make(reg, ready, clock)
    await registrar.tick()

    async def drain() -> None:
        reg.calls.append("drain")

    await registrar.leave(before_cancel=drain)
    assert reg.calls == ["register UP", "status OUT_OF_SERVICE", "drain", "cancel"]
    assert registrar.registered_status is None and reg.status is None


async def test_leave_with_registry_down_still_drains() -> None:
    """An unreachable registry does not skip the drain, and leave() does not raise."""
    reg, ready, clock = MemoryRegistration(), [True], Clock()
    registrar = make(reg, ready, clock)
    await registrar.tick()
    reg.down = True
    drained: list[bool] = []

    async def drain() -> None:
        drained.append(True)

    await registrar.leave(before_cancel=drain)
    assert drained == [True]
    assert reg.calls == ["register UP", "status OUT_OF_SERVICE", "cancel"]


@given(steps=st.lists(st.floats(0.01, 7), min_size=1, max_size=80))
def test_heartbeats_are_spaced_and_never_late(steps: list[float]) -> None:
    """Polled at any times, heartbeats are at least an interval apart and go out at the
    first poll once one is due (a steady status, a reachable registry)."""
    now, last, sent = 0.0, 0.0, [0.0]
    for step in steps:
        now += step
        action = next_action(
            registered="UP",
            want="UP",
            now=now,
            renewed_at=last,
            renewal_interval_s=10,
            retry_at=0,
        )
        assert action is not Action.REGISTER
        if action is Action.RENEW:
            last = now
            sent.append(now)
        assert now - last < 10
    assert all(b - a >= 10 for a, b in itertools.pairwise(sent))


def test_backoff_and_status_change_rules() -> None:
    """A backoff silences everything; a status change registers before any heartbeat."""
    common = {"now": 50.0, "renewed_at": 0.0, "renewal_interval_s": 10.0}
    assert next_action(registered="UP", want="DOWN", retry_at=51, **common) is Action.NOTHING
    assert next_action(registered="UP", want="DOWN", retry_at=0, **common) is Action.REGISTER
    assert next_action(registered=None, want="UP", retry_at=0, **common) is Action.REGISTER
    assert next_action(registered="UP", want="UP", retry_at=0, **common) is Action.RENEW


@pytest.mark.parametrize("status", ["STARTING", "UP", "DOWN"])
async def test_registration_error_is_not_raised_from_tick(status: str) -> None:
    """tick() never raises on a registry failure, whatever the status it wanted."""
    reg, clock = MemoryRegistration(down=True), Clock()
    ready = [status == "UP"]
    registrar = make(reg, ready, clock)
    registrar.ever_ready = status == "DOWN"
    await registrar.tick()
    assert reg.calls == [f"register {status}"]


async def test_recheck_probes_at_once_instead_of_waiting_for_the_poll() -> None:
    """After recheck() the loop probes again within milliseconds, not after the poll interval."""
    reg, ready = MemoryRegistration(), [True]
    registrar = Registrar(
        reg,
        probe=lambda: _ready(ready),
        renewal_interval_s=30,
        poll_interval_s=60,  # without recheck() the next probe would be a minute away
        backoff_max_s=1,
    )
    registrar.start()
    try:
        for _ in range(100):
            if registrar.registered_status == "UP":
                break
            await asyncio.sleep(0.01)
        ready[0] = False
        registrar.recheck()
        for _ in range(100):
            if registrar.registered_status == "DOWN":
                break
            await asyncio.sleep(0.01)
    finally:
        await registrar.stop()
    assert reg.calls == ["register UP", "register DOWN"]


async def _ready(flag: list[bool]) -> bool:
    return flag[0]
