"""Outcome names for events, and the role matrix the data plane and admin API apply."""

from __future__ import annotations

import pytest

from aimp_core.auth import can_administer, can_invoke
from aimp_gateway.outcomes import outcome_for


@pytest.mark.parametrize(
    ("status", "from_upstream", "outcome"),
    [
        (200, True, "ok"),
        (304, True, "ok"),
        (400, True, "client_error"),
        (404, True, "client_error"),
        (429, True, "throttled"),
        (500, True, "upstream_error"),
        (503, True, "unavailable"),
        (504, True, "timeout"),
        (401, False, "unauthorized"),
        (403, False, "forbidden"),
        (404, False, "not_found"),
        (413, False, "client_error"),
        (429, False, "throttled"),
        (499, False, "client_error"),
        (502, False, "upstream_error"),
        (503, False, "unavailable"),
        (504, False, "timeout"),
    ],
)
def test_outcome_for(status: int, from_upstream: bool, outcome: str) -> None:
    """Each status maps to the outcome stats counts it under."""
    assert outcome_for(status, from_upstream=from_upstream) == outcome


@pytest.mark.parametrize(
    ("roles", "service", "invoke", "administer"),
    [
        (["admin"], "resnet", True, True),
        (["invoker"], "resnet", True, False),
        (["invoke:resnet"], "resnet", True, False),
        (["invoke:resnet"], "bert", False, False),
        (["invoke:res"], "resnet", False, False),
        (["operator"], "resnet", False, False),
        ([], "resnet", False, False),
    ],
)
def test_rbac_matrix(roles: list[str], service: str, invoke: bool, administer: bool) -> None:
    """Who may call a service on the data plane, and who may administer clients."""
    assert can_invoke(roles, service) is invoke
    assert can_administer(roles) is administer
