"""Signing-key rotation: the newest key signs, old ones verify until their tokens expired."""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.auth import LEEWAY_S
from aimp_core.errors import Unauthorized
from aimp_gateway.keys import KeyRing, KeyState, plan_keys
from aimp_gateway.tokens import TokenIssuer, TokenVerifier

ISSUER = "http://gateway.test"
TTL = 900
KEEP = TTL + LEEWAY_S


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=8),
    st.floats(min_value=0, max_value=2e6, allow_nan=False),
)
def test_exactly_one_key_signs_and_no_token_loses_its_key_early(
    created: list[float], now: float
) -> None:
    """The newest key is active; a key signing until a time stays published ttl+leeway past it."""
    keys = [(f"k{i}", t) for i, t in enumerate(created)]
    plans = plan_keys(keys, now=now, keep_s=KEEP)
    assert [p.state for p in plans].count(KeyState.ACTIVE) == 1
    assert plans[-1].state is KeyState.ACTIVE
    for older, newer in itertools.pairwise(plans):
        assert older.drop_at == newer.created_at + KEEP
        # a token signed by `older` at the last moment it signed expires before drop_at
        assert older.state is (KeyState.RETIRED if now <= older.drop_at else KeyState.EXPIRED)


def test_rotation_keeps_old_tokens_valid_until_they_expire(tmp_path: Path) -> None:
    """After a rotation new tokens carry the new kid, old ones verify until expiry, then the
    old key leaves the JWKS and its file is deleted."""
    clock = Clock()
    ring = KeyRing(tmp_path / "keys" / "gateway-signing.pem", keep_s=KEEP, clock=clock)
    issuer = TokenIssuer(ring, issuer=ISSUER, ttl_s=TTL)
    verifier = TokenVerifier(ring, issuer=ISSUER, cache_size=0)
    old_kid = ring.active.kid
    old = issuer.issue(subject="app", client_id="app", roles=["invoker"], now=clock.now)

    clock.now += 60
    new_key = ring.rotate()
    assert new_key.kid != old_kid and ring.active.kid == new_key.kid
    files = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE((tmp_path / "keys" / f).stat().st_mode) == 0o600 for f in files)
    new = issuer.issue(subject="app", client_id="app", roles=["invoker"], now=clock.now)
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old_kid, new_key.kid}
    assert ring.jwks()["keys"][0]["kid"] == new_key.kid  # the signing key first

    near_expiry = clock.now + TTL - 61
    assert verifier.verify(f"Bearer {old.access_token}", now=near_expiry).client_id == "app"
    assert verifier.verify(f"Bearer {new.access_token}", now=near_expiry).client_id == "app"

    clock.now += KEEP + 1  # every token the old key signed has expired
    ring.load()
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new_key.kid]
    assert (tmp_path / "keys" / "gateway-signing.pem").exists()  # the configured file stays
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {old.access_token}", now=clock.now)


def test_a_second_gateway_sharing_the_home_signs_with_the_new_key(tmp_path: Path) -> None:
    """A ring reading the same directory picks up another's rotation on reload (or on an
    unknown kid), so both sign with and accept the new key."""
    clock = Clock()
    path = tmp_path / "keys" / "gateway-signing.pem"
    a = KeyRing(path, keep_s=KEEP, clock=clock)
    b = KeyRing(path, keep_s=KEEP, clock=clock)
    assert a.active.kid == b.active.kid
    rotated = a.rotate()
    token = TokenIssuer(a, issuer=ISSUER, ttl_s=TTL).issue(
        subject="app", client_id="app", roles=["invoker"]
    )
    verifier_b = TokenVerifier(b, issuer=ISSUER)
    assert verifier_b.verify(f"Bearer {token.access_token}").client_id == "app"  # unknown kid
    assert b.active.kid == rotated.kid
    c = KeyRing(path, keep_s=KEEP, clock=clock)  # a restart sees the same set
    assert c.active.kid == rotated.kid and len(c.jwks()["keys"]) == 2
