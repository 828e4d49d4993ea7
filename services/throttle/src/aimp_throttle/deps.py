"""FastAPI dependencies: the wired parts, from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .checker import Checker
from .plan_store import PlanStore
from .publisher import RulePublisher
from .store import PolicyStore


def _policies(request: Request) -> PolicyStore:
    store: PolicyStore = request.app.state.store
    return store


def _plans(request: Request) -> PlanStore:
    plans: PlanStore = request.app.state.plans
    return plans


def _publisher(request: Request) -> RulePublisher:
    publisher: RulePublisher = request.app.state.publisher
    return publisher


def _checker(request: Request) -> Checker:
    checker: Checker = request.app.state.checker
    return checker


Policies = Annotated[PolicyStore, Depends(_policies)]
Plans = Annotated[PlanStore, Depends(_plans)]
Publisher = Annotated[RulePublisher, Depends(_publisher)]
CheckerDep = Annotated[Checker, Depends(_checker)]
