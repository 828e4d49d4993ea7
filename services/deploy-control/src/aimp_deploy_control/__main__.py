"""``aimp-deploy-control``: the deployments API and the local pod supervisor."""

from __future__ import annotations

import logging

from aimp_core.logging import configure_logging
from aimp_core.serve import serve
from aimp_deploy_control.app import SERVICE, create_app
from aimp_deploy_control.settings import DeployControlSettings


def main() -> None:
    settings = DeployControlSettings()
    configure_logging(SERVICE, settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness probes every 0.5 s
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.deploy_control_port,
        graceful_shutdown_s=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
