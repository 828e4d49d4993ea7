"""Unit tests of policy naming rules and the request schema."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aimp_core.errors import BadRequest
from aimp_throttle.domain import check_policy_id
from aimp_throttle.schemas import PolicyCreate

ALLOWED = "abcXYZ019._-"


@given(st.text(alphabet=ALLOWED, min_size=1, max_size=64))
def test_policy_ids_of_allowed_characters_pass(policy_id: str) -> None:
    """Any 1-64 characters of the allowed set is a valid policy id."""
    assert check_policy_id(policy_id) == policy_id


@given(
    st.text(alphabet=ALLOWED, max_size=10),
    st.sampled_from(list(" /?#%é:@\n\t*")),
    st.text(alphabet=ALLOWED, max_size=10),
)
def test_policy_ids_with_other_characters_fail(head: str, bad: str, tail: str) -> None:
    """One character outside the allowed set makes the id invalid, with the rule in the error."""
    with pytest.raises(BadRequest, match="1-64 characters"):
        check_policy_id(head + bad + tail)


def test_policy_id_length_bounds() -> None:
    """Empty and 65-character ids are refused; 64 is fine."""
    assert check_policy_id("a" * 64)
    for bad in ("", "a" * 65):
        with pytest.raises(BadRequest):
            check_policy_id(bad)


def body(**overrides: Any) -> dict[str, Any]:
    return {"rate": 10, "burst": 20, "on_redis_down": "open", **overrides}


def test_minimal_policy_means_all_clients_and_services() -> None:
    """Only rate, burst and on_redis_down are required; scope and caps default to none."""
    policy = PolicyCreate.model_validate(body())
    assert (policy.client_id, policy.service, policy.quota_day, policy.concurrency) == (
        None,
        None,
        None,
        None,
    )
    assert policy.rate == 10.0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"burst": True}, "burst"),
        ({"quota_day": 0}, "quota_day"),
        ({"concurrency": 0}, "concurrency"),
        ({"on_redis_down": "maybe"}, "on_redis_down"),
        ({"service": "no spaces"}, "service"),
        ({"client_id": "has space"}, "client_id"),
        ({"rat": 5}, "rat"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], field: str) -> None:
    """Each invalid value is rejected with an error located at that field."""
    with pytest.raises(ValidationError) as info:
        PolicyCreate.model_validate(body(**overrides))
    assert [e["loc"][0] for e in info.value.errors()] == [field]


def test_missing_on_redis_down_is_an_error() -> None:
    """A policy must say what happens when Redis is down; there is no silent default."""
    with pytest.raises(ValidationError, match="on_redis_down"):
        PolicyCreate.model_validate({"rate": 1, "burst": 1})
