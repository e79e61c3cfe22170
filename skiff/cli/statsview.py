"""What ``skiff stats`` prints: podman's stats output, to the character.

The default table, ``--format`` Go templates with podman's fields and
methods (``{{.CPUPerc}}``, ``{{.MemUsage}}`` ...), and ``--format json``,
which for ``stats`` is podman's own short list (``id``, ``cpu_percent``, ...
indented by one space), not the records. The records themselves (podman's
``ContainerStats``) come from ``skiff.runtime.stats.stats_report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skiff.gotemplate.duration import go_duration

STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ID", "ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET IO"),
    ("BlockIO", "BLOCK IO"),
    ("PIDS", "PIDS"),
    ("UpTime", "CPU TIME"),
    ("AVGCPU", "AVG CPU %"),
)
"""podman stats's default table: (template field, header)."""

STATS_HEADERS: dict[str, str] = {
    "ID": "ID",
    "UpTime": "CPU TIME",
    "CPUPerc": "CPU %",
    "AVGCPU": "Avg CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemUsageBytes": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET IO",
    "BlockIO": "BLOCK IO",
    "PIDS": "PIDS",
}
"""Headers of ``table`` formats where podman names a field itself (upper-cased when printed)."""


class GoDuration:
    """A ``time.Duration``: prints as Go does (``177.986355ms``), encodes as nanoseconds."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __str__(self) -> str:
        return go_duration(self.ns)

    def to_json(self) -> int:
        return self.ns


def _percent_text(value: float) -> str:
    return f"{value:.2f}%"


def _human_size(size: int) -> str:
    """go-units HumanSize as stats prints it: ``344.1kB`` (``podman images`` adds a space)."""
    from skiff.gotemplate.units import human_size

    return human_size(size).replace(" ", "")


def _human_pair(a: int, b: int) -> str:
    return f"{_human_size(a)} / {_human_size(b)}"


class StatsRow:
    """One container as podman's ``stats --format`` templates see it.

    The fields of ``define.ContainerStats`` (``{{.CPU}}``, ``{{.CPUNano}}``,
    ``{{.NetInput}}`` ...) and podman's methods (``{{.ID}}``,
    ``{{.CPUPerc}}``, ``{{.MemUsage}}``, ``{{.NetIO}}`` ...). As in Go, a
    method shadows the embedded field of the same name (``MemUsage``,
    ``MemPerc`` are text); the raw record is ``{{.ContainerStats}}``.
    Fields keep podman's names; methods are snake_case (``cpu_perc``), which
    the template engine finds for ``{{.CPUPerc}}``.
    """

    def __init__(self, record: Mapping[str, Any], no_trunc: bool = False) -> None:
        self.ContainerStats = dict(record)
        self.AvgCPU: float = record["AvgCPU"]
        self.ContainerID: str = record["ContainerID"]
        self.Name: str = record["Name"]
        self.PerCPU: list[int] = list(record["PerCPU"])
        self.CPU: float = record["CPU"]
        self.CPUNano: int = record["CPUNano"]
        self.CPUSystemNano: int = record["CPUSystemNano"]
        self.SystemNano: int = record["SystemNano"]
        self.MemLimit: int = record["MemLimit"]
        self.NetInput: int = record["NetInput"]
        self.NetOutput: int = record["NetOutput"]
        self.BlockInput: int = record["BlockInput"]
        self.BlockOutput: int = record["BlockOutput"]
        self.PIDs: int = record["PIDs"]
        self.UpTime = GoDuration(record["UpTime"])
        self.Duration: int = record["Duration"]
        self._no_trunc = no_trunc

    def id(self) -> str:
        return self.ContainerID if self._no_trunc else self.ContainerID[:12]

    def cpu_perc(self) -> str:
        return _percent_text(self.CPU)

    def avgcpu(self) -> str:
        return _percent_text(self.AvgCPU)

    def up(self) -> str:
        return str(self.UpTime)

    def mem_perc(self) -> str:
        return _percent_text(self.ContainerStats["MemPerc"])

    def net_io(self) -> str:
        return _human_pair(self.NetInput, self.NetOutput)

    def block_io(self) -> str:
        return _human_pair(self.BlockInput, self.BlockOutput)

    def pids(self) -> str:
        return str(self.PIDs)

    def mem_usage(self) -> str:
        return _human_pair(self.ContainerStats["MemUsage"], self.MemLimit)

    def mem_usage_bytes(self) -> str:
        from skiff.gotemplate.units import bytes_size

        return f"{bytes_size(self.ContainerStats['MemUsage'])} / {bytes_size(self.MemLimit)}"

    def to_json(self) -> dict[str, Any]:
        """``{{json .}}`` inside a larger template: the record, as Go marshals it."""
        return self.ContainerStats

    def json_summary(self) -> dict[str, str]:
        """podman's ``stats --format json`` entry for this container."""
        return {
            "id": self.id(),
            "name": self.Name,
            "cpu_time": self.up(),
            "cpu_percent": self.cpu_perc(),
            "avg_cpu": self.avgcpu(),
            "mem_usage": self.mem_usage(),
            "mem_percent": self.mem_perc(),
            "net_io": self.net_io(),
            "block_io": self.block_io(),
            "pids": self.pids(),
        }


def format_stats(
    report: Sequence[Mapping[str, Any]],
    fmt: str | None,
    *,
    no_trunc: bool = False,
    noheading: bool = False,
) -> str:
    """The text ``podman stats`` prints for one report (``fmt``: ``--format`` or None).

    Raises UsageError for a template that does not parse or names an
    unknown field.
    """
    from skiff.cli.output import format_items, is_json

    rows = [StatsRow(r, no_trunc) for r in report]
    if is_json(fmt):
        from skiff.gotemplate.gojson import encode

        return encode([r.json_summary() for r in rows], escape_html=True, indent=" ") + "\n"
    return format_items(
        fmt, rows, default_columns=STATS_COLUMNS, headers=STATS_HEADERS, noheading=noheading
    )
