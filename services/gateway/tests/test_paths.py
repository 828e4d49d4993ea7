"""Data-plane path parsing and the upstream target: what the pod is asked for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_gateway.paths import Call, data_plane_call, upstream_target


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v2/models/resnet", Call(True, "resnet")),
        ("/v2/models/resnet/versions/2/infer", Call(True, "resnet")),
        ("/svc/billing", Call(False, "billing")),
        ("/svc/billing/a/b", Call(False, "billing")),
        ("/v2/models/", None),
        ("/v2/models", None),
        ("/v2", None),
        ("/v2/health/ready", None),
        ("/svc/", None),
        ("/admin/clients", None),
        ("/svcx/a", None),
    ],
)
def test_data_plane_call(path: str, call: Call | None) -> None:
    """Only /v2/models/{model}... and /svc/{service}... with a name are data-plane calls."""
    assert data_plane_call(path) == call


def test_upstream_target_keeps_oip_paths_and_strips_svc_prefix() -> None:
    """OIP paths go unchanged; /svc/{service} is replaced by the rest of the path."""
    assert upstream_target("/v2/models/m/infer", "", oip=True) == "/v2/models/m/infer"
    assert upstream_target("/svc/billing/a%2Fb", "x=1", oip=False) == "/a%2Fb?x=1"
    assert upstream_target("/svc/billing", "", oip=False) == "/"
    assert upstream_target("/svc/billing/", "q", oip=False) == "/?q"


segment = st.text(
    alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), min_size=1
)


@given(service=segment, rest=st.lists(segment, max_size=4), query=st.text(max_size=20))
def test_svc_target_is_the_tail_verbatim(service: str, rest: list[str], query: str) -> None:
    """Whatever follows /svc/{service} reaches the pod byte for byte, query included."""
    tail = "".join("/" + part for part in rest)
    target = upstream_target(f"/svc/{service}{tail}", query, oip=False)
    assert target == (tail or "/") + (f"?{query}" if query else "")
    assert data_plane_call(f"/svc/{service}{tail}") == Call(False, service)
