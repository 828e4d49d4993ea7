"""HTTP routes of the load test: start one against a deployment's replica, read its state.

The router brings its own lifespan (FastAPI runs it inside the app's, after the
deployment store and the backend have started): it creates the load-test table, marks
tests a previous deploy-control left running as failed, and cancels running tests at
shutdown before the backend stops the pods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field

from aimp_deploy_control.api import Operator, Reader
from aimp_deploy_control.loadtest import LoadTestState
from aimp_deploy_control.loadtest_service import LoadTestRequest, LoadTests
from aimp_deploy_control.loadtest_settings import LoadTestSettings
from aimp_deploy_control.loadtest_store import LoadTest, LoadTestStore
from aimp_deploy_control.service import Deployments


class LoadTestCreate(BaseModel):
    """``POST /v1/deployments/{name}/loadtest``."""

    latency_target_ms: float = Field(
        gt=0, le=600_000, description="The p99 latency one replica must stay within (ms)."
    )
    max_rate: float = Field(
        gt=0, le=1_000_000, description="The highest request rate tried (calls/s)."
    )
    revision: str | None = Field(
        default=None,
        max_length=16,
        description="Test a replica of this revision (e.g. 'r2'); any ready replica if unset.",
    )
    step_duration_s: float | None = Field(
        default=None,
        gt=0,
        le=300,
        description="How long each rate is offered (AIMP_DEPLOY_CONTROL_LOADTEST_STEP_DURATION_S "
        "if unset).",
    )


class StepPublic(BaseModel):
    offered_rps: float
    achieved_rps: float = Field(description="Calls answered 200 per second.")
    p99_ms: float | None = Field(description="None when no call succeeded.")
    mean_ms: float | None
    error_rate: float = Field(description="Share of the step's calls that failed (0 to 1).")
    calls: int
    passed: bool
    reason: str = Field(description="Why it failed; empty when it passed.")


class ResultPublic(BaseModel):
    max_rate_rps: float = Field(
        description="The highest rate one replica sustained with p99 <= target, <= 1 % "
        "errors and >= 95 % of the offered rate answered."
    )
    recommended_concurrency: int = Field(
        description="ceil(max_rate x p99): calls in flight at that rate (Little's law with "
        "the p99 latency)."
    )
    autoscaling_target_rps: float = Field(
        description="The per-replica rate to scale out at (a share of max_rate, "
        "AIMP_DEPLOY_CONTROL_LOADTEST_AUTOSCALE_UTILISATION)."
    )
    p99_ms: float = Field(description="The p99 latency measured at max_rate.")


class LoadTestPublic(BaseModel):
    deployment: str
    pod_id: str = Field(description="The replica under test.")
    revision: str
    state: LoadTestState
    latency_target_ms: float
    max_rate: float
    step_duration_s: float
    current_step: int = Field(description="The step under way (1-based; 0 before the first).")
    current_rate_rps: float | None = Field(description="Its rate; None when not running.")
    steps: list[StepPublic] = Field(description="The steps measured so far, in order.")
    result: ResultPublic | None
    stop_reason: str | None = Field(
        description="converged, max_rate (the cap passed), below_min or max_steps."
    )
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def public(test: LoadTest) -> LoadTestPublic:
    return LoadTestPublic(
        deployment=test.deployment,
        pod_id=test.pod_id,
        revision=test.revision,
        state=test.state,
        latency_target_ms=test.latency_target_ms,
        max_rate=test.max_rate_rps,
        step_duration_s=test.step_duration_s,
        current_step=test.current_step,
        current_rate_rps=test.current_rate_rps,
        steps=[
            StepPublic(**dataclasses.asdict(r.step), passed=r.passed, reason=r.reason)
            for r in test.steps
        ],
        result=ResultPublic(**dataclasses.asdict(test.result)) if test.result else None,
        stop_reason=test.stop_reason,
        error=test.error,
        started_at=test.started_at,
        finished_at=test.finished_at,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    deployments: Deployments = app.state.deployments
    if getattr(app.state, "loadtest_settings", None) is None:
        app.state.loadtest_settings = LoadTestSettings()
    tests = LoadTests(
        deployments.store,
        deployments.backend,
        LoadTestStore(deployments.store.engine),
        app.state.loadtest_settings,
    )
    await tests.open()
    app.state.loadtests = tests
    try:
        yield
    finally:
        await tests.close()


def get_loadtests(request: Request) -> LoadTests:
    tests: LoadTests = request.app.state.loadtests
    return tests


LoadTestsDep = Annotated[LoadTests, Depends(get_loadtests)]

router = APIRouter(prefix="/v1", tags=["deployments"], lifespan=lifespan)


@router.post(
    "/deployments/{name}/loadtest",
    status_code=202,
    summary="Find the highest rate one replica sustains within a p99 latency target",
    responses={400: {}, 404: {}, 409: {}},
)
async def start_loadtest(
    name: str, body: LoadTestCreate, response: Response, _caller: Operator, tests: LoadTestsDep
) -> LoadTestPublic:
    test = await tests.start(
        name,
        LoadTestRequest(
            latency_target_ms=body.latency_target_ms,
            max_rate_rps=body.max_rate,
            revision=body.revision,
            step_duration_s=body.step_duration_s,
        ),
    )
    response.headers["Location"] = f"/v1/deployments/{name}/loadtest"
    return public(test)


@router.get(
    "/deployments/{name}/loadtest",
    summary="The latest load test: its progress, or its result and steps",
    responses={404: {}},
)
async def get_loadtest(name: str, _caller: Reader, tests: LoadTestsDep) -> LoadTestPublic:
    return public(await tests.get(name))
