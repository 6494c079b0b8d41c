"""Safe XML parsing and small element helpers shared by every BOINC-side module.

Nothing a user or volunteer sends is trusted: the parser never expands entities, never
loads a DTD and never touches the network.
"""
from __future__ import annotations

from pathlib import Path

from lxml import etree


class XmlError(ValueError):
    """A document is not well-formed or lacks what its reader needs."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        remove_comments=True, remove_pis=True,
    )


def parse_xml(data: bytes | str, what: str) -> etree._Element:
    """Parses `data` and returns its root; `what` names the document in errors."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"{what}: malformed XML: {exc}") from None
    if root is None:
        raise XmlError(f"{what}: empty document")
    return root


def parse_xml_file(path: str | Path, what: str | None = None) -> etree._Element:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XmlError(f"{what or path}: cannot read {path}: {exc.strerror}") from None
    return parse_xml(data, what or str(path))


def parse_fragment(text: str, what: str) -> list[etree._Element]:
    """Parses a sequence of sibling elements (BOINC stores such fragments in blobs)."""
    root = parse_xml(f"<fragment>{text}</fragment>", what)
    return list(root)


def child_text(element: etree._Element, tag: str, default: str | None = None) -> str | None:
    """The stripped text of the first child `tag`, or `default` when it is absent."""
    child = element.find(tag)
    if child is None:
        return default
    return (child.text or "").strip()


def flag(element: etree._Element, tag: str) -> bool:
    """BOINC's boolean elements: `<x/>` or `<x>1</x>` is true, `<x>0</x>` false."""
    child = element.find(tag)
    if child is None:
        return False
    text = (child.text or "").strip()
    return text not in ("0", "false")


def serialize(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode")


def escape_text(text: str) -> str:
    """Escapes character data for hand-laid-out documents that must match BOINC's layout."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
