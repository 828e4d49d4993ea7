"""Token revocation (RFC 7009) and introspection (RFC 7662) decisions.

Both authenticate the client first. Revocation answers 200 whether or not the
token was valid (RFC 7009 §2.2) and only revokes tokens issued to the calling
client: a refresh token revokes its whole sign-in (the family and its access
tokens), an access token its ``jti``. Introspection is for confidential
clients; a client sees its own tokens, and one holding a read-admin role
(``auditor``, ``operator``, admins) sees any; anything else is ``active: false``.
Synchronous: runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError

from aimp_core.auth import AUDIENCE, can_read_admin
from aimp_core.errors import Unauthorized
from aimp_gateway import refresh
from aimp_gateway.client_auth import CONSOLE_CLIENT_ID, single
from aimp_gateway.oauth import TokenEndpoint
from aimp_gateway.refresh import Judgement, RefreshRecord
from aimp_gateway.revocation import RevocationWriter, keep_until
from aimp_gateway.tokens import TokenVerifier

INACTIVE: dict[str, Any] = {"active": False}
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


class TokenControl:
    """``POST /oauth/revoke`` and ``POST /oauth/introspect``."""

    def __init__(
        self, endpoint: TokenEndpoint, verifier: TokenVerifier, writer: RevocationWriter
    ) -> None:
        self.endpoint = endpoint
        self.verifier = verifier
        self.writer = writer

    def _refresh_record(self, token: str) -> RefreshRecord | None:
        policy = self.endpoint.refresh_policy
        return policy.store.get(refresh.hash_token(token)) if policy else None

    def revoke(self, form: Sequence[tuple[str, str]], authorization: str | None) -> None:
        """Revoke ``token`` if it is the caller's; Redis errors propagate (503)."""
        params = single(form)
        token = params.get("token")
        if not token:
            raise InvalidRequestError("send the token to revoke in the 'token' form field")
        caller = self.endpoint.clients.authenticate(params, authorization)
        if caller is None:
            if params.get("client_id") != CONSOLE_CLIENT_ID:
                raise InvalidClientError(
                    "revocation needs client authentication (HTTP Basic or the form)",
                    status_code=401,
                )
            caller = CONSOLE_CLIENT_ID
        record = self._refresh_record(token)
        if record is not None:
            policy = self.endpoint.refresh_policy
            if record.client_id == caller and policy is not None:
                self.writer.revoke(policy.store.revoke_family(record.family_id))
            return
        try:
            principal = self.verifier.inspect(token)
        except Unauthorized:
            return  # invalid or expired: nothing to revoke (RFC 7009 §2.2)
        if principal.client_id != caller or not principal.token_id:
            return
        self.writer.revoke([(principal.token_id, principal.expires_at)])
        self.verifier.revoke_local({principal.token_id: keep_until(principal.expires_at)})

    def introspect(
        self, form: Sequence[tuple[str, str]], authorization: str | None
    ) -> dict[str, Any]:
        """The RFC 7662 §2.2 answer for ``token``."""
        params = single(form)
        caller = self.endpoint.clients.authenticate(params, authorization)
        if caller is None:
            raise InvalidClientError(
                "introspection is for confidential clients: authenticate with the client "
                "secret (HTTP Basic or the form)",
                status_code=401,
            )
        token = params.get("token")
        if not token:
            raise InvalidRequestError("send the token to introspect in the 'token' form field")
        client = self.endpoint.store.get_client(caller)
        sees_all = client is not None and can_read_admin(client.roles)
        record = self._refresh_record(token)
        if record is not None:
            now = self.endpoint.clock()
            active = refresh.judge(record, client_id=record.client_id, now=now)
            if active is not Judgement.ROTATE or not (sees_all or record.client_id == caller):
                return INACTIVE
            return {
                "active": True,
                "token_type": "refresh_token",
                "scope": " ".join(record.roles),
                "client_id": record.client_id,
                "username": record.subject,
                "sub": record.subject,
                "exp": int(min(record.expires_at, record.family_expires_at)),
                "iat": int(record.issued_at),
            }
        try:
            principal = self.verifier.inspect(token)
        except Unauthorized:
            return INACTIVE
        revoked = self.verifier.is_revoked(principal.token_id) or self.writer.is_revoked(
            principal.token_id
        )
        if revoked or not (sees_all or principal.client_id == caller):
            return INACTIVE
        return {
            "active": True,
            "token_type": "Bearer",
            "scope": " ".join(sorted(principal.roles)),
            "client_id": principal.client_id,
            "username": principal.subject,
            "sub": principal.subject,
            "aud": AUDIENCE,
            "iss": self.verifier.issuer,
            "exp": int(principal.expires_at),
            "jti": principal.token_id,
        }
