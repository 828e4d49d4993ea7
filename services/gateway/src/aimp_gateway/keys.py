"""The gateway's token-signing key: loaded from a PEM file, created on first start.

The key id is the RFC 7638 JWK thumbprint, so the same key always has the same
``kid`` and verifiers can find it in the JWKS.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from joserfc.jwk import KeySet, RSAKey

log = logging.getLogger(__name__)

#: RSA modulus size for new keys; 2048 bits is the RS256 baseline (RFC 7518 §3.3).
KEY_BITS = 2048
ALGORITHM = "RS256"


class SigningKey:
    """One RSA private key with its thumbprint ``kid``, public JWKS and verification set."""

    def __init__(self, key: RSAKey) -> None:
        kid = key.thumbprint()
        self.key = RSAKey.import_key(
            key.as_pem(private=True), {"kid": kid, "use": "sig", "alg": ALGORITHM}
        )
        self.kid = kid
        public = RSAKey.import_key(
            key.as_pem(private=False), {"kid": kid, "use": "sig", "alg": ALGORITHM}
        )
        self.public_jwk: dict[str, Any] = dict(public.as_dict(private=False))
        #: The verification set holds public keys only.
        self.key_set = KeySet([public])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


def load_or_create(path: Path) -> SigningKey:
    """Read the PEM at ``path``; create a new key there (mode 0600) when it is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = RSAKey.generate_key(KEY_BITS, private=True).as_pem(private=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs below
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            log.info("created a new token-signing key", extra={"path": str(path)})
    elif path.stat().st_mode & 0o077:
        log.warning(
            "the token-signing key is readable by other users; run chmod 600 on it",
            extra={"path": str(path)},
        )
    key = RSAKey.import_key(path.read_bytes())
    if not key.is_private:
        raise ValueError(f"{path} holds a public key; the gateway needs the RSA private key")
    return SigningKey(key)
