"""Which paths are data-plane calls, and where each one goes upstream (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from aimp_gateway.policy import Route
from aimp_gateway.routes import rewrite

OIP_PREFIX = "/v2/models/"
SVC_PREFIX = "/svc/"


@dataclass(frozen=True)
class Call:
    """A data-plane call: Open Inference Protocol (``oip``) or generic, to service ``name``.

    A call through a configured route carries the ``route`` (its timeout applies) and
    ``path``, the raw path to forward (already rewritten).
    """

    oip: bool
    name: str
    route: Route | None = None
    path: str | None = None


@dataclass(frozen=True)
class RouteTemplate:
    """What the metrics middleware reads as the route (``.path``): never the raw path."""

    path: str


OIP_ROUTE = RouteTemplate("/v2/models/{model}/...")
SVC_ROUTE = RouteTemplate("/svc/{service}/...")


def data_plane_call(path: str) -> Call | None:
    """The call ``path`` names, or None when the control plane should answer it."""
    if path.startswith(OIP_PREFIX):
        name = path[len(OIP_PREFIX) :].partition("/")[0]
        return Call(True, name) if name else None
    if path.startswith(SVC_PREFIX):
        name = path[len(SVC_PREFIX) :].partition("/")[0]
        return Call(False, name) if name else None
    return None


def routed_call(route: Route, path: str, raw_path: str) -> Call:
    """The call for a request that ``route`` matched (``path`` decoded, ``raw_path`` as sent)."""
    return Call(False, route.service, route, rewrite(route, path, raw_path))


def upstream_target(raw_path: str, query: str, *, oip: bool, routed: str | None = None) -> str:
    """The path and query to request from the instance.

    OIP calls keep their path (``/v2/models/m/infer``); ``/svc/{service}/{path}``
    becomes ``/{path}``; a routed call goes to ``routed`` (its rewritten path). The
    raw (still percent-encoded) path is used so that the pod sees exactly what the
    caller sent.
    """
    if routed is not None:
        raw_path = routed
    elif not oip:
        cut = raw_path.find("/", len(SVC_PREFIX))
        raw_path = raw_path[cut:] if cut >= 0 else "/"
    return f"{raw_path}?{query}" if query else raw_path
