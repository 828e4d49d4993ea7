"""Bearer-token dependencies: who is calling, verified by an injectable verifier.

Production uses :class:`aimp_core.auth.JwksVerifier` against the gateway's
JWKS; tests pass a ``JwksVerifier`` pointed at their own key set, so the real
verification code runs either way.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Header, Request

from aimp_core.auth import Principal, can_administer, can_read_admin, require


class TokenVerifier(Protocol):
    """Anything that turns an ``Authorization`` header into a verified principal."""

    async def verify(self, authorization: str | None) -> Principal: ...


async def current_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(authorization)


async def reader(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The caller, if their roles allow reading policies (operator or admin)."""
    require(can_read_admin(principal.roles), "reading throttle policies")
    return principal


async def administrator(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """The caller, if their roles allow changing policies (admin)."""
    require(can_administer(principal.roles), "changing throttle policies")
    return principal


Reader = Annotated[Principal, Depends(reader)]
Administrator = Annotated[Principal, Depends(administrator)]
