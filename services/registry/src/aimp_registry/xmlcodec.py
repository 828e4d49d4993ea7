"""Eureka's XML, mapped to and from the JSON-shaped dicts the registry works with.

The mapping is the one Eureka's two codecs share: ``"@name"`` keys are XML
attributes, ``"$"`` is an element's text when it also has attributes, a list is
a repeated element. XML is parsed with defusedxml (no entities, no DTDs) and
written with the standard library.
"""

from __future__ import annotations

# Writing only: every parse goes through defusedxml.
import xml.etree.ElementTree as ET
from typing import Any

from defusedxml import ElementTree as SafeET  # type: ignore[import-untyped]
from defusedxml.common import DefusedXmlException  # type: ignore[import-untyped]

#: JSON names that Eureka spells differently in XML.
_XML_NAMES = {"overriddenStatus": "overriddenstatus"}


class XmlError(ValueError):
    """The body is not well-formed XML, or uses entities or a DTD."""


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("@"):
                element.set(key[1:], _text(item))
            elif key == "$":
                element.text = _text(item)
            else:
                _append(element, _XML_NAMES.get(str(key)) or str(key), item)
    elif value is not None:
        element.text = _text(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    for item in value if isinstance(value, list) else [value]:
        if item is not None:
            _fill(ET.SubElement(parent, tag), item)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dumps(document: dict[str, Any]) -> bytes:
    """XML bytes for a one-key dict such as ``{"applications": {...}}``."""
    ((tag, value),) = document.items()
    root = ET.Element(_XML_NAMES.get(tag, tag))
    _fill(root, value)
    xml: bytes = ET.tostring(root, encoding="utf-8")
    return xml


def _value(element: ET.Element) -> Any:
    children = list(element)
    text = (element.text or "").strip()
    if not children:
        if not element.attrib:
            return text
        return {**{f"@{k}": v for k, v in element.attrib.items()}, **({"$": text} if text else {})}
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        item = _value(child)
        if child.tag in out:
            existing = out[child.tag]
            out[child.tag] = [*existing, item] if isinstance(existing, list) else [existing, item]
        else:
            out[child.tag] = item
    return out


def loads(body: bytes) -> dict[str, Any]:
    """Parse XML into ``{root_tag: value}``; raises :class:`XmlError` on anything unsafe."""
    try:
        root = SafeET.fromstring(body)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise XmlError(str(exc)) from None
    return {str(root.tag): _value(root)}
