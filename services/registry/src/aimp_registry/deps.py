"""FastAPI dependencies: the registry's parts, taken from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from aimp_registry.interface import RegistryStore
from aimp_registry.model import Clock
from aimp_registry.peers import REPLICATION_HEADER, Task
from aimp_registry.preservation import RenewalMeter
from aimp_registry.replication import Replicator
from aimp_registry.stream import ChangeHub


def get_store(request: Request) -> RegistryStore:
    store: RegistryStore = request.app.state.store
    return store


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_meter(request: Request) -> RenewalMeter:
    meter: RenewalMeter = request.app.state.meter
    return meter


def get_hub(request: Request) -> ChangeHub:
    hub: ChangeHub = request.app.state.hub
    return hub


class Forwarder:
    """Hands client-originated writes to the replicator; replicated ones stop here."""

    def __init__(self, replicator: Replicator | None, replicated: bool) -> None:
        self.replicator = replicator
        #: The request came from a peer (``x-netflix-discovery-replication: true``).
        self.replicated = replicated

    def forward(self, task: Task) -> None:
        if self.replicator is not None and not self.replicated:
            self.replicator.submit(task)

    def forward_register(self, app: str, instance_id: str) -> None:
        if self.replicator is not None and not self.replicated:
            task = self.replicator.register_task(app, instance_id)
            if task is not None:
                self.replicator.submit(task)


def get_forwarder(
    request: Request,
    replication: Annotated[str | None, Header(alias=REPLICATION_HEADER)] = None,
) -> Forwarder:
    replicated = (replication or "").strip().lower() == "true"
    return Forwarder(request.app.state.replicator, replicated)


StoreDep = Annotated[RegistryStore, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]
MeterDep = Annotated[RenewalMeter, Depends(get_meter)]
HubDep = Annotated[ChangeHub, Depends(get_hub)]
ForwarderDep = Annotated[Forwarder, Depends(get_forwarder)]
AcceptHeader = Annotated[str | None, Header()]
DirtyQuery = Annotated[str | None, Query(alias="lastDirtyTimestamp")]
