"""GPU-memory shares and whole GPUs placed onto GPUs (pure): best fit, never over capacity.

A share asks for some MiB of one GPU's memory; several shares may sit on one GPU while
their sum fits its memory. A whole-GPU request takes GPUs nobody shares, all on one node
(one pod runs on one node). :func:`pack` places many requests best-fit-decreasing;
:func:`place` places one new request best-fit (the GPU left with the least free memory,
so large holes stay for large requests). A request that fits nowhere is refused with
a reason that names the largest room there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Gpu:
    node: str
    index: int
    memory_mib: int
    #: Memory taken by shares (or anything else) already on it.
    used_mib: int = 0
    #: Held whole by one request: nothing else may go on it.
    whole: bool = False
    shares: int = 0

    @property
    def free_mib(self) -> int:
        return 0 if self.whole else max(0, self.memory_mib - self.used_mib)

    @property
    def idle(self) -> bool:
        """Free for a whole-GPU request: no share, no other holder."""
        return not self.whole and self.shares == 0 and self.used_mib == 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.node, self.index)


@dataclass(frozen=True)
class GpuRequest:
    """What one replica asks for: ``mem_mib`` of one GPU, or ``whole`` GPUs."""

    key: str
    mem_mib: int | None = None
    whole: int = 0

    def __post_init__(self) -> None:
        if (self.mem_mib is None) == (self.whole == 0):
            raise ValueError(f"{self.key}: ask for either a memory share or whole GPUs")
        if self.mem_mib is not None and self.mem_mib <= 0:
            raise ValueError(f"{self.key}: a memory share must be positive")
        if self.whole < 0:
            raise ValueError(f"{self.key}: whole GPUs must be >= 0")

    @property
    def what(self) -> str:
        if self.mem_mib is not None:
            return f"{self.mem_mib} MiB of GPU memory"
        return f"{self.whole} whole GPU{'s' if self.whole > 1 else ''} on one node"


@dataclass(frozen=True)
class Placed:
    key: str
    gpus: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Refused:
    key: str
    reason: str


@dataclass(frozen=True)
class Packing:
    placed: list[Placed] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    #: The GPUs after placing (used memory, whole holders and share counts updated).
    gpus: list[Gpu] = field(default_factory=list)


def _order(gpus: Iterable[Gpu]) -> list[Gpu]:
    return sorted(gpus, key=lambda g: g.key)


def _refusal(req: GpuRequest, gpus: Sequence[Gpu]) -> str:
    if not gpus:
        return f"needs {req.what}; no GPU is known here (GET /v1/nodes shows the inventory)"
    if req.mem_mib is not None:
        best = max(_order(gpus), key=lambda g: g.free_mib)  # the first of equals
        return (
            f"needs {req.mem_mib} MiB of GPU memory; the largest free share is "
            f"{best.free_mib} MiB on node {best.node} GPU {best.index}"
        )
    idle: dict[str, int] = {}
    for g in gpus:
        idle[g.node] = idle.get(g.node, 0) + g.idle
    node, count = max(sorted(idle.items()), key=lambda kv: kv[1])
    return f"needs {req.what}; the most GPUs free of any share on one node is {count} (node {node})"


def place(gpus: Sequence[Gpu], req: GpuRequest) -> tuple[Placed | Refused, list[Gpu]]:
    """Place one request best-fit; (the placement or refusal, the GPUs afterwards)."""
    current = _order(gpus)
    if req.mem_mib is not None:
        mem = req.mem_mib
        fits = [g for g in current if g.free_mib >= mem]
        if not fits:
            return Refused(req.key, _refusal(req, current)), current
        best = min(fits, key=lambda g: (g.free_mib - mem, g.key))
        after = replace(best, used_mib=best.used_mib + mem, shares=best.shares + 1)
        return Placed(req.key, (best.key,)), [after if g.key == best.key else g for g in current]
    by_node: dict[str, list[Gpu]] = {}
    for g in current:
        if g.idle:
            by_node.setdefault(g.node, []).append(g)
    nodes = [(len(v), n) for n, v in by_node.items() if len(v) >= req.whole]
    if not nodes:
        return Refused(req.key, _refusal(req, current)), current
    _, node = min(nodes)  # the node with the fewest idle GPUs that suffice: best fit
    taken = {g.key for g in by_node[node][: req.whole]}
    after_all = [replace(g, whole=True) if g.key in taken else g for g in current]
    return Placed(req.key, tuple(sorted(taken))), after_all


def pack(gpus: Sequence[Gpu], requests: Sequence[GpuRequest]) -> Packing:
    """Best fit decreasing: whole-GPU requests first (most GPUs first), then shares,
    largest first. Each request is placed once or refused once."""
    order = sorted(
        requests,
        key=lambda r: (r.mem_mib is not None, -(r.whole or 0), -(r.mem_mib or 0), r.key),
    )
    current = _order(gpus)
    placed: list[Placed] = []
    refused: list[Refused] = []
    for req in order:
        outcome, current = place(current, req)
        if isinstance(outcome, Placed):
            placed.append(outcome)
        else:
            refused.append(outcome)
    return Packing(placed, refused, current)


def replica_requests(
    deployment: str, replicas: int, *, gpu_count: int = 0, gpu_mem_mib: int | None = None
) -> list[GpuRequest]:
    """One request per replica of a deployment that asks for GPUs (none if it does not)."""
    if gpu_mem_mib is not None:
        return [GpuRequest(f"{deployment}-{r}", mem_mib=gpu_mem_mib) for r in range(replicas)]
    if gpu_count > 0:
        return [GpuRequest(f"{deployment}-{r}", whole=gpu_count) for r in range(replicas)]
    return []


def refusal_for(
    gpus: Sequence[Gpu], existing: Sequence[GpuRequest], new: Sequence[GpuRequest]
) -> str | None:
    """Why ``new`` cannot run beside ``existing`` on ``gpus`` (None when every one fits).

    The existing requests are placed first (they run already), then the new ones."""
    before = pack(gpus, existing)
    after = pack(before.gpus, new)
    if after.refused:
        first = after.refused[0]
        return f"{first.key} {first.reason}"
    return None
