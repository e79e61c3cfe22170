"""``--filter`` for ``volume ls`` and ``volume prune``.

Keys (podman's): ``name`` (regular expression, searched), ``driver``,
``scope``, ``label`` (``KEY`` or ``KEY=VALUE``), ``label!`` (none of these
labels), ``opt`` (a driver option ``KEY`` or ``KEY=VALUE``), ``dangling``
(``true``: no container uses it), ``until`` (created before a time or that
long ago). Values of one key are alternatives, except ``label``, whose
values must all match; different keys must all match. podman 4.3 ORs
different keys too, a bug fixed in later podman (containers/podman#26786),
whose behaviour skiff has.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from skiff.errors import UsageError
from skiff.runtime.volumes.model import SCOPE_LOCAL, Volume

KEYS = ("name", "driver", "scope", "label", "label!", "opt", "dangling", "until")


def _pair_matches(mapping: Mapping[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    if key not in mapping:
        return False
    return not eq or mapping[key] == value


@dataclass
class VolumeFilter:
    """Parsed filters; ``matches(volume, in_use)``."""

    values: dict[str, list[str]] = field(default_factory=dict)
    until: list[float] = field(default_factory=list)

    def matches(self, volume: Volume, in_use: Callable[[Volume], bool]) -> bool:
        return all(
            self._matches(key, values, volume, in_use) for key, values in self.values.items()
        )

    def _matches(
        self, key: str, values: list[str], volume: Volume, in_use: Callable[[Volume], bool]
    ) -> bool:
        if key == "name":
            return any(re.search(v, volume.name) for v in values)
        if key == "driver":
            return volume.driver in values
        if key == "scope":
            return SCOPE_LOCAL in values
        if key == "label":
            return all(_pair_matches(volume.labels, v) for v in values)
        if key == "label!":
            return not any(_pair_matches(volume.labels, v) for v in values)
        if key == "opt":
            return any(_pair_matches(volume.options, v) for v in values)
        if key == "dangling":
            wanted = values[-1].lower() == "true"
            return (not in_use(volume)) == wanted
        if key == "until":
            return any(volume.created_ns / 1e9 < t for t in self.until)
        return False


def parse_filters(specs: Sequence[str]) -> VolumeFilter:
    """``KEY=VALUE`` strings → a filter; podman's errors for bad ones."""
    from skiff.runtime.network.filters import parse_until

    result = VolumeFilter()
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise UsageError(
                f"filter input must be in the form of filter=value: {spec} is invalid",
                f"supported filters: {', '.join(KEYS)}",
            )
        if key not in KEYS:
            raise UsageError(
                f'"{key}" is an invalid volume filter', f"supported filters: {', '.join(KEYS)}"
            )
        if key == "name":
            try:
                re.compile(value)
            except re.error as exc:
                raise UsageError(f"error parsing regexp: {exc}: `{value}`") from None
        if key == "dangling" and value.lower() not in ("true", "false"):
            raise UsageError(
                f'"{value}" is not a valid value for the "dangling" filter - must be true or false'
            )
        if key == "until":
            try:
                result.until.append(parse_until(value))
            except UsageError:
                raise UsageError(
                    f'failed to parse value as time or duration: "{value}"',
                    "use a timestamp (2024-01-02T15:04:05Z, Unix seconds) or a duration (10m, 2h)",
                ) from None
        result.values.setdefault(key, []).append(value)
    return result
