"""A model server that refuses connections: the sidecar says the call was never sent."""

from __future__ import annotations

import pytest

from aimp_core.net import free_port
from aimp_registry_sidecar.upstream import NOT_SENT_HEADER, ServerRefused, Upstream

pytestmark = pytest.mark.integration


async def test_refused_connection_is_a_503_marked_not_sent() -> None:
    """Nothing listening behind the sidecar gives 503 + x-aimp-not-sent, so a gateway may resend."""
    upstream = Upstream(f"http://127.0.0.1:{free_port()}", timeout_s=2, pool_size=4, model="m")
    await upstream.start()
    try:
        with pytest.raises(ServerRefused) as err:
            await upstream.forward("POST", b"/v2/models/m/infer", b"", [], b"{}")
    finally:
        await upstream.aclose()
    assert err.value.status == 503
    assert err.value.headers[NOT_SENT_HEADER] == "1"
    assert "Retry-After" in err.value.headers and "not sent" in err.value.detail
