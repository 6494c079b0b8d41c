"""The client's `init_data.xml`: what the wrapper needs from it (lib/app_ipc.cpp writes it)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadSlot

INIT_DATA_FILE = "init_data.xml"
DEFAULT_CHECKPOINT_PERIOD = 60.0


@dataclass(frozen=True)
class InitData:
    project_dir: str = ""
    boinc_dir: str = ""
    wu_name: str = ""
    result_name: str = ""
    client_pid: int = 0
    wu_cpu_time: float = 0.0
    checkpoint_period: float = DEFAULT_CHECKPOINT_PERIOD
    fraction_done_start: float = 0.0
    fraction_done_end: float = 1.0
    ncpus: float = 1.0
    app_files: tuple[str, ...] = field(default_factory=tuple)

    def scaled_fraction(self, fraction: float) -> float:
        """The job's own fraction done mapped into the client's [start, end] range."""
        start, end = self.fraction_done_start, self.fraction_done_end
        if end <= start:
            start, end = 0.0, 1.0
        return start + fraction * (end - start)


def load_init_data(slot: Path) -> InitData | None:
    """Parses the slot's init_data.xml; None when there is none (standalone mode)."""
    path = slot / INIT_DATA_FILE
    if not path.exists():
        return None
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise BadSlot(f"{path}: cannot read the client's init data ({exc})") from exc
    return _from_element(root)


def _from_element(root: ET.Element) -> InitData:
    def text(tag: str) -> str:
        node = root.find(tag)
        return (node.text or "").strip() if node is not None else ""

    def number(tag: str, default: float) -> float:
        try:
            return float(text(tag))
        except ValueError:
            return default

    period = number("checkpoint_period", DEFAULT_CHECKPOINT_PERIOD)
    return InitData(
        project_dir=text("project_dir"),
        boinc_dir=text("boinc_dir"),
        wu_name=text("wu_name"),
        result_name=text("result_name"),
        client_pid=int(number("client_pid", 0)),
        wu_cpu_time=max(0.0, number("wu_cpu_time", 0.0)),
        checkpoint_period=period if period > 0 else DEFAULT_CHECKPOINT_PERIOD,
        fraction_done_start=number("fraction_done_start", 0.0),
        fraction_done_end=number("fraction_done_end", 1.0),
        ncpus=max(1.0, number("ncpus", 1.0)),
        app_files=tuple((n.text or "").strip() for n in root.findall("app_file")),
    )
