"""Configured routes: compiled once per configuration version, matched per request (pure).

A route matches a request when its ``path_prefix`` covers the path *by whole
segments* (``/shop`` covers ``/shop`` and ``/shop/cart``, not ``/shopping``),
the ``Host`` (case-insensitive, port ignored) is one of ``hosts`` (any when
empty), every ``headers`` entry is present (with its value when one is given)
and the method is one of ``methods`` (any when empty). Among matching routes
the longest prefix wins, then the lower ``priority``, then the route id (so
the choice never depends on the order routes were stored in).

:meth:`RouteTable.compile` indexes routes by prefix; :meth:`RouteTable.match`
then looks up only the path's own ancestors (one dict lookup per segment),
longest first, and stops at the first route whose other predicates hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from aimp_gateway.policy import Route

#: Paths the gateway itself answers; a route may neither cover nor sit under them.
RESERVED_PREFIXES = (
    "/v2",
    "/svc",
    "/oauth",
    "/admin",
    "/.well-known",
    "/console",
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
)

#: Characters kept as they are when a decoded remainder must be re-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def normalize_prefix(prefix: str) -> str:
    """``prefix`` without trailing slashes (``/`` stays): ``/a/`` and ``/a`` are one prefix."""
    stripped = prefix.rstrip("/")
    return stripped or "/"


def covers(prefix: str, path: str) -> bool:
    """Does ``prefix`` (normalized) cover ``path`` by whole segments?"""
    if prefix == "/":
        return path.startswith("/")
    return path == prefix or path.startswith(prefix + "/")


def reserved_conflict(prefix: str) -> str | None:
    """The reserved prefix that ``prefix`` would cover or fall under, or None when it is free."""
    prefix = normalize_prefix(prefix)
    for reserved in RESERVED_PREFIXES:
        if covers(reserved, prefix) or covers(prefix, reserved):
            return reserved
    return None


def host_name(host: str | None) -> str:
    """The host part of a ``Host`` header, lower case, port removed (IPv6 literals kept)."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    return host.partition(":")[0]


@dataclass(frozen=True)
class _Compiled:
    """One route with its predicates in the form matching needs."""

    route: Route
    hosts: frozenset[str]
    #: (lower-case name, value or None for "present with any value").
    headers: tuple[tuple[bytes, bytes | None], ...]
    methods: frozenset[str]

    def accepts(self, host: str, headers: Sequence[tuple[bytes, bytes]], method: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.hosts and host not in self.hosts:
            return False
        for name, value in self.headers:
            if not any(k == name and (value is None or v == value) for k, v in headers):
                return False
        return True


def _compile(route: Route) -> _Compiled:
    return _Compiled(
        route=route,
        hosts=frozenset(host_name(h) for h in route.hosts),
        headers=tuple(
            (
                h.name.lower().encode("latin-1"),
                None if h.value is None else h.value.encode("latin-1"),
            )
            for h in route.headers
        ),
        methods=frozenset(m.upper() for m in route.methods),
    )


class RouteTable:
    """Routes indexed by normalized prefix, each prefix's routes in the order they win."""

    __slots__ = ("_by_prefix", "routes")

    def __init__(self, by_prefix: dict[str, tuple[_Compiled, ...]], routes: tuple[Route, ...]):
        self._by_prefix = by_prefix
        self.routes = routes

    @classmethod
    def compile(cls, routes: Iterable[Route]) -> RouteTable:
        """Index ``routes`` once (per configuration version)."""
        kept = tuple(routes)
        groups: dict[str, list[_Compiled]] = {}
        for route in kept:
            groups.setdefault(normalize_prefix(route.path_prefix), []).append(_compile(route))
        by_prefix = {
            prefix: tuple(sorted(group, key=lambda c: (c.route.priority, c.route.route_id)))
            for prefix, group in groups.items()
        }
        return cls(by_prefix, kept)

    def __bool__(self) -> bool:
        return bool(self._by_prefix)

    def match(
        self,
        path: str,
        *,
        host: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        method: str,
    ) -> Route | None:
        """The route ``path`` goes through, or None (``headers``: lower-case ASGI pairs)."""
        if not self._by_prefix or not path.startswith("/"):
            return None
        name = host_name(host)
        candidate = normalize_prefix(path)
        while True:
            group = self._by_prefix.get(candidate)
            if group is not None:
                for compiled in group:
                    if compiled.accepts(name, headers, method):
                        return compiled.route
            if candidate == "/":
                return None
            cut = candidate.rfind("/")
            candidate = candidate[:cut] or "/"


def rewrite(route: Route, path: str, raw_path: str) -> str:
    """The path to forward for a call through ``route`` (raw, percent-encoded as sent).

    ``path`` is the decoded path the route matched; ``raw_path`` is the path as the
    caller sent it. The remainder after the prefix is taken from the raw path
    when the raw path begins with the prefix (the usual case), else re-encoded
    from the decoded one.
    """
    prefix = normalize_prefix(route.path_prefix)
    if route.rewrite_prefix is None:
        return raw_path or path
    cut = 0 if prefix == "/" else len(prefix)
    if raw_path.startswith(prefix) and covers(prefix, raw_path):
        rest = raw_path[cut:]
    else:
        rest = quote(path[cut:], safe=_PATH_SAFE)
    base = route.rewrite_prefix.rstrip("/")
    if not rest:
        return base or "/"
    if not rest.startswith("/"):
        rest = "/" + rest
    return base + rest
