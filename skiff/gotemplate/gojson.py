"""Go's ``encoding/json`` output for Python values.

Python's ``json`` module differs from Go's in what scripts see: ``1.0`` is
``1`` in Go, ``1e-07`` is ``1e-7``, control characters are ``\\u0008`` rather
than ``\\b`` (Go 1.19, podman 4.3's Go), ``<``, ``>`` and ``&`` are escaped by
default and ``U+2028``/``U+2029`` always. podman's ``--format json`` is Go's
``json.MarshalIndent(v, "", "    ")``; its ``{{json .}}`` function is an
encoder with HTML escaping turned off.

Mappings keep their order: the data a command hands over is already in the
order podman prints (struct fields in declaration order, maps sorted); a
command building a map from unsorted input sorts it.

Values: None, bool, int, float, str, bytes (base64, as Go's []byte),
lists/tuples, mappings (keys become strings), dataclasses (fields in order;
``field(metadata={"json": "name"})`` renames, ``"omitempty"`` in that
metadata drops empty values), objects with ``to_json()``, datetimes
(RFC 3339 with nanoseconds, as time.Time), timedeltas (nanoseconds, as
time.Duration), enums (their value), and other objects with their own
``__str__`` (as Go's TextMarshaler: a string).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from skiff.gotemplate.gofmt import format_float_json
from skiff.gotemplate.values import NO_VALUE, Struct, has_own_str


class JSONError(Exception):
    """A value has no JSON form (NaN, infinity, an unknown type)."""


_HEX = "0123456789abcdef"


def _build_escapes(escape_html: bool) -> dict[int, str]:
    table: dict[int, str] = {}
    for c in range(0x20):
        table[c] = "\\u00" + _HEX[c >> 4] + _HEX[c & 0xF]
    table[ord("\n")] = "\\n"
    table[ord("\r")] = "\\r"
    table[ord("\t")] = "\\t"
    table[ord('"')] = '\\"'
    table[ord("\\")] = "\\\\"
    table[0x2028] = "\\u2028"
    table[0x2029] = "\\u2029"
    if escape_html:
        table[ord("<")] = "\\u003c"
        table[ord(">")] = "\\u003e"
        table[ord("&")] = "\\u0026"
    return table


_ESCAPES_HTML = _build_escapes(True)
_ESCAPES_PLAIN = _build_escapes(False)


def encode_string(s: str, escape_html: bool = True) -> str:
    out = s.translate(_ESCAPES_HTML if escape_html else _ESCAPES_PLAIN)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in out):
        out = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in out)
    return '"' + out + '"'


def format_time_json(t: _dt.datetime) -> str:
    """time.Time's RFC 3339 form with nanoseconds: ``2024-01-02T03:04:05.5Z``."""
    if t.tzinfo is None:
        t = t.astimezone()
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += f".{t.microsecond:06d}".rstrip("0")
    offset = t.utcoffset() or _dt.timedelta(0)
    if not offset:
        return s + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{s}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _is_empty(value: Any) -> bool:
    """Go's omitempty test: false, 0, nil, and empty strings/slices/maps."""
    if value is None or value is False:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, (str, bytes, list, tuple, Mapping)):
        return len(value) == 0
    return False


class _Encoder:
    def __init__(self, escape_html: bool, indent: str | None) -> None:
        self.escape_html = escape_html
        self.indent = indent
        self.out: list[str] = []

    def newline(self, depth: int) -> None:
        if self.indent is not None:
            self.out.append("\n" + self.indent * depth)

    def encode(self, value: Any, depth: int) -> None:
        out = self.out
        if value is None or value is NO_VALUE:
            out.append("null")
        elif value is True:
            out.append("true")
        elif value is False:
            out.append("false")
        elif isinstance(value, Enum):
            self.encode(value.value, depth)
        elif isinstance(value, int):
            out.append(str(int(value)))
        elif isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                raise JSONError(f"json: unsupported value: {value}")
            out.append(format_float_json(value))
        elif isinstance(value, str):
            out.append(encode_string(str(value), self.escape_html))
        elif isinstance(value, (bytes, bytearray)):
            import base64

            out.append('"' + base64.b64encode(bytes(value)).decode() + '"')
        elif isinstance(value, Struct):
            self.encode_object(list(value.data.items()), depth)
        elif isinstance(value, Mapping):
            self.encode_object([(str(k), v) for k, v in value.items()], depth)
        elif isinstance(value, (list, tuple)):
            self.encode_array(value, depth)
        elif is_dataclass(value) and not isinstance(value, type):
            pairs = []
            for f in fields(value):
                name = f.metadata.get("json", f.name)
                item = getattr(value, f.name)
                if f.metadata.get("omitempty") and _is_empty(item):
                    continue
                pairs.append((name, item))
            self.encode_object(pairs, depth)
        elif hasattr(value, "to_json") and callable(value.to_json):
            self.encode(value.to_json(), depth)
        elif isinstance(value, _dt.datetime):
            out.append('"' + format_time_json(value) + '"')
        elif isinstance(value, _dt.timedelta):
            out.append(str(value // _dt.timedelta(microseconds=1) * 1000))
        elif has_own_str(value):
            out.append(encode_string(str(value), self.escape_html))
        else:
            raise JSONError(f"json: unsupported type: {type(value).__name__}")

    def encode_object(self, pairs: list[tuple[str, Any]], depth: int) -> None:
        if not pairs:
            self.out.append("{}")
            return
        self.out.append("{")
        sep = ": " if self.indent is not None else ":"
        for i, (key, item) in enumerate(pairs):
            if i:
                self.out.append(",")
            self.newline(depth + 1)
            self.out.append(encode_string(key, self.escape_html) + sep)
            self.encode(item, depth + 1)
        self.newline(depth)
        self.out.append("}")

    def encode_array(self, items: list[Any] | tuple[Any, ...], depth: int) -> None:
        if not items:
            self.out.append("[]")
            return
        self.out.append("[")
        for i, item in enumerate(items):
            if i:
                self.out.append(",")
            self.newline(depth + 1)
            self.encode(item, depth + 1)
        self.newline(depth)
        self.out.append("]")


def encode(value: Any, escape_html: bool = True, indent: str | None = None) -> str:
    """``value`` as Go's json.Marshal (or MarshalIndent with ``indent``) writes it."""
    encoder = _Encoder(escape_html, indent)
    encoder.encode(value, 0)
    return "".join(encoder.out)
