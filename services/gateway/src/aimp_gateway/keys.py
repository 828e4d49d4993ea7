"""The gateway's token-signing keys: one signs, older ones verify until their tokens expire.

A key's id is its RFC 7638 JWK thumbprint, so the same key always has the same
``kid`` and verifiers can find it in the JWKS. The keys live as PEM files (mode
0600) in one directory, so a restart and every gateway sharing ``AIMP_HOME``
see the same set: the first key at the configured path (``gateway-signing.pem``,
created on first start), rotated ones as ``signing-<created ms>-<random>.pem``
next to it. The newest key signs; :func:`plan_keys` decides which older ones
are still published.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from joserfc.jwk import KeySet, RSAKey

log = logging.getLogger(__name__)

#: RSA modulus size for new keys; 2048 bits is the RS256 baseline (RFC 7518 §3.3).
KEY_BITS = 2048
ALGORITHM = "RS256"
ROTATED_PREFIX = "signing-"


class SigningKey:
    """One RSA private key with its thumbprint ``kid``, public JWKS and verification set."""

    def __init__(self, key: RSAKey) -> None:
        kid = key.thumbprint()
        self.key = RSAKey.import_key(
            key.as_pem(private=True), {"kid": kid, "use": "sig", "alg": ALGORITHM}
        )
        self.kid = kid
        self.public = RSAKey.import_key(
            key.as_pem(private=False), {"kid": kid, "use": "sig", "alg": ALGORITHM}
        )
        self.public_jwk: dict[str, Any] = dict(self.public.as_dict(private=False))
        #: The verification set holds public keys only.
        self.key_set = KeySet([self.public])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


def _write_private(path: Path, pem: bytes) -> bool:
    """Create ``path`` (mode 0600) holding ``pem``; False when it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return True


def _new_pem() -> bytes:
    return RSAKey.generate_key(KEY_BITS, private=True).as_pem(private=True)


def read_key(path: Path) -> SigningKey:
    """The signing key in the PEM at ``path``; warns when others may read it."""
    if path.stat().st_mode & 0o077:
        log.warning(
            "a token-signing key is readable by other users; run chmod 600 on it",
            extra={"path": str(path)},
        )
    key = RSAKey.import_key(path.read_bytes())
    if not key.is_private:
        raise ValueError(f"{path} holds a public key; the gateway needs the RSA private key")
    return SigningKey(key)


def load_or_create(path: Path) -> SigningKey:
    """Read the PEM at ``path``; create a new key there (mode 0600) when it is missing."""
    if not path.exists() and _write_private(path, _new_pem()):
        log.info("created a new token-signing key", extra={"path": str(path)})
    return read_key(path)


# -- which keys sign, verify, or go (pure) ---------------------------------------------


class KeyState(StrEnum):
    ACTIVE = "active"  # signs new tokens (the newest key)
    RETIRED = "retired"  # signs no more; published while tokens it signed may be valid
    EXPIRED = "expired"  # every token it signed has expired: dropped


@dataclass(frozen=True)
class KeyPlan:
    kid: str
    created_at: float
    state: KeyState
    #: When the key leaves the JWKS (None for the active key).
    drop_at: float | None


def plan_keys(keys: Sequence[tuple[str, float]], *, now: float, keep_s: float) -> list[KeyPlan]:
    """Each ``(kid, created_at)``'s state: the newest signs; an older one stopped signing
    when the next was created and stays published for ``keep_s`` (token ttl + leeway)."""
    ordered = sorted(keys, key=lambda k: (k[1], k[0]))
    plans: list[KeyPlan] = []
    for i, (kid, created) in enumerate(ordered):
        if i == len(ordered) - 1:
            plans.append(KeyPlan(kid, created, KeyState.ACTIVE, None))
            continue
        drop_at = ordered[i + 1][1] + keep_s
        state = KeyState.RETIRED if now <= drop_at else KeyState.EXPIRED
        plans.append(KeyPlan(kid, created, state, drop_at))
    return plans


# -- the key ring (files) -----------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """One consistent snapshot of the ring, swapped whole on every reload."""

    active: SigningKey
    key_set: KeySet
    jwks: dict[str, Any]
    plans: tuple[KeyPlan, ...]


