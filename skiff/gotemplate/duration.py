"""Go's ``time.Duration.String()``: how podman prints CPU times and ages.

A module of its own (not in ``gofmt``) because ``top`` and ``stats`` need
only this, and every ``ps``/``top`` start would otherwise load Go's whole
``fmt``.
"""

from __future__ import annotations


def _fraction(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if not part:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}." + f"{part:0{width}d}".rstrip("0")


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` of ``ns`` nanoseconds: ``1m41s``,
    ``2.338399627s``, ``177.986355ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1000), ("ns", 1)):
            if u >= size:
                return sign + _fraction(u, size) + unit
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _fraction(rest, 1_000_000_000) + "s"
