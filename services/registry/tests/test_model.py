"""Unit tests of Eureka's pure rules: status overrides, hash code, leases."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_registry.model import Lease, Status, apps_hashcode, effective_status, parse_status

statuses = st.sampled_from(list(Status))


@pytest.mark.parametrize(
    ("reported", "override", "existing", "expected"),
    [
        (Status.DOWN, Status.UP, Status.UP, Status.DOWN),
        (Status.STARTING, Status.OUT_OF_SERVICE, None, Status.STARTING),
        (Status.UP, Status.OUT_OF_SERVICE, Status.UP, Status.OUT_OF_SERVICE),
        (Status.UP, None, Status.OUT_OF_SERVICE, Status.OUT_OF_SERVICE),
        (Status.OUT_OF_SERVICE, None, Status.UP, Status.UP),
        (Status.UP, None, Status.DOWN, Status.UP),
        (Status.UP, None, None, Status.UP),
    ],
)
def test_effective_status_follows_eurekas_rule_chain(
    reported: Status, override: Status | None, existing: Status | None, expected: Status
) -> None:
    """DOWN/STARTING reports win, then overrides, then an existing UP/OUT_OF_SERVICE."""
    assert effective_status(reported, override, existing) == expected


def test_parse_status_is_case_insensitive_and_strict() -> None:
    """Known statuses parse in any case; anything else is rejected with None."""
    assert parse_status("out_of_service") == Status.OUT_OF_SERVICE
    assert parse_status("HEALTHY") is None


def test_hashcode_example() -> None:
    """One DOWN and three UP instances give Eureka's DOWN_1_UP_3_."""
    assert apps_hashcode(["UP", "DOWN", "UP", "UP"]) == "DOWN_1_UP_3_"
    assert apps_hashcode([]) == ""


@given(st.lists(statuses.map(str)))
def test_hashcode_encodes_exact_counts_in_name_order(values: list[str]) -> None:
    """The hash code lists each present status once, sorted, with its exact count."""
    parts = apps_hashcode(values).split("_")[:-1]
    names = []
    counts: dict[str, int] = {}
    # Status names contain underscores (OUT_OF_SERVICE), so rebuild tokens up to each count.
    token: list[str] = []
    for part in parts:
        if part.isdigit():
            name = "_".join(token)
            names.append(name)
            counts[name] = int(part)
            token = []
        else:
            token.append(part)
    assert names == sorted(names)
    assert counts == dict(Counter(values))


def test_lease_expiry_boundary() -> None:
    """A lease is alive at exactly its duration and expired one millisecond later."""
    lease = Lease(duration_s=90, renewal_interval_s=30, registration_ms=0, last_renewal_ms=1000)
    assert not lease.is_expired(91_000)
    assert lease.is_expired(91_001)
    lease.renew(91_001)
    assert not lease.is_expired(181_001)
