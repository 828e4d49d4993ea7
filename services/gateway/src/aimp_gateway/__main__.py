"""``aimp-gateway``: read settings, refuse unsafe credentials, serve."""

from __future__ import annotations

import logging
import sys

from aimp_core.logging import configure_logging
from aimp_core.serve import ServerLimits, serve
from aimp_gateway.app import SERVICE, build_app
from aimp_gateway.credentials import StartupRefused
from aimp_gateway.settings import GatewaySettings

#: Exit status when the gateway refuses to start (bad or unsafe configuration).
EXIT_REFUSED = 2


def main() -> None:
    settings = GatewaySettings()
    configure_logging(SERVICE, settings.log_level)
    # The registry is read every second; one INFO line per read would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app = build_app(settings)
    except StartupRefused as exc:
        logging.getLogger(__name__).error("gateway refused to start: %s", exc)
        print(f"aimp-gateway: {exc}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
    serve(
        app,
        host=settings.host,
        port=settings.gateway_port,
        graceful_shutdown_s=settings.graceful_shutdown_s,
        limits=ServerLimits(
            max_head_bytes=settings.gateway_max_head_bytes,
            max_header_count=settings.gateway_max_header_count,
            head_timeout_s=settings.gateway_head_timeout_s,
            max_connections=settings.gateway_max_connections,
            reuse_port=settings.gateway_reuse_port,
        ),
    )


if __name__ == "__main__":
    main()
