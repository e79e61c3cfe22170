"""``container prune``: remove every container that is not running.

podman's candidates: containers in state created, configured, exited or
stopped (running, paused and initialised ones stay, as do those being
stopped or removed). Filters (``--filter``, podman's keys):

- ``until=T`` — created before T (a timestamp, a date, Unix seconds, or a
  duration like ``10m`` meaning "that long ago"; see ``logs.parse_time_filter``);
- ``label=KEY`` / ``label=KEY=VALUE`` — has the label (with that value);
- ``label!=KEY`` / ``label!=KEY=VALUE`` — does not.

Several values of one key must all hold, as in podman. Each candidate is
removed as ``skiff rm`` would (its anonymous volumes too); a failure is
reported and the others are still removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from skiff.errors import SkiffError, UsageError
from skiff.runtime import lifecycle
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status

PRUNABLE = (Status.CREATED, Status.CONFIGURED, Status.EXITED, Status.STOPPED)
FILTER_KEYS = ("until", "label", "label!")


@dataclass(frozen=True)
class PruneFilter:
    until_ns: int | None = None
    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()

    def matches(self, container: Container) -> bool:
        if self.until_ns is not None and container.created * 1e9 >= self.until_ns:
            return False
        labels = container.config.labels
        if not all(_label_matches(labels, spec) for spec in self.labels):
            return False
        return not any(_label_matches(labels, spec) for spec in self.not_labels)


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    errors: list[tuple[str, SkiffError]] = field(default_factory=list)


def _label_matches(labels: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def parse_filters(specs: Sequence[str]) -> PruneFilter:
    """``KEY=VALUE`` strings → a PruneFilter (podman's errors for bad ones)."""
    from skiff.runtime.logs import parse_time_filter

    until: int | None = None
    labels: list[str] = []
    not_labels: list[str] = []
    for spec in specs:
        if spec.startswith("label!="):
            key, value = "label!", spec[len("label!=") :]
        else:
            key, sep, value = spec.partition("=")
            if not sep:
                raise UsageError(f"invalid filter {spec!r}", "expected KEY=VALUE")
        if key == "until":
            until = parse_time_filter(value)
        elif key == "label":
            labels.append(value)
        elif key == "label!":
            not_labels.append(value)
        else:
            raise UsageError(f"{key} is an invalid filter", "valid: until, label, label!")
    return PruneFilter(until, tuple(labels), tuple(not_labels))


def prune_candidates(rt: Runtime, flt: PruneFilter) -> list[Container]:
    """The containers ``prune`` would remove, oldest first."""
    out = []
    for record in rt.records.all():
        with rt.lock(record.id):
            try:
                container = lifecycle.sync(rt, record)
            except SkiffError:
                continue
        if container.state.status in PRUNABLE and flt.matches(container):
            out.append(container)
    return out


def prune_containers(rt: Runtime, flt: PruneFilter | None = None) -> PruneReport:
    report = PruneReport()
    for container in prune_candidates(rt, flt or PruneFilter()):
        try:
            current = rt.records.find(container.id)
            if current is None:
                continue
            with rt.lock(current.id):
                current = lifecycle.sync(rt, current)
                if current.state.status not in PRUNABLE:
                    continue  # started since we looked
                lifecycle.remove(rt, current, volumes=True)
            report.removed.append(current.id)
        except SkiffError as exc:
            report.errors.append((container.id, exc))
    return report
