"""Refresh tokens: rotation, reuse detection, revocation (RFC 7009) and introspection (RFC 7662)
against a real SQLite store and real Redis."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import replace

import pytest
import redis
from authlib.oauth2.rfc6749.errors import OAuth2Error
from redis.asyncio import Redis as AsyncRedis

from aimp_core.errors import Unauthorized
from aimp_gateway.keys import SigningKey
from aimp_gateway.oauth import RefreshPolicy, TokenEndpoint
from aimp_gateway.passwords import hash_secret
from aimp_gateway.refresh import (
    IllegalTransition,
    Judgement,
    RefreshRecord,
    RefreshState,
    judge,
    transition,
)
from aimp_gateway.refresh_store import RefreshStore
from aimp_gateway.revocation import RevocationFollower, RevocationWriter
from aimp_gateway.store import Store
from aimp_gateway.token_control import TokenControl
from aimp_gateway.tokens import TokenIssuer, TokenVerifier

ISSUER = "http://gateway.test"
ALICE_PASSWORD = "alice-password-123"
ALICE_HASH = hash_secret(ALICE_PASSWORD)
RS_HASH = hash_secret("rs-secret")


@pytest.fixture
def parts(
    store: Store, signing_key: SigningKey, sync_redis: redis.Redis
) -> tuple[TokenEndpoint, TokenVerifier, TokenControl]:
    store.put_user("alice", ALICE_HASH, ["operator", "invoker"])
    store.put_client("resource-server", RS_HASH, ["auditor"])
    refresh_store = RefreshStore(store.engine)
    refresh_store.create_tables()
    writer = RevocationWriter(sync_redis)
    endpoint = TokenEndpoint(
        store,
        TokenIssuer(signing_key, issuer=ISSUER, ttl_s=900),
        refresh_policy=RefreshPolicy(refresh_store, ttl_s=3600, family_max_s=86400),
        revocations=writer,
    )
    verifier = TokenVerifier(signing_key.key_set, issuer=ISSUER)
    return endpoint, verifier, TokenControl(endpoint, verifier, writer)


def _sign_in(endpoint: TokenEndpoint) -> tuple[str, str]:
    issued = endpoint.token(
        [("grant_type", "password"), ("username", "alice"), ("password", ALICE_PASSWORD)], None
    )
    assert issued.refresh_token
    return issued.access_token, issued.refresh_token


def _refresh(endpoint: TokenEndpoint, token: str) -> tuple[str, str]:
    issued = endpoint.token([("grant_type", "refresh_token"), ("refresh_token", token)], None)
    assert issued.refresh_token
    return issued.access_token, issued.refresh_token


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _record(**changes: object) -> RefreshRecord:
    base = RefreshRecord(
        "h", "f", "alice", "aimp-console", ("operator",), 0.0, 100.0, 1000.0,
        RefreshState.ACTIVE, "j", 50.0,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_judgement_of_each_state() -> None:
    """Active tokens rotate, spent ones are reuse, revoked/expired/foreign ones are refused."""
    assert judge(_record(), client_id="aimp-console", now=10) is Judgement.ROTATE
    assert judge(_record(state=RefreshState.ROTATED), client_id="aimp-console", now=10) is (
        Judgement.REUSED
    )
    assert judge(_record(state=RefreshState.REVOKED), client_id="aimp-console", now=10) is (
        Judgement.REVOKED
    )
    assert judge(_record(), client_id="aimp-console", now=100) is Judgement.EXPIRED
    assert judge(_record(family_expires_at=5), client_id="aimp-console", now=10) is (
        Judgement.EXPIRED
    )
    assert judge(_record(), client_id="other", now=10) is Judgement.WRONG_CLIENT
    assert judge(None, client_id="aimp-console", now=10) is Judgement.UNKNOWN


def test_illegal_transitions_are_named() -> None:
    """A revoked token never becomes active or rotated again; the error says which move."""
    assert transition(RefreshState.ACTIVE, RefreshState.ROTATED) is RefreshState.ROTATED
    with pytest.raises(IllegalTransition, match="revoked refresh token cannot become active"):
        transition(RefreshState.REVOKED, RefreshState.ACTIVE)
    with pytest.raises(IllegalTransition):
        transition(RefreshState.ROTATED, RefreshState.ACTIVE)


def test_rotation_gives_a_new_pair_and_spends_the_old(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """A refresh returns a new access and refresh token; the old refresh token is spent."""
    endpoint, verifier, _ = parts
    access, first = _sign_in(endpoint)
    new_access, second = _refresh(endpoint, first)
    assert second != first and new_access != access
    principal = verifier.verify(f"Bearer {new_access}")
    assert principal.subject == "alice" and principal.roles == {"operator", "invoker"}
    _, third = _refresh(endpoint, second)
    assert third not in (first, second)


def test_reuse_revokes_the_whole_family(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl], sync_redis: redis.Redis
) -> None:
    """Presenting a spent refresh token revokes every token of that sign-in, access included."""
    endpoint, verifier, control = parts
    _, first = _sign_in(endpoint)
    access, second = _refresh(endpoint, first)
    with pytest.raises(OAuth2Error) as err:
        _refresh(endpoint, first)  # the attacker (or the victim) replays the spent token
    assert err.value.error == "invalid_grant" and "already used" in str(err.value.description)
    with pytest.raises(OAuth2Error) as err:
        _refresh(endpoint, second)  # the newest token of the family is dead too
    assert err.value.error == "invalid_grant"
    jti = verifier.inspect(access).token_id
    assert RevocationWriter(sync_redis).is_revoked(jti)
    answer = control.introspect([("token", access)], _basic("resource-server", "rs-secret"))
    assert answer == {"active": False}


def test_other_sign_ins_survive_a_reuse(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """Reuse detection revokes one family, not the user's other sign-ins."""
    endpoint, _, _ = parts
    _, laptop = _sign_in(endpoint)
    _, phone = _sign_in(endpoint)
    _refresh(endpoint, laptop)
    with pytest.raises(OAuth2Error):
        _refresh(endpoint, laptop)
    _refresh(endpoint, phone)


