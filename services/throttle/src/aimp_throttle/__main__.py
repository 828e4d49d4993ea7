"""Entry point: ``aimp-throttle`` (or ``python -m aimp_throttle``)."""

from __future__ import annotations

from aimp_core.logging import configure_logging
from aimp_core.serve import serve

from .app import create_app
from .settings import ThrottleSettings


def main() -> None:
    settings = ThrottleSettings()
    configure_logging("throttle", settings.log_level)
    app = create_app(settings)
    serve(
        app,
        host=settings.host,
        port=settings.throttle_port,
        graceful_shutdown_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
