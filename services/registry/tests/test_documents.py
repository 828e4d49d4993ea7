"""Unit tests of instance-document validation, rendering and the XML mapping."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_registry import xmlcodec
from aimp_registry.documents import InvalidInstance, parse_registration
from aimp_registry.model import Status

NOW = 1_700_000_000_000


def test_parse_aimp_client_document(make_body: Any) -> None:
    """aimp_core's instance_document parses into app, id, lease and metadata."""
    reg = parse_registration(
        make_body("iris", "iris-1", lease_s=15, metadata={"aimp.revision": "r2"}),
        "IRIS",
        now_ms=NOW,
    )
    assert (reg.app, reg.instance_id, reg.status) == ("IRIS", "iris-1", Status.UP)
    assert (reg.lease_duration_s, reg.renewal_interval_s) == (15, 30)
    assert reg.metadata == {"aimp.revision": "r2"}
    assert reg.document["dataCenterInfo"]["name"] == "MyOwn"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda i: i.pop("app"), "instance.app"),
        (lambda i: i.pop("ipAddr"), "instance.ipAddr"),
        (lambda i: i.pop("hostName"), "instance.hostName"),
        (lambda i: i.__setitem__("port", {"$": "eighty", "@enabled": "true"}), "instance.port"),
        (lambda i: i.__setitem__("port", {"$": 70000}), "instance.port"),
        (lambda i: i.__setitem__("status", "HEALTHY"), "instance.status"),
        (lambda i: i.__setitem__("app", "OTHER"), "instance.app"),
        (lambda i: i.__setitem__("metadata", {"bad key": "x"}), "instance.metadata"),
        (lambda i: i.__setitem__("metadata", {"k": {"nested": 1}}), "instance.metadata.k"),
        (lambda i: i.pop("dataCenterInfo"), "instance.dataCenterInfo"),
        (lambda i: i.__setitem__("leaseInfo", {"durationInSecs": "soon"}), "durationInSecs"),
        (lambda i: i.__setitem__("lastDirtyTimestamp", "yesterday"), "lastDirtyTimestamp"),
    ],
)
def test_invalid_registrations_name_the_field(make_body: Any, mutate: Any, field: str) -> None:
    """Each kind of bad input is rejected with a 400 whose detail names the field."""
    doc = copy.deepcopy(make_body())
    mutate(doc["instance"])
    with pytest.raises(InvalidInstance) as err:
        parse_registration(doc, "iris", now_ms=NOW)
    assert err.value.status == 400
    assert field in err.value.detail


@pytest.mark.parametrize("body", [None, [], {"application": {}}, {"instance": "x"}])
def test_body_must_wrap_an_instance(body: Any) -> None:
    """Anything but {"instance": {...}} is rejected."""
    with pytest.raises(InvalidInstance, match="instance"):
        parse_registration(body, "iris", now_ms=NOW)


def test_instance_id_falls_back_to_host_name(make_body: Any) -> None:
    """Like Eureka, an instance without instanceId is identified by its hostName."""
    doc = make_body()
    del doc["instance"]["instanceId"]
    assert parse_registration(doc, "iris", now_ms=NOW).instance_id == "127.0.0.1"


def test_port_accepts_numeric_strings_and_plain_numbers(make_body: Any) -> None:
    """Port "8081" (XML text) and bare 8082 both parse; enabled defaults to true."""
    doc = make_body()
    doc["instance"]["port"] = {"$": "8081", "@enabled": "true"}
    assert parse_registration(doc, "iris", now_ms=NOW).document["port"]["$"] == 8081
    doc["instance"]["port"] = 8082
    assert parse_registration(doc, "iris", now_ms=NOW).document["port"] == {
        "$": 8082,
        "@enabled": "true",
    }


def test_unknown_fields_are_dropped(make_body: Any) -> None:
    """Fields Eureka's InstanceInfo does not know are not stored (nor echoed to readers)."""
    doc = make_body()
    doc["instance"]["<script>"] = "x"
    assert "<script>" not in parse_registration(doc, "iris", now_ms=NOW).document


def test_xml_registration_parses_like_json(make_body: Any) -> None:
    """An XML <instance> gives the same registration as its JSON twin."""
    json_doc = make_body(metadata={"aimp.zone": "a"})
    xml_doc = xmlcodec.loads(xmlcodec.dumps(json_doc))
    from_json = parse_registration(json_doc, "iris", now_ms=NOW)
    from_xml = parse_registration(xml_doc, "iris", now_ms=NOW)
    assert from_xml == from_json


def test_xml_rejects_entities() -> None:
    """XML with a DTD or entity declarations (billion laughs) is refused."""
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><instance>&a;</instance>'
    with pytest.raises(xmlcodec.XmlError):
        xmlcodec.loads(bomb)


def test_xml_shape_of_port_and_metadata() -> None:
    """ "$" and "@x" keys become text and attributes; empty metadata keeps Eureka's class."""
    xml = xmlcodec.dumps(
        {
            "instance": {
                "overriddenStatus": "UNKNOWN",
                "port": {"$": 8080, "@enabled": "true"},
                "metadata": {"@class": "java.util.Collections$EmptyMap"},
            }
        }
    )
    assert xml == (
        b"<instance><overriddenstatus>UNKNOWN</overriddenstatus>"
        b'<port enabled="true">8080</port>'
        b'<metadata class="java.util.Collections$EmptyMap" /></instance>'
    )


names = st.from_regex(r"[a-z][a-zA-Z0-9_.]{0,8}", fullmatch=True).filter(
    lambda n: n != "overriddenStatus"
)
texts = (
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1)
    .map(str.strip)
    .filter(bool)
)
trees: st.SearchStrategy[Any] = st.recursive(
    texts,
    lambda children: st.dictionaries(
        names, children | st.lists(children, min_size=2, max_size=3), min_size=1, max_size=4
    ),
    max_leaves=12,
)


@given(st.dictionaries(names, trees, min_size=1, max_size=1))
def test_xml_round_trip(document: dict[str, Any]) -> None:
    """Any JSON-shaped tree of text survives dumps then loads unchanged."""
    assert xmlcodec.loads(xmlcodec.dumps(document)) == document
