"""Refresh tokens with rotation and reuse detection (OAuth 2.1 §4.3.1, RFC 6819 §5.2.2.3).

A refresh token is opaque (256 random bits) and stored only as its SHA-256
(fast is fine: it cannot be guessed, unlike a password). Every token belongs to
a family, one per sign-in. Using a token rotates it: the answer carries a new
token of the same family and the old one is spent. Presenting a spent token
again means it leaked: the whole family is revoked, with the access tokens it
issued. This module holds the pure parts; SQL is in :mod:`refresh_store`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum


class RefreshState(StrEnum):
    ACTIVE = "active"  # may be used once
    ROTATED = "rotated"  # used: a new token replaced it; using it again is reuse
    REVOKED = "revoked"  # its family was revoked (sign-out, reuse, user change)


#: The legal state changes; anything else is a bug.
TRANSITIONS: dict[RefreshState, frozenset[RefreshState]] = {
    RefreshState.ACTIVE: frozenset({RefreshState.ROTATED, RefreshState.REVOKED}),
    RefreshState.ROTATED: frozenset({RefreshState.REVOKED}),
    RefreshState.REVOKED: frozenset(),
}


class IllegalTransition(Exception):
    """A refresh token cannot move from one state to the other."""


def transition(current: RefreshState, to: RefreshState) -> RefreshState:
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(f"a {current} refresh token cannot become {to}")
    return to


@dataclass(frozen=True)
class RefreshRecord:
    token_hash: str
    family_id: str
    subject: str
    client_id: str
    roles: tuple[str, ...]
    issued_at: float
    expires_at: float
    family_expires_at: float
    state: RefreshState
    #: The access token issued with this refresh token (revoked with the family).
    access_jti: str
    access_expires_at: float


class Judgement(StrEnum):
    ROTATE = "rotate"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"
    WRONG_CLIENT = "wrong_client"


def judge(record: RefreshRecord | None, *, client_id: str, now: float) -> Judgement:
    """What to do with a presented refresh token."""
    if record is None:
        return Judgement.UNKNOWN
    if record.state is RefreshState.REVOKED:
        return Judgement.REVOKED
    if record.client_id != client_id:
        return Judgement.WRONG_CLIENT
    if now >= min(record.expires_at, record.family_expires_at):
        return Judgement.EXPIRED
    if record.state is RefreshState.ROTATED:
        return Judgement.REUSED
    return Judgement.ROTATE


def new_token() -> tuple[str, str]:
    """A fresh refresh token and the hash to store."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expiry(now: float, *, ttl_s: float, family_expires_at: float) -> float:
    """A rotated token lives ``ttl_s`` but never past its family's end (the sign-in's)."""
    return min(now + ttl_s, family_expires_at)
