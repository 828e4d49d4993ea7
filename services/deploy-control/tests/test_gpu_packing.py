"""GPU bin-packing: capacity is never exceeded, each request is placed once, refusals are real."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_deploy_control.gpu_packing import (
    Gpu,
    GpuRequest,
    Placed,
    Refused,
    pack,
    place,
    refusal_for,
    replica_requests,
)

gpus_st = st.lists(
    st.builds(
        Gpu,
        node=st.sampled_from(["n1", "n2", "n3"]),
        index=st.integers(0, 7),
        memory_mib=st.integers(1000, 81920),
    ),
    max_size=8,
    unique_by=lambda g: (g.node, g.index),
)


@st.composite
def requests_st(draw: st.DrawFn) -> list[GpuRequest]:
    n = draw(st.integers(0, 14))
    out = []
    for i in range(n):
        if draw(st.booleans()):
            out.append(GpuRequest(f"r{i}", mem_mib=draw(st.integers(1, 50000))))
        else:
            out.append(GpuRequest(f"r{i}", whole=draw(st.integers(1, 3))))
    return out


@settings(max_examples=300, deadline=None)
@given(gpus_st, requests_st())
def test_packing_never_exceeds_a_gpu_and_places_each_request_once(
    gpus: list[Gpu], requests: list[GpuRequest]
) -> None:
    """Shares fit their GPU, whole GPUs hold nothing else, every request is decided once."""
    result = pack(gpus, requests)
    decided = [p.key for p in result.placed] + [r.key for r in result.refused]
    assert sorted(decided) == sorted(r.key for r in requests)
    by_key = {r.key: r for r in requests}
    load: dict[tuple[str, int], int] = {}
    holders: dict[tuple[str, int], list[str]] = {}
    for p in result.placed:
        req = by_key[p.key]
        if req.mem_mib is not None:
            (gpu,) = p.gpus
            load[gpu] = load.get(gpu, 0) + req.mem_mib
        else:
            assert len(p.gpus) == req.whole and len({node for node, _ in p.gpus}) == 1
        for gpu in p.gpus:
            holders.setdefault(gpu, []).append(p.key)
    capacity = {g.key: g.memory_mib for g in gpus}
    for gpu, used in load.items():
        assert used <= capacity[gpu]
    for p in result.placed:
        if by_key[p.key].whole:
            for gpu in p.gpus:
                assert holders[gpu] == [p.key], "a whole GPU is shared"


@settings(max_examples=300, deadline=None)
@given(gpus_st, requests_st())
def test_a_request_is_refused_only_when_no_gpu_has_room(
    gpus: list[Gpu], requests: list[GpuRequest]
) -> None:
    """After packing, no refused share fits any GPU and no refused whole request fits any node."""
    result = pack(gpus, requests)
    by_key = {r.key: r for r in requests}
    for refused in result.refused:
        req = by_key[refused.key]
        if req.mem_mib is not None:
            assert all(g.free_mib < req.mem_mib for g in result.gpus)
        else:
            idle: dict[str, int] = {}
            for g in result.gpus:
                idle[g.node] = idle.get(g.node, 0) + g.idle
            assert all(count < req.whole for count in idle.values())


def test_best_fit_chooses_the_tightest_gpu() -> None:
    """A share goes to the GPU it leaves with the least free memory."""
    gpus = [Gpu("n1", 0, 24000), Gpu("n1", 1, 16000), Gpu("n2", 0, 12000)]
    outcome, after = place(gpus, GpuRequest("a", mem_mib=10000))
    assert outcome == Placed("a", (("n2", 0),))
    assert {g.key: g.used_mib for g in after}[("n2", 0)] == 10000


def test_a_whole_gpu_request_skips_gpus_with_shares() -> None:
    """Whole GPUs are taken only where no share sits."""
    gpus = [Gpu("n1", 0, 16000, used_mib=1000, shares=1), Gpu("n1", 1, 16000)]
    outcome, _ = place(gpus, GpuRequest("w", whole=1))
    assert outcome == Placed("w", (("n1", 1),))
    outcome, _ = place(gpus, GpuRequest("w2", whole=2))
    assert isinstance(outcome, Refused)
    assert "the most GPUs free of any share on one node is 1 (node n1)" in outcome.reason


def test_refusal_names_the_largest_free_share() -> None:
    """A share that fits nowhere is refused naming the largest room and where it is."""
    gpus = [Gpu("n1", 0, 16000, used_mib=8000, shares=1), Gpu("n1", 1, 6000)]
    reason = refusal_for(gpus, [], replica_requests("big", 1, gpu_mem_mib=12000))
    assert reason == (
        "big-0 needs 12000 MiB of GPU memory; the largest free share is 8000 MiB on node n1 GPU 0"
    )


def test_existing_deployments_are_placed_before_the_new_one() -> None:
    """Shares of running deployments take room first; the new replicas get what is left."""
    gpus = [Gpu("n1", 0, 16000)]
    existing = replica_requests("old", 2, gpu_mem_mib=6000)
    assert refusal_for(gpus, existing, replica_requests("new", 1, gpu_mem_mib=4000)) is None
    reason = refusal_for(gpus, existing, replica_requests("new", 2, gpu_mem_mib=4000))
    assert reason is not None and reason.startswith("new-1 needs 4000 MiB")


def test_no_gpu_at_all_is_a_clear_refusal() -> None:
    """Without any GPU the reason says so and where to look."""
    reason = refusal_for([], [], replica_requests("g", 1, gpu_count=1))
    assert reason is not None and "no GPU is known here" in reason


def test_a_request_must_ask_for_one_kind_of_gpu() -> None:
    """A request with both a share and whole GPUs (or neither) is a programming error."""
    with pytest.raises(ValueError):
        GpuRequest("x", mem_mib=100, whole=1)
    with pytest.raises(ValueError):
        GpuRequest("x")
