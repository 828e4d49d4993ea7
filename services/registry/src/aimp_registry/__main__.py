"""``aimp-registry``: serve the registry on ``AIMP_REGISTRY_PORT``."""

from __future__ import annotations

from aimp_core.logging import configure_logging
from aimp_core.serve import serve
from aimp_registry.app import create_app
from aimp_registry.settings import RegistrySettings


def main() -> None:
    settings = RegistrySettings()
    configure_logging("registry", settings.log_level)
    app = create_app(settings)
    serve(
        app,
        host=settings.host,
        port=settings.registry_port,
        graceful_shutdown_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
