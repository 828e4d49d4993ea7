"""Start-up: put the credentials file's admin user and clients into the SQL store."""

from __future__ import annotations

import logging

from aimp_gateway.credentials import ADMIN_ROLES, Credentials
from aimp_gateway.passwords import hash_secret, needs_rehash, verify_secret
from aimp_gateway.store import Store

log = logging.getLogger(__name__)


def _keep_or_hash(stored_hash: str | None, secret: str) -> str:
    """The stored hash when it already verifies ``secret`` (no churn), else a new hash."""
    if stored_hash and verify_secret(stored_hash, secret) and not needs_rehash(stored_hash):
        return stored_hash
    return hash_secret(secret)


def apply_credentials(store: Store, creds: Credentials) -> None:
    """Upsert the admin user and every listed client (idempotent)."""
    user = store.get_user(creds.admin.username)
    store.put_user(
        creds.admin.username,
        _keep_or_hash(user.password_hash if user else None, creds.admin.password),
        list(ADMIN_ROLES),
    )
    for client in creds.clients:
        stored = store.get_client(client.client_id)
        store.put_client(
            client.client_id,
            _keep_or_hash(stored.secret_hash if stored else None, client.client_secret),
            client.roles,
        )
    log.info(
        "credentials applied",
        extra={"admin_user": creds.admin.username, "clients": len(creds.clients)},
    )
