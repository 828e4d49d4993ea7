"""The service app factory: health, readiness, metrics, errors and trace headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from aimp_core.app import create_service_app
from aimp_core.errors import NotFound, ServiceUnavailable, TooManyRequests


class Body(BaseModel):
    rate: float


async def _ok() -> None:
    return None


async def _broken() -> None:
    raise ConnectionError("redis at 127.0.0.1:1 refused")


def _app() -> FastAPI:
    app = create_service_app("demo", ready_checks={"sql": _ok, "redis": _broken}, oip_prefix="/v2")

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        raise NotFound(f"no thing named {name!r}")

    @app.get("/v2/models/{name}")
    async def model(name: str) -> dict[str, str]:
        raise NotFound(f"model {name!r} is not deployed")

    @app.get("/busy")
    async def busy() -> dict[str, str]:
        raise TooManyRequests("client limit of 10/s reached", retry_after_s=0.2)

    @app.get("/down")
    async def down() -> dict[str, str]:
        raise ServiceUnavailable("no instance is up", retry_after_s=2.5)

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_healthz_answers_while_alive(client: httpx.AsyncClient) -> None:
    """/healthz answers 200 without consulting any dependency."""
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["service"] == "demo"


async def test_readyz_names_the_failing_dependency(client: httpx.AsyncClient) -> None:
    """/readyz is 503 and names the dependency that failed, not the ones that passed."""
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert "redis" in resp.json()["detail"]
    assert "sql" not in resp.json()["detail"]
    assert resp.headers["retry-after"] == "1"


async def test_errors_are_problem_json_with_request_id(client: httpx.AsyncClient) -> None:
    """Our errors become RFC 9457 problem+json carrying the request id of the response."""
    resp = await client.get("/things/x", headers={"x-request-id": "abc123"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body == {
        "type": "about:blank",
        "title": "Not found",
        "status": 404,
        "detail": "no thing named 'x'",
        "request_id": "abc123",
    }
    assert resp.headers["x-request-id"] == "abc123"


async def test_inference_protocol_paths_use_the_error_shape(client: httpx.AsyncClient) -> None:
    """Under /v2 errors are {"error": ...} so Triton clients show the message."""
    resp = await client.get("/v2/models/nope")
    assert resp.status_code == 404
    assert resp.json() == {"error": "model 'nope' is not deployed"}


async def test_retry_after_is_rounded_up_to_whole_seconds(client: httpx.AsyncClient) -> None:
    """429 and 503 carry Retry-After in whole seconds, never shorter than the real wait."""
    assert (await client.get("/busy")).headers["retry-after"] == "1"
    assert (await client.get("/down")).headers["retry-after"] == "3"


async def test_every_response_carries_trace_context(client: httpx.AsyncClient) -> None:
    """A caller's traceparent is continued: same trace id, a new span id."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await client.get(
        "/healthz", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    version, got_trace, span, flags = resp.headers["traceparent"].split("-")
    assert (version, got_trace, flags) == ("00", trace_id, "01")
    assert span != "00f067aa0ba902b7"
    assert len(resp.headers["x-request-id"]) == 32


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    """A malformed request is a 422 problem naming the offending field."""
    app = _app()

    @app.post("/p")
    async def post(body: Body) -> dict[str, float]:
        return {"rate": body.rate}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        resp = await c.post("/p", json={"rate": "fast"})
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("rate:")


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    """/metrics exposes request counts labelled by route template, not the raw path."""
    await client.get("/things/secret-name")
    body = (await client.get("/metrics")).text
    assert 'route="/things/{name}"' in body
    assert "secret-name" not in body
