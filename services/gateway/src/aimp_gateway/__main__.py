"""``aimp-gateway``: read settings, refuse unsafe credentials, serve."""

from __future__ import annotations

import logging
import sys

from aimp_core.logging import configure_logging
from aimp_core.serve import serve
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
    )


if __name__ == "__main__":
    main()
