"""HTTP route of the inventory: GET /v1/nodes (role admin or operator, as reading pods)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from aimp_deploy_control.api import Reader
from aimp_deploy_control.inventory import Inventory, NodeInfo


class GpuPublic(BaseModel):
    index: int
    name: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None = Field(description="None where it cannot be read (Kubernetes).")
    utilization_pct: int | None


class PodUsagePublic(BaseModel):
    pod_id: str
    deployment: str
    state: str
    cpu_cores: float | None = Field(description="Cores in use now (0.5 = half a core).")
    memory_mib: float | None
    gpu_memory_mib: float | None
    usage_detail: str | None = Field(description="Why usage is missing, when it is.")


class NodePublic(BaseModel):
    name: str
    cpu_cores: float
    memory_mib: int
    cpu_used_pct: float | None
    memory_used_mib: int | None
    gpus: list[GpuPublic]
    gpu_detail: str | None = Field(description="Why GPUs are missing or partly known.")
    pods: list[PodUsagePublic]


class NodeList(BaseModel):
    nodes: list[NodePublic]


def node_public(node: NodeInfo) -> NodePublic:
    return NodePublic.model_validate(dataclasses.asdict(node))


def get_inventory(request: Request) -> Inventory:
    inventory: Inventory = request.app.state.inventory
    return inventory


InventoryDep = Annotated[Inventory, Depends(get_inventory)]

router = APIRouter(prefix="/v1", tags=["inventory"])


@router.get("/nodes", summary="Nodes with CPU, memory and GPUs, and the pods on each")
async def list_nodes(_caller: Reader, inventory: InventoryDep) -> NodeList:
    return NodeList(nodes=[node_public(n) for n in await inventory.nodes()])
