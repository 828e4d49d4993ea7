"""The OAuth2 token endpoint's decisions (RFC 6749): client credentials, password and
refresh-token grants.

Errors are authlib's RFC 6749 error classes, so the §5.2 body and the 401 +
``WWW-Authenticate: Basic`` for a failed Basic client authentication come
from one well-tested place. Everything here is synchronous (Argon2, SQL and
the Redis writes); the HTTP layer runs it in a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.util import scope_to_list

from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_gateway import refresh
from aimp_gateway.client_auth import (
    CONSOLE_CLIENT_ID,
    ClientAuthenticator,
    refuse_if_locked,
    shown,
    single,
)
from aimp_gateway.login_guard import LoginGuard
from aimp_gateway.passwords import verify_secret
from aimp_gateway.refresh import Judgement, RefreshRecord, RefreshState
from aimp_gateway.refresh_store import AccessTokens, RefreshStore
from aimp_gateway.revocation import RevocationWriter
from aimp_gateway.store import Store
from aimp_gateway.tokens import IssuedToken, TokenIssuer

__all__ = ["CONSOLE_CLIENT_ID", "GRANT_TYPES", "RefreshPolicy", "TokenEndpoint"]

log = logging.getLogger(__name__)

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_PASSWORD = "password"  # noqa: S105 - a grant type name, not a secret
GRANT_REFRESH = "refresh_token"
GRANT_TYPES = (GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_REFRESH)


def _grant(held: Sequence[str], requested: str | None) -> list[str]:
    """The roles to put in the token: all held, or the requested subset."""
    if not requested:
        return list(held)
    wanted = scope_to_list(requested) or []
    missing = sorted(set(wanted) - set(held))
    if missing:
        names = shown(" ".join(missing), limit=200)
        raise InvalidScopeError(f"scope asks for role(s) {names} not granted to you")
    return wanted


@dataclass(frozen=True)
class RefreshPolicy:
    store: RefreshStore
    #: One refresh token's life; rotation gives the next one as long again.
    ttl_s: float
    #: A sign-in's whole life: no rotation extends a family past it.
    family_max_s: float


class TokenEndpoint:
    """Authenticates clients and users against the store and issues tokens."""

    def __init__(
        self,
        store: Store,
        issuer: TokenIssuer,
        *,
        refresh_policy: RefreshPolicy | None = None,
        guard: LoginGuard | None = None,
        revocations: RevocationWriter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.refresh_policy = refresh_policy
        self.guard = guard
        self.revocations = revocations
        self.clients = ClientAuthenticator(store, guard)
        self.clock = clock

    @property
    def grant_types(self) -> tuple[str, ...]:
        return GRANT_TYPES if self.refresh_policy else GRANT_TYPES[:2]

    def token(self, form: Sequence[tuple[str, str]], authorization: str | None) -> IssuedToken:
        """Handle one token request; raises authlib ``OAuth2Error`` subclasses."""
        params = single(form)
        grant_type = params.get("grant_type")
        names = " or ".join(self.grant_types)
        if not grant_type:
            raise InvalidRequestError(f"grant_type is missing; use {names}")
        if grant_type not in self.grant_types:
            name = shown(grant_type)
            error = UnsupportedGrantTypeError(name)
            error.description = f"grant_type '{name}' is not supported; use {names}"
            raise error
        client_id = self.clients.authenticate(params, authorization)
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            return self._client_credentials(client_id, params)
        if grant_type == GRANT_PASSWORD:
            return self._password(client_id or CONSOLE_CLIENT_ID, params)
        return self._refresh(client_id or CONSOLE_CLIENT_ID, params)

    def _client_credentials(self, client_id: str | None, params: dict[str, str]) -> IssuedToken:
        if client_id is None:
            raise InvalidClientError(
                "client_credentials needs client authentication: HTTP Basic or "
                "client_id and client_secret in the form",
                status_code=401,
            )
        client = self.store.get_client(client_id)
        assert client is not None
        roles = _grant(client.roles, params.get("scope"))
        return self.issuer.issue(subject=client_id, client_id=client_id, roles=roles)

    def _password(self, client_id: str, params: dict[str, str]) -> IssuedToken:
        username, password = params.get("username"), params.get("password")
        if not username or not password:
            raise InvalidRequestError("the password grant needs username and password")
        if self.guard is not None:
            refuse_if_locked(self.guard.check("user", username), error="invalid_grant", what="user")
        user = self.store.get_user(username)
        if not verify_secret(user.password_hash if user else None, password) or user is None:
            if self.guard is not None:
                self.guard.failed("user", username)
            raise InvalidGrantError("username or password is wrong")
        if self.guard is not None:
            self.guard.succeeded("user", username)
        roles = _grant(user.roles, params.get("scope"))
        issued = self.issuer.issue(subject=username, client_id=client_id, roles=roles)
        if self.refresh_policy is None:
            return issued
        now = self.clock()
        self.refresh_policy.store.prune(now)
        family_end = now + self.refresh_policy.family_max_s
        return self._with_refresh(issued, uuid.uuid4().hex, username, client_id, roles, family_end)

    def _with_refresh(
        self,
        issued: IssuedToken,
        family_id: str,
        subject: str,
        client_id: str,
        roles: Sequence[str],
        family_expires_at: float,
    ) -> IssuedToken:
        assert self.refresh_policy is not None
        now = self.clock()
        plain, hashed = refresh.new_token()
        self.refresh_policy.store.add(
            RefreshRecord(
                token_hash=hashed,
                family_id=family_id,
                subject=subject,
                client_id=client_id,
                roles=tuple(sorted(set(roles))),
                issued_at=now,
                expires_at=refresh.expiry(
                    now, ttl_s=self.refresh_policy.ttl_s, family_expires_at=family_expires_at
                ),
                family_expires_at=family_expires_at,
                state=RefreshState.ACTIVE,
                access_jti=issued.jti,
                access_expires_at=issued.expires_at,
            )
        )
        return dataclasses.replace(issued, refresh_token=plain)

    def _refresh(self, client_id: str, params: dict[str, str]) -> IssuedToken:
        assert self.refresh_policy is not None
        presented = params.get("refresh_token")
        if not presented:
            raise InvalidRequestError("the refresh_token grant needs refresh_token")
        rstore = self.refresh_policy.store
        record = rstore.get(refresh.hash_token(presented))
        verdict = refresh.judge(record, client_id=client_id, now=self.clock())
        if verdict is Judgement.WRONG_CLIENT:
            raise InvalidGrantError("the refresh token was issued to another client")
        if verdict is not Judgement.ROTATE and verdict is not Judgement.REUSED:
            raise InvalidGrantError(f"the refresh token is {verdict.value}; sign in again")
        assert record is not None
        if verdict is Judgement.REUSED or not rstore.mark_rotated(record.token_hash):
            self.revoke_access(rstore.revoke_family(record.family_id))
            log.warning("refresh token reuse: the sign-in was revoked", extra={"client": client_id})
            raise InvalidGrantError(
                "the refresh token was already used, so it may have leaked; every token of "
                "this sign-in is revoked: sign in again"
            )
        user = self.store.get_user(record.subject)
        held = [r for r in record.roles if user is not None and r in user.roles]
        if user is None or not held:
            self.revoke_access(rstore.revoke_family(record.family_id))
            raise InvalidGrantError("the user no longer exists or holds none of these roles")
        roles = _grant(held, params.get("scope"))
        issued = self.issuer.issue(subject=record.subject, client_id=client_id, roles=roles)
        return self._with_refresh(
            issued, record.family_id, record.subject, client_id, held, record.family_expires_at
        )

    def revoke_access(self, tokens: AccessTokens) -> int:
        """Put access tokens on the revoked list; logs (does not fail) when Redis is down:
        the refresh tokens are revoked in SQL already and access tokens are short-lived."""
        if self.revocations is None or not tokens:
            return 0
        try:
            return self.revocations.revoke(tokens)
        except REDIS_ERRORS as exc:
            log.error("could not revoke access tokens (Redis): %s", type(exc).__name__)
            return 0
