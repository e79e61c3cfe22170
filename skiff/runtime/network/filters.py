"""``--filter`` for ``network ls`` and ``network prune``, with podman's keys and rules.

Keys: ``name`` (regular expression, searched), ``id`` (prefix), ``driver``,
``label`` (``KEY`` or ``KEY=VALUE``), ``label!`` (negated), ``dangling``
(``true``: no container attached), ``until`` (created before: an RFC 3339
time, a Unix timestamp, or a Go duration such as ``10m`` meaning "that long
ago"). Values of one key are alternatives (OR); different keys must all
match (AND) — except ``label``, where every value must match, as podman has it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from skiff.errors import UsageError
from skiff.runtime.network.model import Network, parse_created

LS_KEYS = ("name", "id", "driver", "label", "label!", "dangling", "until")
PRUNE_KEYS = ("label", "label!", "until")

_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(value: str, now: float | None = None) -> float:
    """podman's ``until`` value as seconds since the epoch."""
    text = value.strip()
    current = time.time() if now is None else now
    if _DURATION_RE.fullmatch(text):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
        return current - seconds
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        return parse_created(text).timestamp()
    except ValueError:
        pass
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise UsageError(
        f"invalid until value {value!r}",
        "use a timestamp (2024-01-02T15:04:05Z, Unix seconds) or a duration (10m, 2h)",
    )


def _label_matches(network: Network, spec: str) -> bool:
    key, eq, value = spec.partition("=")
    if key not in network.labels:
        return False
    return not eq or network.labels[key] == value


@dataclass
class NetworkFilter:
    """Parsed filters; ``matches(network, in_use)``."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def matches(self, network: Network, in_use: Callable[[Network], bool]) -> bool:
        for key, values in self.values.items():
            if not self._key_matches(key, values, network, in_use):
                return False
        return True

    def _key_matches(
        self, key: str, values: list[str], network: Network, in_use: Callable[[Network], bool]
    ) -> bool:
        if key == "name":
            return any(re.search(v, network.name) for v in values)
        if key == "id":
            return any(network.id.startswith(v) for v in values)
        if key == "driver":
            return network.driver in values
        if key == "label":
            return all(_label_matches(network, v) for v in values)
        if key == "label!":
            return not any(_label_matches(network, v) for v in values)
        if key == "dangling":
            wanted = values[-1].lower() in ("true", "1")
            return (not in_use(network)) == wanted
        if key == "until":
            created = parse_created(network.created).timestamp() if network.created else 0.0
            return any(created < parse_until(v) for v in values)
        return False


def parse_filters(specs: Sequence[str], allowed: Sequence[str] = LS_KEYS) -> NetworkFilter:
    """``KEY=VALUE`` strings → a filter; unknown keys and bad values are usage errors."""
    result = NetworkFilter()
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise UsageError(f'invalid filter "{spec}"', "write filters as KEY=VALUE")
        if key not in allowed:
            raise UsageError(f'invalid filter "{key}"', f"supported filters: {', '.join(allowed)}")
        if key == "name":
            try:
                re.compile(value)
            except re.error as exc:
                raise UsageError(f"invalid name filter {value!r}: {exc}") from None
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid dangling filter value {value!r}", "use true or false")
        if key == "until":
            parse_until(value)
        result.values.setdefault(key, []).append(value)
    return result
