"""Secret hashing with Argon2id (argon2-cffi); secrets are never stored in clear."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
#: Verified against when the client or user is unknown, so that a miss costs
#: the same time as a wrong secret and does not reveal which names exist.
_DUMMY_HASH = _HASHER.hash("aimp-no-such-principal")


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Does ``secret`` match ``stored_hash``? Unknown principals pass None (same cost)."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