class RotationUnavailable(Exception):
    """This ring cannot rotate (a fixed key)."""


class KeyRing:
    """The signing keys in one directory; :meth:`load` re-reads it (new files only)."""

    def __init__(
        self, initial: Path, *, keep_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.initial = initial
        self.directory = initial.parent
        self.keep_s = keep_s
        self.clock = clock
        self._parsed: dict[str, tuple[SigningKey, float]] = {}
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        if not any(self._files()):
            load_or_create(initial)
        self._view = self._build()

    @classmethod
    def fixed(cls, key: SigningKey) -> KeyRing:
        """A ring of one key that never changes (tests, tools)."""
        ring = cls.__new__(cls)
        ring.initial = ring.directory = Path()
        ring.keep_s, ring.clock = 0.0, time.time
        ring._parsed, ring._lock, ring._loaded_at = {}, threading.Lock(), 0.0
        plan = KeyPlan(key.kid, 0.0, KeyState.ACTIVE, None)
        ring._view = _View(key, key.key_set, key.jwks(), (plan,))
        return ring

    def _files(self) -> list[tuple[Path, float]]:
        """``(path, created_at)`` of every key file; the initial key counts as oldest."""
        found: list[tuple[Path, float]] = []
        if self.initial.exists():
            found.append((self.initial, 0.0))
        if self.directory.is_dir():
            for path in self.directory.glob(f"{ROTATED_PREFIX}*.pem"):
                stamp = path.name.removeprefix(ROTATED_PREFIX).split("-", 1)[0]
                if stamp.isdigit():
                    found.append((path, int(stamp) / 1000))
        return found

    def _build(self) -> _View:
        now = self.clock()
        entries: dict[str, tuple[SigningKey, float, Path]] = {}
        for path, created in self._files():
            cached = self._parsed.get(path.name)
            if cached is None:
                try:
                    cached = (read_key(path), created)
                except (OSError, ValueError) as exc:
                    log.warning("skipping an unreadable signing key file %s: %s", path, exc)
                    continue
                self._parsed[path.name] = cached
            entries[cached[0].kid] = (cached[0], created, path)
        plans = plan_keys([(kid, e[1]) for kid, e in entries.items()], now=now, keep_s=self.keep_s)
        published = [p for p in plans if p.state is not KeyState.EXPIRED]
        for plan in plans:
            path = entries[plan.kid][2]
            if plan.state is KeyState.EXPIRED and path != self.initial:
                path.unlink(missing_ok=True)  # every token it signed has expired
                self._parsed.pop(path.name, None)
        active = entries[published[-1].kid][0]
        publics = [entries[p.kid][0] for p in published]
        return _View(
            active=active,
            key_set=KeySet([k.public for k in publics]),
            jwks={"keys": [k.public_jwk for k in reversed(publics)]},
            plans=tuple(plans),
        )

    def load(self) -> bool:
        """Re-read the directory; True when the set of published keys changed."""
        if self.directory == Path():
            return False
        with self._lock:
            before = self._view
            self._view = self._build()
            self._loaded_at = time.monotonic()
        return [k.kid for k in before.key_set.keys] != [k.kid for k in self._view.key_set.keys]

    def reload_if_stale(self, min_interval_s: float) -> bool:
        """:meth:`load` unless it ran in the last ``min_interval_s`` (an unknown ``kid``
        must not make every bad token read the directory)."""
        if time.monotonic() - self._loaded_at < min_interval_s:
            return False
        return self.load()

    def rotate(self) -> SigningKey:
        """Create a new key that signs from now on; older keys stay published for a while."""
        if self.directory == Path():
            raise RotationUnavailable("this gateway's signing key is fixed")
        created_ms = int(self.clock() * 1000)
        name = f"{ROTATED_PREFIX}{created_ms:013d}-{secrets.token_hex(4)}.pem"
        _write_private(self.directory / name, _new_pem())
        self.load()
        log.info("rotated the token-signing key", extra={"kid": self.active.kid})
        return self.active

    @property
    def active(self) -> SigningKey:
        return self._view.active

    @property
    def key_set(self) -> KeySet:
        return self._view.key_set

    def jwks(self) -> dict[str, Any]:
        return self._view.jwks

    def plans(self) -> tuple[KeyPlan, ...]:
        return self._view.plans