def test_refresh_keeps_roles_within_the_users_current_roles(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl], store: Store
) -> None:
    """A refresh never grants a role the user has lost since signing in."""
    endpoint, verifier, _ = parts
    _, token = _sign_in(endpoint)
    store.update_user("alice", roles=["invoker"])
    access, _ = _refresh(endpoint, token)
    assert verifier.verify(f"Bearer {access}").roles == {"invoker"}


def test_a_client_cannot_use_another_clients_refresh_token(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """A refresh token issued to the console is refused when another client presents it."""
    endpoint, _, _ = parts
    _, token = _sign_in(endpoint)
    with pytest.raises(OAuth2Error) as err:
        endpoint.token(
            [("grant_type", "refresh_token"), ("refresh_token", token)],
            _basic("resource-server", "rs-secret"),
        )
    assert "another client" in str(err.value.description)


def test_revoking_a_refresh_token_ends_the_sign_in(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """RFC 7009: revoking a refresh token kills it and the access tokens of its sign-in."""
    endpoint, verifier, control = parts
    access, token = _sign_in(endpoint)
    control.revoke([("token", token), ("client_id", "aimp-console")], None)
    with pytest.raises(OAuth2Error):
        _refresh(endpoint, token)
    answer = control.introspect([("token", token)], _basic("resource-server", "rs-secret"))
    assert answer == {"active": False}
    assert control.writer.is_revoked(verifier.inspect(access).token_id)


def test_revoking_an_access_token_refuses_it_at_once_and_everywhere(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
    sync_redis: redis.Redis,
    redis_url: str,
    signing_key: SigningKey,
) -> None:
    """A revoked access token is refused by this verifier at once and by another via Redis."""
    endpoint, verifier, control = parts
    access, _ = _sign_in(endpoint)
    other = TokenVerifier(signing_key.key_set, issuer=ISSUER)
    assert other.verify(f"Bearer {access}").subject == "alice"  # now cached there
    control.revoke([("token", access), ("client_id", "aimp-console")], None)
    with pytest.raises(Unauthorized, match="revoked"):
        verifier.verify(f"Bearer {access}")

    async def follow() -> None:
        client = AsyncRedis.from_url(redis_url)
        follower = RevocationFollower(client, other.set_revoked, poll_s=0.05)
        await follower.start()
        await follower.stop()
        await client.aclose()

    asyncio.run(follow())
    assert not other._cache  # the cached verification was dropped
    with pytest.raises(Unauthorized, match="revoked"):
        other.verify(f"Bearer {access}")


def test_revocation_is_for_the_owner_only(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """Another client's revocation request answers 200 but leaves the token alone."""
    endpoint, verifier, control = parts
    access, token = _sign_in(endpoint)
    control.revoke([("token", access)], _basic("resource-server", "rs-secret"))
    control.revoke([("token", token)], _basic("resource-server", "rs-secret"))
    verifier.verify(f"Bearer {access}")
    _refresh(endpoint, token)
    control.revoke([("token", "not-a-token"), ("client_id", "aimp-console")], None)


def test_introspection_describes_active_tokens(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """A read-admin client sees an active token's owner, roles and expiry; anonymity is 401."""
    endpoint, _, control = parts
    access, token = _sign_in(endpoint)
    auth = _basic("resource-server", "rs-secret")
    answer = control.introspect([("token", access)], auth)
    assert answer["active"] is True and answer["username"] == "alice"
    assert answer["scope"] == "invoker operator" and answer["client_id"] == "aimp-console"
    refresh_answer = control.introspect([("token", token)], auth)
    assert refresh_answer["active"] is True and refresh_answer["token_type"] == "refresh_token"
    with pytest.raises(OAuth2Error) as err:
        control.introspect([("token", access), ("client_id", "aimp-console")], None)
    assert err.value.status_code == 401


def test_unknown_refresh_token_is_invalid_grant(
    parts: tuple[TokenEndpoint, TokenVerifier, TokenControl],
) -> None:
    """A made-up refresh token is invalid_grant telling the user to sign in again."""
    endpoint, _, _ = parts
    with pytest.raises(OAuth2Error) as err:
        _refresh(endpoint, uuid.uuid4().hex)
    assert err.value.error == "invalid_grant" and "sign in again" in str(err.value.description)
