"""Entry point: ``aimp-stats`` (or ``python -m aimp_stats``)."""

from __future__ import annotations

from aimp_core.logging import configure_logging
from aimp_core.serve import serve

from .app import create_app
from .settings import StatsSettings


def main() -> None:
    settings = StatsSettings()
    configure_logging("stats", settings.log_level)
    app = create_app(settings)
    serve(
        app,
        host=settings.host,
        port=settings.stats_port,
        graceful_shutdown_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
