"""Public views (schemas.py) of what the domain and the backends hold."""

from __future__ import annotations

import dataclasses

from aimp_deploy_control import runtimes
from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.resources import ResourcesSpec
from aimp_deploy_control.revision_spec import ServingPublic
from aimp_deploy_control.revision_start import StartRecord
from aimp_deploy_control.revision_store import Revision
from aimp_deploy_control.rollout import Rollout
from aimp_deploy_control.schemas import (
    PodPublic,
    RevisionPublic,
    RolloutPublic,
    RuntimePublic,
    WarmupPublic,
)
from aimp_deploy_control.settings import DeployControlSettings


def pod_public(info: PodInfo) -> PodPublic:
    return PodPublic.model_validate(dataclasses.asdict(info))


def rollout_public(rollout: Rollout) -> RolloutPublic:
    return RolloutPublic.model_validate(dataclasses.asdict(rollout))


def revision_public(
    rev: Revision, pods: list[PodInfo], start: StartRecord | None
) -> RevisionPublic:
    return RevisionPublic(
        **ServingPublic.of(rev.serving).model_dump(),
        name=rev.name,
        state=rev.state,
        traffic_percent=rev.traffic,
        replicas=rev.replicas,
        ready=sum(p.state == PodState.RUNNING for p in pods if p.revision == rev.name),
        model_file=rev.model_file or None,
        model=rev.model,
        model_version=rev.model_version,
        runtime=rev.runtime,
        framework=rev.framework,
        resources=ResourcesSpec.model_validate(rev.resources) if rev.resources else None,
        created_at=rev.created_at,
        updated_at=rev.updated_at,
        warmup=WarmupPublic.model_validate(dataclasses.asdict(start.progress)) if start else None,
        error=start.error if start else None,
    )


def runtimes_public(settings: DeployControlSettings) -> list[RuntimePublic]:
    """Every runtime, whether it can run here, and if not why and how to fix it."""
    out = []
    for name, spec in runtimes.RUNTIMES.items():
        reason = runtimes.unavailable_reason(settings, name)
        out.append(
            RuntimePublic(
                name=name,
                available=reason is None,
                frameworks=list(spec.frameworks),
                command=runtimes.command_of(settings, name),
                detail=reason,
            )
        )
    return out
