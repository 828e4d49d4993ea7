"""Configured routes: which route a request takes, and the path it is forwarded with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_gateway.paths import Call, routed_call, upstream_target
from aimp_gateway.policy import HeaderMatch, Route
from aimp_gateway.routes import RouteTable, host_name, reserved_conflict, rewrite

SEGMENTS = ("a", "b", "c")
HOSTS = ("shop.example.com", "api.example.com")
HEADERS = (("x-tenant", "blue"), ("x-tenant", None), ("x-beta", "1"))
METHODS = ("GET", "POST", "DELETE")


def _segments(parts: list[str]) -> str:
    return "/" + "/".join(parts)


@st.composite
def routes(draw: st.DrawFn) -> list[Route]:
    count = draw(st.integers(0, 8))
    made = []
    for i in range(count):
        made.append(
            Route(
                route_id=f"r{i}",
                path_prefix=_segments(draw(st.lists(st.sampled_from(SEGMENTS), max_size=3)))
                + draw(st.sampled_from(["", "/"])),
                service=f"svc{i}",
                hosts=tuple(draw(st.sets(st.sampled_from(HOSTS), max_size=2))),
                headers=tuple(
                    HeaderMatch(n, v)
                    for n, v in draw(st.sets(st.sampled_from(HEADERS), max_size=2))
                ),
                methods=tuple(draw(st.sets(st.sampled_from(METHODS), max_size=2))),
                priority=draw(st.integers(0, 3)),
            )
        )
    return made


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str | None, list[tuple[bytes, bytes]], str]:
    path = _segments(draw(st.lists(st.sampled_from(SEGMENTS), max_size=4)))
    path += draw(st.sampled_from(["", "/"])) if path != "/" else ""
    host = draw(st.sampled_from([*HOSTS, "other.org", None]))
    if host is not None:
        host = draw(st.sampled_from([host, host.upper(), host + ":8080"]))
    headers = [
        (n.encode(), (v or "x").encode())
        for n, v in draw(st.sets(st.sampled_from(HEADERS), max_size=3))
    ]
    return path, host, headers, draw(st.sampled_from(METHODS))


def _oracle_matches(
    route: Route, path: str, host: str | None, headers: list[tuple[bytes, bytes]], method: str
) -> bool:
    """A deliberately plain re-statement of the matching rules (the reference)."""
    want = [s for s in route.path_prefix.split("/") if s]
    have = [s for s in path.split("/") if s]
    if have[: len(want)] != want:
        return False
    if route.hosts and (host or "").split(":")[0].lower() not in route.hosts:
        return False
    if route.methods and method not in route.methods:
        return False
    sent = {(n.decode(), v.decode()) for n, v in headers}
    for h in route.headers:
        if not any(n == h.name and (h.value is None or v == h.value) for n, v in sent):
            return False
    return True


def _prefix_len(route: Route) -> int:
    return len([s for s in route.path_prefix.split("/") if s])


@settings(max_examples=150, deadline=None)
@given(routes(), requests())
def test_chosen_route_matches_and_wins(
    table_routes: list[Route], request: tuple[str, str | None, list[tuple[bytes, bytes]], str]
) -> None:
    """The chosen route matches; no matching route has a longer prefix, or the same one and a
    lower priority (then id); and nothing is chosen only when nothing matches."""
    path, host, headers, method = request
    chosen = RouteTable.compile(table_routes).match(path, host=host, headers=headers, method=method)
    matching = [r for r in table_routes if _oracle_matches(r, path, host, headers, method)]
    if chosen is None:
        assert matching == []
        return
    assert chosen in matching
    best = min(matching, key=lambda r: (-_prefix_len(r), r.priority, r.route_id))
    assert chosen == best


def test_prefix_matches_whole_segments_only() -> None:
    """/shop covers /shop and /shop/cart but not /shopping."""
    table = RouteTable.compile([Route("shop", "/shop", "shop")])
    for path, expected in (("/shop", True), ("/shop/cart", True), ("/shop/", True)):
        assert (table.match(path, host=None, headers=[], method="GET") is not None) == expected
    assert table.match("/shopping", host=None, headers=[], method="GET") is None


def test_host_ignores_case_and_port() -> None:
    """Hosts compare without case and without the port; IPv6 literals keep their brackets."""
    assert host_name("Shop.Example.COM:8443") == "shop.example.com"
    assert host_name("[::1]:8080") == "[::1]"
    table = RouteTable.compile([Route("r", "/x", "s", hosts=("shop.example.com",))])
    assert table.match("/x/1", host="SHOP.example.com:80", headers=[], method="GET")
    assert table.match("/x/1", host="other.example.com", headers=[], method="GET") is None
    assert table.match("/x/1", host=None, headers=[], method="GET") is None


@pytest.mark.parametrize(
    ("prefix", "rewrite_prefix", "raw", "expected"),
    [
        ("/shop", "/api", "/shop/items", "/api/items"),
        ("/shop", "/api/", "/shop/items", "/api/items"),
        ("/shop", "/", "/shop/items", "/items"),
        ("/shop", "/", "/shop", "/"),
        ("/shop", "/api", "/shop", "/api"),
        ("/shop", None, "/shop/items", "/shop/items"),
        ("/shop", "/api", "/shop/a%2Fb", "/api/a%2Fb"),
    ],
)
def test_rewrite(prefix: str, rewrite_prefix: str | None, raw: str, expected: str) -> None:
    """The forwarded path is the rewrite prefix plus the raw remainder after the route prefix."""
    route = Route("r", prefix, "s", rewrite_prefix=rewrite_prefix)
    decoded = raw.replace("%2F", "/")
    assert rewrite(route, decoded, raw) == expected


def test_rewrite_reencodes_when_the_raw_path_spells_the_prefix_differently() -> None:
    """A caller that percent-encodes part of the prefix still gets a well-formed path."""
    route = Route("r", "/shop", "s", rewrite_prefix="/api")
    assert rewrite(route, "/shop/a b", "/sh%6Fp/a%20b") == "/api/a%20b"


def test_routed_call_forwards_the_rewritten_path_with_the_query() -> None:
    """A routed call names the route's service and goes to the rewritten path plus query."""
    route = Route("r", "/shop", "billing", rewrite_prefix="/v1")
    call = routed_call(route, "/shop/cart", "/shop/cart")
    assert call == Call(False, "billing", route, "/v1/cart")
    assert upstream_target("/shop/cart", "q=1", oip=False, routed=call.path) == "/v1/cart?q=1"


@pytest.mark.parametrize(
    ("prefix", "conflict"),
    [
        ("/v2", "/v2"),
        ("/v2/models/x", "/v2"),
        ("/admin/", "/admin"),
        ("/", "/v2"),
        ("/.well-known/x", "/.well-known"),
        ("/openapi.json", "/openapi.json"),
        ("/v2x", None),
        ("/shop", None),
        ("/metricsx/a", None),
    ],
)
def test_reserved_prefixes(prefix: str, conflict: str | None) -> None:
    """A route may not cover or sit under a path the gateway answers itself."""
    assert reserved_conflict(prefix) == conflict
