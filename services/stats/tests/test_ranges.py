"""Unit tests of range planning, steps and the id blocks (pure)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import BadRequest
from aimp_stats.idblocks import block_may_hold, encode_block, id_hash
from aimp_stats.ranges import Retention, Tier, parse_step, plan_range, series_points, series_tier

NOW = 1_800_000_000.0
DAY = 86400
RET = Retention(raw_s=DAY, minute_s=7 * DAY, hour_s=90 * DAY, day_s=730 * DAY)


def covered(plan_raw: tuple[tuple[float, float], ...], buckets: tuple[tuple[Tier, int, int], ...]):
    parts = [(a, b) for a, b in plan_raw] + [(a, b) for _, a, b in buckets]
    return sorted(parts)


@given(
    since=st.floats(min_value=NOW - 400 * DAY, max_value=NOW),
    length=st.floats(min_value=0, max_value=200 * DAY),
)
def test_plan_tiles_the_range_without_gaps_or_overlaps(since: float, length: float) -> None:
    """Raw and bucket pieces are contiguous, cover the (rounded) range, and are aligned."""
    plan = plan_range(since, since + length, NOW, RET)
    pieces = covered(plan.raw, plan.buckets)
    if plan.until <= plan.since:
        assert not pieces
        return
    assert pieces[0][0] == plan.since and pieces[-1][1] == plan.until
    for (_, end), (start, _) in itertools.pairwise(pieces):
        assert end == start
    for tier, a, b in plan.buckets:
        assert a % tier.seconds == 0 and b % tier.seconds == 0 and a < b
        assert a >= NOW - RET.of(tier), "a bucket read reaches into expired rows"
    for a, _ in plan.raw:
        assert a >= NOW - RET.raw_s


def test_recent_ranges_are_exact_and_old_ones_rounded() -> None:
    """A recent range keeps its ends; a month-old one is rounded down to hours."""
    recent = plan_range(NOW - 3725, NOW - 5, NOW, RET)
    assert (recent.since, recent.until) == (NOW - 3725, NOW - 5)
    old = plan_range(NOW - 30 * DAY + 1234, NOW - 29 * DAY + 4321, NOW, RET)
    assert old.since % 3600 == 0 and old.until % 3600 == 0 and not old.raw
    full_days = plan_range(NOW - 300 * DAY, NOW - 100 * DAY, NOW, RET)
    assert {t for t, _, _ in full_days.buckets} == {Tier.DAY}


def test_open_ended_range_reads_current_minute_from_buckets() -> None:
    """Without until, the answer runs to the end of the current minute, with no raw scan."""
    plan = plan_range(None, None, NOW + 7, RET)
    assert not plan.raw and plan.until == NOW + 60 - (NOW % 60)


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("1d", DAY)])
def test_parse_step(text: str, seconds: int) -> None:
    """Steps are whole minutes written with s, m, h or d."""
    assert parse_step(text) == seconds


@pytest.mark.parametrize("text", ["30s", "0m", "1w", "fast", "90s"])
def test_parse_step_rejects(text: str) -> None:
    """Anything else is a 400 saying what a step looks like."""
    with pytest.raises(BadRequest, match="step must"):
        parse_step(text)


def test_series_tier_and_points() -> None:
    """The coarsest tier that tiles the step is used; too many points or expired data is a 400."""
    assert series_tier(3600, NOW - DAY, NOW, RET) is Tier.HOUR
    assert series_tier(300, NOW - DAY, NOW, RET) is Tier.MINUTE
    assert series_tier(2 * DAY, NOW - 100 * DAY, NOW, RET) is Tier.DAY
    with pytest.raises(BadRequest, match="reaches back only 7 days"):
        series_tier(60, NOW - 30 * DAY, NOW, RET)
    assert series_points(3600 * 10 + 5, 3600 * 12, 3600) == [36000, 39600]
    with pytest.raises(BadRequest, match="more than"):
        series_points(0, 60 * 20_000, 60)


@given(ids=st.lists(st.text(min_size=1, max_size=40), max_size=50), probe=st.text(max_size=40))
def test_id_blocks_never_miss(ids: list[str], probe: str) -> None:
    """Every id in a block is found; an id outside is found only on a CRC-32 collision."""
    block = encode_block(ids)
    for i in ids:
        assert block_may_hold(block, id_hash(i))
    if probe and all(id_hash(probe) != id_hash(i) for i in ids):
        assert not block_may_hold(block, id_hash(probe))
