"""Typed settings shared by every service, read from ``AIMP_*`` environment variables.

Each service subclasses :class:`CoreSettings` and adds its own topic-grouped
fields; ``<service>_port`` fields map to ``AIMP_<SERVICE>_PORT`` as DESIGN.md fixes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Local default ports (DESIGN.md); each is overridable by ``AIMP_<SERVICE>_PORT``.
DEFAULT_PORTS: dict[str, int] = {
    "gateway": 8080,
    "registry": 8761,
    "deploy_control": 8090,
    "throttle": 8091,
    "stats": 8092,
    "hpa_controller": 8093,
    "kafka": 9092,
}


class CoreSettings(BaseSettings):
    """Settings every service reads. Units are in the field names (``_s``, ``_ms``)."""

    model_config = SettingsConfigDict(env_prefix="AIMP_", extra="ignore")

    # -- where things live --------------------------------------------------
    home: Path = Field(
        default=Path("~/.aimp"),
        description="Local state: databases, logs, pid files, model store, credentials.",
    )
    #: SQL for every service; unset means a SQLite file per service under ``home/db``.
    database_url: str | None = None

    # -- peers ----------------------------------------------------------------
    registry_url: str = "http://127.0.0.1:8761/eureka"
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # -- tokens (the gateway signs; everyone verifies on every call) ----------
    #: Where services fetch the gateway's public signing keys.
    jwks_url: str = "http://127.0.0.1:8080/.well-known/jwks.json"
    #: The ``iss`` every token must carry: the gateway's public base URL.
    token_issuer: str = "http://127.0.0.1:8080"  # noqa: S105 (a URL, not a secret)

    # -- this process ---------------------------------------------------------
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    #: Every outbound control-plane call gives up after this long; 5 s is far above
    #: a healthy local call (~1 ms) and short enough that a dead peer is noticed.
    http_timeout_s: float = 5.0
    #: Time a stopping service gives in-flight requests before closing them.
    graceful_shutdown_s: float = 10.0

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    def sql_url(self, service: str) -> str:
        """The SQL URL for ``service``: ``database_url`` if set, else its own SQLite file."""
        if self.database_url:
            return self.database_url
        db_dir = self.home / "db"
        db_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db_dir / (service.replace('-', '_') + '.db')}"
