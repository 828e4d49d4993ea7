"""Eureka instance documents: validate what clients send, render what they read.

Documents use Eureka's JSON conventions (``"port": {"$": 8080, "@enabled": "true"}``);
:mod:`aimp_registry.xmlcodec` maps the same dicts to and from Eureka's XML. Only
the fields Eureka's ``InstanceInfo`` knows are kept, as Eureka itself does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from aimp_core.errors import BadRequest
from aimp_registry.model import STATUS_NAMES, InstanceRecord, Registration, Status, parse_status

DEFAULT_DATA_CENTER_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
AMAZON_DATA_CENTER_CLASS = "com.netflix.appinfo.AmazonInfo"
#: What Eureka writes for empty metadata, for old clients that expect a typed map.
EMPTY_METADATA = {"@class": "java.util.Collections$EmptyMap"}
#: Eureka's defaults when a registration names no port.
DEFAULT_PORT, DEFAULT_SECURE_PORT = 7001, 7002
#: Metadata keys become XML element names for XML readers, so they must be valid ones.
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
#: Optional string fields, in the order Eureka writes them (before and after the lease).
_HEAD_STRINGS = ("sid",)
_TAIL_STRINGS = (
    "appGroupName",
    "homePageUrl",
    "statusPageUrl",
    "healthCheckUrl",
    "secureHealthCheckUrl",
    "vipAddress",
    "secureVipAddress",
)


class InvalidInstance(BadRequest):
    """A registration or update the registry cannot accept; the detail names the field."""


# -- reading what clients send ------------------------------------------------------


def _scalar_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidInstance(f"{where} must be a string, not {type(value).__name__}")


def _text(raw: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = raw.get(name)
    text = None if value is None else _scalar_text(value, f"instance.{name}").strip()
    if required and not text:
        raise InvalidInstance(f"instance.{name} is missing; every registration must carry it")
    return text or None


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidInstance(f"{where} must be a whole number, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidInstance(f"{where} must be a whole number, got {str(value)[:40]!r}")


def _flag(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise InvalidInstance(f"{where} must be true or false, got {str(value)[:40]!r}")


def _port(raw: Mapping[str, Any], name: str, default: int, enabled: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {"$": default, "@enabled": enabled}
    if isinstance(value, dict):
        number = value.get("$", default)
        enabled = (
            _flag(value["@enabled"], f"instance.{name}.@enabled")
            if ("@enabled" in value)
            else enabled
        )
    else:
        number = value
    port = _integer(number, f"instance.{name}")
    if not 0 <= port <= 65535:
        raise InvalidInstance(f"instance.{name} must be between 0 and 65535, got {port}")
    return {"$": port, "@enabled": enabled}


def _data_center(raw: Mapping[str, Any]) -> dict[str, Any]:
    value = raw.get("dataCenterInfo")
    if not isinstance(value, dict):
        raise InvalidInstance(
            'instance.dataCenterInfo is missing; send {"@class": '
            f'"{DEFAULT_DATA_CENTER_CLASS}", "name": "MyOwn"}}'
        )
    name = _text(value, "name")
    if not name:
        raise InvalidInstance("instance.dataCenterInfo.name is missing; use MyOwn or Amazon")
    default_class = AMAZON_DATA_CENTER_CLASS if name == "Amazon" else DEFAULT_DATA_CENTER_CLASS
    out: dict[str, Any] = {"@class": str(value.get("@class") or default_class), "name": name}
    if isinstance(value.get("metadata"), dict):
        out["metadata"] = parse_metadata(value["metadata"], "instance.dataCenterInfo.metadata")
    return out


def parse_metadata(value: Any, where: str = "instance.metadata") -> dict[str, str]:
    """String-to-string metadata; ``@class`` (Eureka's type marker) is dropped."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise InvalidInstance(f"{where} must be an object of string values")
    out: dict[str, str] = {}
    for key, item in value.items():
        if key == "@class":
            continue
        if not _XML_NAME.match(str(key)):
            raise InvalidInstance(
                f"{where} key {str(key)[:60]!r} is not a valid name: start with a letter or "
                "'_' and use only letters, digits, '.', '_' and '-'"
            )
        out[str(key)] = "" if item is None else _scalar_text(item, f"{where}.{key}")
    return out


def _status(raw: Mapping[str, Any], names: Iterable[str], default: Status) -> Status:
    for name in names:
        value = raw.get(name)
        if value is None or value == "":
            continue
        status = parse_status(_scalar_text(value, f"instance.{name}"))
        if status is None:
            raise InvalidInstance(f"instance.{name} must be one of {STATUS_NAMES}, got {value!r}")
        return status
    return default


def _lease_seconds(lease: Mapping[str, Any], name: str) -> int | None:
    if lease.get(name) is None:
        return None
    seconds = _integer(lease[name], f"instance.leaseInfo.{name}")
    return seconds if seconds > 0 else None  # Eureka: zero or less means "use the default"


def parse_registration(body: Any, path_app: str, *, now_ms: int) -> Registration:
    """Validate a registration body (``{"instance": {...}}``) for the app in the path."""
    raw = body.get("instance") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        raise InvalidInstance(
            'the body must be {"instance": {...}} in JSON or <instance>...</instance> in XML'
        )
    app = (_text(raw, "app", required=True) or "").upper()
    if app != path_app.upper():
        raise InvalidInstance(
            f"instance.app is {app!r} but the path names {path_app.upper()!r}; they must match"
        )
    host = _text(raw, "hostName", required=True)
    instance_id = _text(raw, "instanceId") or host
    doc: dict[str, Any] = {"instanceId": instance_id, "hostName": host, "app": app}
    doc["ipAddr"] = _text(raw, "ipAddr", required=True)
    doc.update({k: v for k in _HEAD_STRINGS if (v := _text(raw, k))})
    doc["port"] = _port(raw, "port", DEFAULT_PORT, "true")
    doc["securePort"] = _port(raw, "securePort", DEFAULT_SECURE_PORT, "false")
    country = raw.get("countryId")
    doc["countryId"] = 1 if country in (None, "") else _integer(country, "instance.countryId")
    doc["dataCenterInfo"] = _data_center(raw)
    doc.update({k: v for k in _TAIL_STRINGS if (v := _text(raw, k)) is not None})
    coordinating = raw.get("isCoordinatingDiscoveryServer")
    doc["isCoordinatingDiscoveryServer"] = (
        "false"
        if coordinating in (None, "")
        else _flag(coordinating, "instance.isCoordinatingDiscoveryServer")
    )
    if asg := _text(raw, "asgName"):
        doc["asgName"] = asg
    lease = raw.get("leaseInfo") or {}
    if not isinstance(lease, dict):
        raise InvalidInstance("instance.leaseInfo must be an object")
    dirty = raw.get("lastDirtyTimestamp")
    return Registration(
        app=app,
        instance_id=str(instance_id),
        document=doc,
        metadata=parse_metadata(raw.get("metadata")),
        status=_status(raw, ("status",), Status.UP),
        overridden_status=_status(raw, ("overriddenStatus", "overriddenstatus"), Status.UNKNOWN),
        last_dirty_ms=now_ms
        if dirty in (None, "")
        else _integer(dirty, "instance.lastDirtyTimestamp"),
        lease_duration_s=_lease_seconds(lease, "durationInSecs"),
        renewal_interval_s=_lease_seconds(lease, "renewalIntervalInSecs"),
    )


# -- writing what clients read ----------------------------------------------------------


def render_instance(rec: InstanceRecord) -> dict[str, Any]:
    """The instance in Eureka's JSON shape and field order (``{"instance": ...}``'s value)."""
    doc = rec.document
    out: dict[str, Any] = {
        k: doc[k] for k in ("instanceId", "hostName", "app", "ipAddr", "sid") if k in doc
    }
    out["status"] = rec.status.value
    out["overriddenStatus"] = rec.overridden_status.value
    out["port"] = dict(doc["port"])
    out["securePort"] = dict(doc["securePort"])
    out["countryId"] = doc["countryId"]
    out["dataCenterInfo"] = dict(doc["dataCenterInfo"])
    out["leaseInfo"] = rec.lease.as_document()
    out["metadata"] = dict(rec.metadata) if rec.metadata else dict(EMPTY_METADATA)
    out.update({k: doc[k] for k in _TAIL_STRINGS if k in doc})
    out["isCoordinatingDiscoveryServer"] = doc["isCoordinatingDiscoveryServer"]
    out["lastUpdatedTimestamp"] = str(rec.last_updated_ms)
    out["lastDirtyTimestamp"] = str(rec.last_dirty_ms)
    out["actionType"] = rec.action_type.value
    if "asgName" in doc:
        out["asgName"] = doc["asgName"]
    return out


def render_application(name: str, instances: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{"name": APP, "instance": [...]}`` from rendered instances."""
    return {"name": name, "instance": list(instances)}


def render_applications(
    version: int, hashcode: str, apps: Iterable[tuple[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Eureka's ``applications`` body; apps are (name, rendered instances) pairs."""
    return {
        "applications": {
            "versions__delta": str(version),
            "apps__hashcode": hashcode,
            "application": [render_application(name, items) for name, items in apps],
        }
    }
