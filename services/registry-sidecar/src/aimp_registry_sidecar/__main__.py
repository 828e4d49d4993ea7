"""``aimp-sidecar``: register one inference pod and proxy its calls (settings: AIMP_SIDECAR_*)."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from aimp_core.logging import configure_logging
from aimp_registry_sidecar.app import SERVICE, create_app
from aimp_registry_sidecar.serve import serve_draining
from aimp_registry_sidecar.settings import SidecarSettings
from aimp_registry_sidecar.sidecar import Sidecar


def main() -> None:
    try:
        settings = SidecarSettings()
    except ValidationError as exc:
        raise SystemExit(f"aimp-sidecar: bad settings (AIMP_SIDECAR_*): {exc}") from None
    configure_logging(SERVICE, settings.log_level)
    # httpx logs every registry call (a heartbeat every few seconds) at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(settings)
    sidecar: Sidecar = app.state.sidecar
    serve_draining(app, host=settings.host, port=settings.sidecar_port, on_stop=sidecar.stop)


if __name__ == "__main__":
    main()
