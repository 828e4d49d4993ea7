"""Load-balancing decisions: which of a service's candidate instances gets the next call.

Three algorithms (:class:`aimp_gateway.policy.LbAlgorithm`), each choosing an
*index* into a tuple of candidates that the routing table precomputed, so a
call allocates nothing here:

- round robin: see :class:`aimp_gateway.routing.RoundRobin` (one turn counter per group);
- smooth weighted round robin (:class:`SmoothWeighted`, nginx's algorithm) on the
  instances' ``aimp.weight`` metadata: over any ``sum(weights)`` consecutive picks
  each instance gets exactly its weight, interleaved rather than in bursts;
- least outstanding (:func:`power_of_two`, the default): two distinct instances
  drawn at random, the one with the lower ``(outstanding + 1) * latency`` wins.

The latency is Finagle's *peak EWMA* (not a plain EWMA): a sample above the
current estimate replaces it at once (a pod that turns slow is avoided on its
first slow answer), a sample below it is blended in with weight
``1 - exp(-elapsed / decay_s)``, and between samples the estimate decays towards
zero with the same time constant, so an instance that was slow once is tried
again after a while instead of being starved forever. An instance with no sample
yet scores 0 while it has no call in flight (optimistic: it is tried at once) and
a huge penalty while it has one (so a burst does not pile onto an unmeasured pod).

Randomness and time are passed in; the only state is the counters kept here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Sequence

from aimp_core.registry_client import META_WEIGHT, Instance

log = logging.getLogger(__name__)

#: Finagle's default decay time: long enough to smooth per-call noise, short enough
#: that a pod that recovered gets its share back within tens of seconds.
DEFAULT_DECAY_S = 10.0
#: The score of an unmeasured instance with calls in flight (Finagle uses 2**47 ns).
UNMEASURED_PENALTY = 1e9
#: Weights outside 1..MAX_WEIGHT are a typo; such an instance gets the default.
MAX_WEIGHT = 10_000
DEFAULT_WEIGHT = 1

#: Bad ``aimp.weight`` values already logged (bounded: a flood of bad values cannot grow it).
_warned: set[tuple[str, str, str]] = set()
_WARNED_MAX = 1024


class InstanceLoad:
    """One instance's calls in flight and its latency estimate (mutated on the hot path)."""

    __slots__ = ("cost_s", "outstanding", "sampled", "stamp")

    def __init__(self) -> None:
        self.outstanding = 0
        #: Peak-EWMA latency in seconds as of :attr:`stamp` (meaningless until ``sampled``).
        self.cost_s = 0.0
        self.stamp = 0.0
        self.sampled = False

    def begin(self) -> None:
        """A call to the instance went out."""
        self.outstanding += 1

    def end(self) -> bool:
        """A call ended; False (and no change) when none was counted as in flight."""
        if self.outstanding <= 0:
            return False
        self.outstanding -= 1
        return True

    def latency_s(self, now: float, decay_s: float) -> float | None:
        """The estimate decayed to ``now``; None before the first sample."""
        if not self.sampled:
            return None
        return self.cost_s * math.exp(-max(now - self.stamp, 0.0) / decay_s)

    def observe(self, latency_s: float, now: float, decay_s: float, *, error: bool = False) -> None:
        """Fold in one call's latency; an ``error`` never makes the instance look faster."""
        latency_s = max(latency_s, 0.0)
        if not self.sampled:
            self.cost_s, self.stamp, self.sampled = latency_s, now, True
            return
        w = math.exp(-max(now - self.stamp, 0.0) / decay_s)
        current = self.cost_s * w
        if error:
            latency_s = max(latency_s, current)
        if latency_s > current:
            self.cost_s = latency_s  # the peak: jump up at once
        else:
            self.cost_s = current + latency_s * (1.0 - w)
        self.stamp = now

    def forget_latency(self) -> None:
        """A new process behind the same instance id: its latency is unknown again."""
        self.sampled = False
        self.cost_s = 0.0

    def score(self, now: float, decay_s: float) -> float:
        """Lower is better: expected wait, ``(outstanding + 1) * latency``."""
        if not self.sampled:
            return 0.0 if self.outstanding == 0 else UNMEASURED_PENALTY + self.outstanding
        w = math.exp(-max(now - self.stamp, 0.0) / decay_s)
        return self.cost_s * w * (self.outstanding + 1)


