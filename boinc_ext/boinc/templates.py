"""Input and output templates (`templates/<app>_in`, `templates/<app>_out`).

Parsed once, validated strictly, then filled per workunit into the xml_doc text stock
BOINC's create_work writes (tools/process_input_template.cpp lays it out; the C++
scheduler later splices tags in after its exact newlines, so the layout matters).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lxml import etree

from boinc_ext.boinc.xmlutil import XmlError, escape_text, parse_xml

# Workunit parameters a template may set; they go to DB columns, not into xml_doc.
_FLOAT_PARAMS = ("rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound",
                 "rsc_bandwidth_bound")
_INT_PARAMS = ("batch", "delay_bound", "min_quorum", "target_nresults", "max_error_results",
               "max_total_results", "max_success_results", "size_class")
XML_DOC_LIMIT = 65535  # workunit.xml_doc is a 64 KB blob


class TemplateError(XmlError):
    """A template is malformed or inconsistent."""


@dataclass(frozen=True)
class WorkParams:
    """Resource bounds and replication limits of a workunit (stock create_work's defaults)."""

    rsc_fpops_est: float = 3600e9
    rsc_fpops_bound: float = 86400e9
    rsc_memory_bound: float = 5e8
    rsc_disk_bound: float = 1e9
    rsc_bandwidth_bound: float = 0.0
    batch: int = 0
    delay_bound: int = 7 * 86400
    min_quorum: int = 1
    target_nresults: int = 1
    max_error_results: int = 1
    max_total_results: int = 1
    max_success_results: int = 1
    size_class: int = -1

    def overridden(self, **values) -> "WorkParams":
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def checked(self, what: str) -> "WorkParams":
        """Raises limits as create_work does, then refuses inconsistent values."""
        params = replace(self, max_success_results=max(self.max_success_results, self.target_nresults),
                         max_total_results=max(self.max_total_results, self.target_nresults))
        for name in ("rsc_fpops_est", "rsc_fpops_bound", "rsc_disk_bound", "delay_bound", "min_quorum",
                     "target_nresults", "max_error_results", "max_total_results", "max_success_results"):
            if getattr(params, name) <= 0:
                raise TemplateError(f"{what}: {name} must be positive")
        if params.max_success_results > params.max_total_results:
            raise TemplateError(f"{what}: max_success_results exceeds max_total_results")
        if params.max_error_results > params.max_total_results:
            raise TemplateError(f"{what}: max_error_results exceeds max_total_results")
        if params.min_quorum > params.target_nresults:
            raise TemplateError(f"{what}: min_quorum exceeds target_nresults")
        return params


@dataclass(frozen=True)
class TemplateFileInfo:
    """One `<file_info>` of an input template."""

    extra_xml: tuple[str, ...] = ()          # elements copied verbatim (sticky, no_delete, ...)
    physical_name: str | None = None          # a constant file, already staged
    url: str | None = None                    # a remote file: url, md5 and nbytes all given
    md5_cksum: str | None = None
    nbytes: float | None = None
    gzip: bool = False

    @property
    def is_variable(self) -> bool:
        return self.physical_name is None and self.url is None


@dataclass(frozen=True)
class TemplateFileRef:
    open_name: str | None
    copy_file: bool
    extra_xml: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputTemplate:
    file_infos: tuple[TemplateFileInfo, ...]
    # The <workunit> body in order: ("file_ref", TemplateFileRef) or ("xml", text).
    workunit_items: tuple[tuple[str, object], ...]
    command_line: str | None
    params: dict = field(default_factory=dict)

    @property
    def n_variable_inputs(self) -> int:
        return sum(1 for f in self.file_infos if f.is_variable)

    @classmethod
    def parse(cls, text: str | bytes, what: str) -> "InputTemplate":
        root = parse_xml(text, what)
        if root.tag != "input_template":
            raise TemplateError(f"{what}: the root element must be <input_template>, not <{root.tag}>")
        file_infos = tuple(_parse_file_info(e, what) for e in root.findall("file_info"))
        workunits = root.findall("workunit")
        if len(workunits) != 1:
            raise TemplateError(f"{what}: needs exactly one <workunit>")
        items, command_line, params = _parse_workunit(workunits[0], what)
        n_refs = sum(1 for kind, _ in items if kind == "file_ref")
        if n_refs != len(file_infos):
            raise TemplateError(f"{what}: {len(file_infos)} <file_info> but {n_refs} <file_ref> in <workunit>")
        return cls(file_infos, items, command_line, params)

    @classmethod
    def load(cls, path: Path) -> "InputTemplate":
        return cls.parse(_read(path), str(path))


@dataclass(frozen=True)
class OutputTemplate:
    text: str
    n_outputs: int

    @classmethod
    def parse(cls, text: str | bytes, what: str) -> "OutputTemplate":
        root = parse_xml(text, what)
        if root.tag != "output_template":
            raise TemplateError(f"{what}: the root element must be <output_template>, not <{root.tag}>")
        if root.find("result") is None:
            raise TemplateError(f"{what}: no <result>")
        infos = root.findall("file_info")
        for info in infos:
            if info.find("name") is None:
                raise TemplateError(f"{what}: a <file_info> has no <name>")
            try:
                max_nbytes = float(info.findtext("max_nbytes") or 0)
            except ValueError:
                max_nbytes = 0
            if max_nbytes <= 0:
                raise TemplateError(f"{what}: every output <file_info> needs a positive <max_nbytes> "
                                    f"(clients treat a missing one as 0 and fail the job)")
        refs = root.findall("result/file_ref")
        if len(refs) != len(infos):
            raise TemplateError(f"{what}: {len(infos)} <file_info> but {len(refs)} <file_ref> in <result>")
        text = text.decode() if isinstance(text, bytes) else text
        return cls(text, len(infos))

    @classmethod
    def load(cls, path: Path) -> "OutputTemplate":
        return cls.parse(_read(path), str(path))


@dataclass(frozen=True)
class InputFile:
    """A staged input file as it goes into xml_doc."""

    name: str
    url: str
    md5: str
    nbytes: int


def render_workunit_xml(template: InputTemplate, variable_files: list[InputFile],
                        constant_files: dict[int, InputFile], command_line: str | None,
                        additional_xml: str | None) -> str:
    """The workunit.xml_doc text, laid out as stock create_work lays it out."""
    out: list[str] = []
    names: list[str] = []
    variable = iter(variable_files)
    for index, info in enumerate(template.file_infos):
        out.append("<file_info>\n")
        out.extend(f"{xml}\n" for xml in info.extra_xml)
        if info.url is not None:
            name = f"jf_{info.md5_cksum}"
            out.append(f"    <name>{name}</name>\n    <url>{escape_text(info.url)}</url>\n"
                       f"    <md5_cksum>{info.md5_cksum}</md5_cksum>\n    <nbytes>{info.nbytes:.0f}</nbytes>\n")
        else:
            f = constant_files[index] if info.physical_name else next(variable)
            name = f.name
            out.append(f"    <name>{escape_text(f.name)}</name>\n    <url>{escape_text(f.url)}</url>\n"
                       f"    <md5_cksum>{f.md5}</md5_cksum>\n    <nbytes>{f.nbytes}</nbytes>\n")
        out.append("</file_info>\n")
        names.append(name)
    out.append("<workunit>\n")
    if command_line is not None:
        out.append(f"<command_line>\n{escape_text(command_line)}\n</command_line>\n")
    refs = iter(names)
    for kind, item in template.workunit_items:
        if kind == "xml":
            out.append(f"{item}\n")
            continue
        ref: TemplateFileRef = item  # type: ignore[assignment]
        name = next(refs)
        out.append(f"<file_ref>\n    <file_name>{escape_text(name)}</file_name>\n")
        if ref.open_name:
            out.append(f"    <open_name>{escape_text(ref.open_name)}</open_name>\n")
        if ref.copy_file:
            out.append("    <copy_file/>\n")
            if not ref.open_name:
                out.append(f"    <open_name>{escape_text(name)}</open_name>\n")
        out.extend(f"{xml}\n" for xml in ref.extra_xml)
        out.append("</file_ref>\n")
    if additional_xml:
        out.append(f"{additional_xml}\n")
    out.append("</workunit>")
    return "".join(out)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TemplateError(f"template {path}: {exc.strerror}") from None


def _verbatim(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode", with_tail=False).strip()


def _parse_file_info(element: etree._Element, what: str) -> TemplateFileInfo:
    extra, values = [], {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag in ("physical_name", "url", "md5_cksum", "nbytes", "gzip"):
            values[child.tag] = (child.text or "").strip()
        elif child.tag != "number":
            extra.append(_verbatim(child))
    info = TemplateFileInfo(extra_xml=tuple(extra), physical_name=values.get("physical_name") or None,
                            url=values.get("url") or None, md5_cksum=values.get("md5_cksum") or None,
                            gzip="gzip" in values and values["gzip"] != "0")
    if info.gzip:
        raise TemplateError(f"{what}: <gzip/> inputs are not supported (stage the file uncompressed)")
    if info.url is not None:
        if not info.md5_cksum or not values.get("nbytes"):
            raise TemplateError(f"{what}: a remote <file_info> needs <url>, <md5_cksum> and <nbytes>")
        try:
            info = replace(info, nbytes=float(values["nbytes"]))
        except ValueError:
            raise TemplateError(f"{what}: <nbytes> must be a number") from None
    return info


def _parse_workunit(element: etree._Element, what: str):
    items: list[tuple[str, object]] = []
    command_line = None
    params: dict = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        text = (child.text or "").strip()
        if child.tag == "file_ref":
            items.append(("file_ref", _parse_file_ref(child, what)))
        elif child.tag == "command_line":
            command_line = text
        elif child.tag in _FLOAT_PARAMS or child.tag in _INT_PARAMS:
            params[child.tag] = _number(child.tag, text, what)
        else:
            items.append(("xml", _verbatim(child)))
    return tuple(items), command_line, params


def _parse_file_ref(element: etree._Element, what: str) -> TemplateFileRef:
    open_name = (element.findtext("open_name") or "").strip() or None
    copy_file = element.find("copy_file") is not None
    if not open_name and not copy_file:
        raise TemplateError(f"{what}: a <file_ref> needs <open_name> or <copy_file/>")
    extra = tuple(_verbatim(c) for c in element if isinstance(c.tag, str)
                  and c.tag not in ("open_name", "copy_file", "file_name", "file_number"))
    return TemplateFileRef(open_name, copy_file, extra)


def _number(name: str, text: str, what: str):
    try:
        return float(text) if name in _FLOAT_PARAMS else int(text)
    except ValueError:
        raise TemplateError(f"{what}: <{name}> must be a number, not {text!r}") from None
