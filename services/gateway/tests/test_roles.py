"""Role decisions (aimp_core.auth): DESIGN.md's roles plus the narrower admin roles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aimp_core.auth import (
    PRIVILEGED_ROLES,
    ROLE_DESCRIPTIONS,
    ROLE_PERMISSIONS,
    Permission,
    can_administer,
    can_invoke,
    can_manage_config,
    can_manage_identities,
    can_manage_keys,
    can_manage_throttle,
    can_operate,
    can_read_admin,
    is_valid_role,
    permissions_of,
    roles_beyond_reach,
)

roles = st.lists(st.sampled_from([*ROLE_PERMISSIONS, "invoke:a", "root", ""]), max_size=5)


def test_each_narrow_role_allows_its_own_area_only() -> None:
    """admin:clients, admin:config and admin:throttle each manage one area; auditor only reads."""
    checks = (can_manage_identities, can_manage_config, can_manage_throttle, can_manage_keys)
    table = {role: [check([role]) for check in checks] for role in ROLE_PERMISSIONS}
    assert table["admin"] == [True, True, True, True]
    assert table["admin:clients"] == [True, False, False, False]
    assert table["admin:config"] == [False, True, False, False]
    assert table["admin:throttle"] == [False, False, True, False]
    assert table["auditor"] == table["operator"] == table["invoker"] == [False] * 4
    assert all(can_read_admin([r]) for r in ROLE_PERMISSIONS if r != "invoker")
    assert not can_read_admin(["invoker"]) and not can_read_admin(["invoke:a"])
    assert can_operate(["operator"]) and not can_operate(["auditor"])
    assert not can_administer(["admin:clients"]) and can_administer(["admin"])
    assert not any(can_invoke([r], "svc") for r in ("auditor", "admin:config", "operator"))


@given(roles)
def test_permissions_are_the_union_of_the_roles(held: list[str]) -> None:
    """Holding several roles allows exactly what any one of them allows."""
    union = set().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in held))
    assert permissions_of(held) == union
    assert can_read_admin(held) == (Permission.READ in union)


@given(roles, roles)
def test_only_admin_hands_out_admin_roles(caller: list[str], granted: list[str]) -> None:
    """A non-admin may grant any role except the admin ones; an admin may grant all."""
    beyond = roles_beyond_reach(caller, granted)
    if "admin" in caller:
        assert beyond == []
    else:
        assert beyond == sorted(set(granted) & PRIVILEGED_ROLES)


def test_every_role_is_described_and_valid() -> None:
    """GET /admin/roles describes every fixed role, and each is accepted in a role list."""
    assert set(ROLE_DESCRIPTIONS) == set(ROLE_PERMISSIONS)
    assert all(is_valid_role(r) for r in ROLE_DESCRIPTIONS)
    assert not is_valid_role("admin:everything") and not is_valid_role("auditors")