def power_of_two(
    loads: Sequence[InstanceLoad], now: float, decay_s: float, rand: Callable[[], float]
) -> int:
    """Index of the better of two distinct random instances (``loads`` not empty).

    A tie goes to the first draw, itself random, so ties spread evenly.
    """
    n = len(loads)
    if n == 1:
        return 0
    i = min(int(rand() * n), n - 1)
    j = min(int(rand() * (n - 1)), n - 2)
    if j >= i:
        j += 1
    return j if loads[j].score(now, decay_s) < loads[i].score(now, decay_s) else i


def parse_weight(raw: str | None) -> int | None:
    """``aimp.weight`` as an int in 1..MAX_WEIGHT; None when absent; raises ValueError if bad."""
    if raw is None:
        return None
    weight = int(raw.strip())
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight must be between 1 and {MAX_WEIGHT}")
    return weight


def weight_of(instance: Instance) -> int:
    """The instance's weight: its ``aimp.weight``, or 1 when absent or bad (logged once)."""
    raw = instance.metadata.get(META_WEIGHT)
    try:
        weight = parse_weight(raw)
    except ValueError:
        seen = (instance.app, instance.instance_id, str(raw))
        if seen not in _warned:
            if len(_warned) >= _WARNED_MAX:
                _warned.clear()
            _warned.add(seen)
            log.warning(
                "bad %s metadata %r on instance %s of %s: using weight %d; register it "
                "with an integer between 1 and %d",
                META_WEIGHT,
                raw,
                instance.instance_id,
                instance.service,
                DEFAULT_WEIGHT,
                MAX_WEIGHT,
            )
        return DEFAULT_WEIGHT
    return DEFAULT_WEIGHT if weight is None else weight


class SmoothWeighted:
    """nginx's smooth weighted round robin, one state per group of candidates.

    Each pick adds every instance's weight to its running score, takes the highest
    (the first on a tie) and subtracts the total weight from it. A group's state
    starts over when its members change.
    """

    def __init__(self) -> None:
        self._state: dict[Hashable, tuple[tuple[Hashable, ...], list[int]]] = {}

    def choose(self, group: Hashable, keys: tuple[Hashable, ...], weights: Sequence[int]) -> int:
        """Index of the next instance of ``group`` (``keys``/``weights`` aligned, not empty)."""
        state = self._state.get(group)
        if state is not None and state[0] is keys:
            current = state[1]
        elif state is not None and state[0] == keys:
            current = state[1]  # same members in a rebuilt table: keep the rotation going
            self._state[group] = (keys, current)
        else:
            current = [0] * len(keys)
            self._state[group] = (keys, current)
        total = 0
        best = 0
        best_score = 0
        for idx, weight in enumerate(weights):
            score = current[idx] + weight
            current[idx] = score
            total += weight
            if idx == 0 or score > best_score:
                best, best_score = idx, score
        current[best] -= total
        return best

    def retain(self, groups: set[Hashable]) -> None:
        """Forget the state of groups that no longer exist."""
        for group in [g for g in self._state if g not in groups]:
            del self._state[group]


def weighted_draw(weights: Sequence[int], draw: float) -> int:
    """Index chosen with probability proportional to its weight (``draw`` in [0, 1))."""
    total = sum(weights)
    point = draw * total
    acc = 0
    for idx, weight in enumerate(weights):
        acc += weight
        if point < acc:
            return idx
    return len(weights) - 1
