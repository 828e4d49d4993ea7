"""HTTP routes of deploy-control: deployments, scaling, rolling restarts, pods, runtimes."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import Field

from aimp_core.auth import Principal, can_operate, can_read_admin, require
from aimp_deploy_control.releases import Releases
from aimp_deploy_control.schemas import (
    DeploymentCreate,
    DeploymentList,
    DeploymentPublic,
    PodList,
    ReleasePublic,
    RevisionCreate,
    RolloutPublic,
    RuntimeList,
    ScalePublic,
    ScaleUpdate,
)
from aimp_deploy_control.service import Deployments
from aimp_deploy_control.views import pod_public, runtimes_public


class Verifier(Protocol):
    async def verify(self, authorization: str | None) -> Principal: ...


def get_deployments(request: Request) -> Deployments:
    deployments: Deployments = request.app.state.deployments
    return deployments


def get_releases(request: Request) -> Releases:
    releases: Releases = request.app.state.releases
    return releases


async def get_caller(request: Request) -> Principal:
    verifier: Verifier = request.app.state.verifier
    return await verifier.verify(request.headers.get("authorization"))


async def get_operator(caller: Annotated[Principal, Depends(get_caller)]) -> Principal:
    require(can_operate(caller.roles), "deploying, scaling, restarting or removing models")
    return caller


async def get_reader(caller: Annotated[Principal, Depends(get_caller)]) -> Principal:
    require(can_read_admin(caller.roles), "reading deployments and pods")
    return caller


DeploymentsDep = Annotated[Deployments, Depends(get_deployments)]
ReleasesDep = Annotated[Releases, Depends(get_releases)]
#: ``{"r1": 80, "r2": 20}``: percent of calls by revision.
TrafficSplit = Annotated[
    dict[Annotated[str, Field(max_length=16)], Annotated[int, Field(ge=0, le=100)]],
    Body(max_length=64, examples=[{"r1": 80, "r2": 20}]),
]
Operator = Annotated[Principal, Depends(get_operator)]
Reader = Annotated[Principal, Depends(get_reader)]

router = APIRouter(prefix="/v1", tags=["deployments"])


@router.post(
    "/deployments",
    status_code=201,
    summary="Deploy a model file as a service (200 if the same deployment exists)",
    responses={200: {"model": DeploymentPublic}, 400: {}, 409: {}},
)
async def create_deployment(
    body: DeploymentCreate, response: Response, _caller: Operator, deployments: DeploymentsDep
) -> DeploymentPublic:
    view, created = await deployments.create(body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/deployments/{view.name}"
    return view


@router.get("/deployments", summary="Every deployment with its pods")
async def list_deployments(_caller: Reader, deployments: DeploymentsDep) -> DeploymentList:
    return DeploymentList(deployments=await deployments.list())


@router.get("/deployments/{name}", summary="One deployment with its pods and their states")
async def get_deployment(
    name: str, _caller: Reader, deployments: DeploymentsDep
) -> DeploymentPublic:
    return await deployments.get(name)


@router.delete(
    "/deployments/{name}", status_code=204, summary="Stop a deployment's pods and forget it"
)
async def delete_deployment(name: str, _caller: Operator, deployments: DeploymentsDep) -> Response:
    await deployments.delete(name)
    return Response(status_code=204)


@router.get("/pods", summary="Every pod this deploy-control runs")
async def list_pods(_caller: Reader, deployments: DeploymentsDep) -> PodList:
    return PodList(pods=[pod_public(p) for p in deployments.backend.pods()])


@router.put(
    "/deployments/{name}/scale",
    summary="Run exactly N pods of the primary revision (within its min_scale and "
    "max_scale; 0 stops them all and keeps the deployment)",
    responses={400: {}, 404: {}, 409: {}},
)
async def scale_deployment(
    name: str, body: ScaleUpdate, _caller: Operator, deployments: DeploymentsDep
) -> ScalePublic:
    return await deployments.scale(name, body.replicas)


@router.get("/deployments/{name}/scale", summary="Pods asked for and pods ready")
async def get_scale(name: str, _caller: Reader, deployments: DeploymentsDep) -> ScalePublic:
    return await deployments.scale_of(name)


@router.put(
    "/deployments/{name}/revisions/{revision}/scale",
    summary="Run exactly N pods of one revision (within its min_scale and max_scale)",
    responses={400: {}, 404: {}, 409: {}},
)
async def scale_revision(
    name: str, revision: str, body: ScaleUpdate, _caller: Operator, deployments: DeploymentsDep
) -> ScalePublic:
    return await deployments.scale(name, body.replicas, revision)


@router.get(
    "/deployments/{name}/revisions/{revision}/scale",
    summary="One revision's pods asked for and ready",
)
async def get_revision_scale(
    name: str, revision: str, _caller: Reader, deployments: DeploymentsDep
) -> ScalePublic:
    return await deployments.scale_of(name, revision)


@router.post(
    "/deployments/{name}/restart",
    status_code=202,
    summary="Replace the pods one at a time; progress in GET /v1/deployments/{name}",
    responses={400: {}, 404: {}, 409: {}},
)
async def restart_deployment(
    name: str, response: Response, _caller: Operator, deployments: DeploymentsDep
) -> RolloutPublic:
    rollout = await deployments.restart(name)
    response.headers["Location"] = f"/v1/deployments/{name}"
    return rollout


@router.post(
    "/deployments/{name}/revisions",
    status_code=201,
    summary="Add a revision (a new model version or file) with no traffic; it warms up first",
    responses={400: {}, 404: {}, 409: {}, 502: {}, 503: {}},
)
async def add_revision(
    name: str, body: RevisionCreate, response: Response, _caller: Operator, releases: ReleasesDep
) -> ReleasePublic:
    out = await releases.add_revision(name, body)
    response.headers["Location"] = f"/v1/deployments/{name}"
    return out


@router.put(
    "/deployments/{name}/traffic",
    summary="Split the calls between revisions by percent (e.g. r1 80, r2 20)",
    responses={400: {}, 404: {}, 409: {}, 502: {}, 503: {}},
)
async def set_traffic(
    name: str, body: TrafficSplit, _caller: Operator, releases: ReleasesDep
) -> ReleasePublic:
    return await releases.set_traffic(name, body)


@router.post(
    "/deployments/{name}/revisions/{revision}/promote",
    summary="Move all calls to a revision, then scale the others to 0",
    responses={404: {}, 409: {}, 502: {}, 503: {}},
)
async def promote_revision(
    name: str, revision: str, _caller: Operator, releases: ReleasesDep
) -> ReleasePublic:
    return await releases.promote(name, revision)


@router.post(
    "/deployments/{name}/rollback",
    summary="Bring back the previous revision that had all calls, move them to it, scale "
    "the others to 0",
    responses={404: {}, 409: {}, 502: {}, 503: {}},
)
async def rollback_deployment(name: str, _caller: Operator, releases: ReleasesDep) -> ReleasePublic:
    return await releases.rollback(name)


@router.get("/runtimes", summary="Inference runtimes and whether each can run here")
async def list_runtimes(_caller: Reader, deployments: DeploymentsDep) -> RuntimeList:
    return RuntimeList(runtimes=runtimes_public(deployments.settings))
