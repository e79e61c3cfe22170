"""docker/go-units: the human sizes and durations podman prints.

``podman images`` shows ``1.99 MB`` (HumanSizeWithPrecision(size, 3):
decimal units, three significant digits through ``%.3g`` — so 999999 bytes
is ``1e+03 kB``, as podman prints it), ``podman ps`` shows ``Up 2 hours`` and
``5 minutes ago`` (HumanDuration). Reproducing them is what makes a script
written against podman's output work against skiff's.
"""

from __future__ import annotations

from skiff.gotemplate.gofmt import format_float

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _size_and_unit(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size_with_precision(size: float, precision: int) -> str:
    """go-units HumanSizeWithPrecision: ``"%.*g %s"`` over decimal units."""
    value, unit = _size_and_unit(float(size), 1000.0, _DECIMAL)
    return f"{format_float(value, 'g', precision)} {unit}"


def human_size(size: float) -> str:
    """go-units HumanSize: four significant digits (``1.988 MB``)."""
    return human_size_with_precision(size, 4)


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, ``"%.4g%s"`` (``1.896MiB``)."""
    value, unit = _size_and_unit(float(size), 1024.0, _BINARY)
    return f"{format_float(value, 'g', 4)}{unit}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: ``Less than a second``, ``About a minute``, ``3 days``."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_duration_since(then: float, now: float) -> str:
    """``5 minutes ago``: how podman prints a time in the past (seconds since the epoch)."""
    return human_duration(max(0.0, now - then)) + " ago"
