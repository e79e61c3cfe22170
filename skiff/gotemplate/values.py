"""How Python values play Go's values in a template.

Go templates run on typed values; Python data has fewer types, so the
engine reads them this way:

- ``None`` is Go's ``nil`` (prints ``<nil>``); ``NO_VALUE`` is Go's invalid
  value, what a missing map key gives (prints ``<no value>``).
- ``str``, ``int``, ``float``, ``bool`` are Go's string, int, float64, bool.
- lists and tuples are slices; other ``Mapping``s are maps (range and
  printing visit their keys sorted, as Go does; a missing key is
  ``<no value>``).
- dataclass instances, ``Struct`` wrappers, and other objects are structs:
  a missing field is an error ("can't evaluate field X in type T"). A dict
  given as a row to ``skiff.cli.output`` is wrapped in ``Struct`` for that
  reason: podman's rows are structs.
- ``datetime`` is ``time.Time`` and ``timedelta`` is ``time.Duration``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any


class _NoValue:
    """Go's invalid reflect.Value: a missing map key, a field of nil."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()


class Struct(Mapping[str, Any]):
    """A mapping that behaves as a Go struct: its keys are its fields.

    A missing field is an error rather than ``<no value>``, the keys keep
    their order (in ``{{json .}}``, ``%v`` and ``%+v``), and ``type_name``
    names it in error messages.
    """

    __slots__ = ("data", "type_name")

    def __init__(self, data: Mapping[str, Any], type_name: str = "struct") -> None:
        self.data = data
        self.type_name = type_name

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Struct({self.data!r}, {self.type_name!r})"


def is_struct(value: object) -> bool:
    return isinstance(value, Struct) or (is_dataclass(value) and not isinstance(value, type))


def struct_fields(value: object) -> list[tuple[str, Any]]:
    """A struct's (name, value) pairs in declaration order."""
    if isinstance(value, Struct):
        return list(value.data.items())
    return [(f.name, getattr(value, f.name)) for f in fields(value)]  # type: ignore[arg-type]


def has_own_str(value: object) -> bool:
    """The type defines ``__str__`` itself (Go's fmt.Stringer / TextMarshaler)."""
    return any("__str__" in vars(cls) for cls in type(value).__mro__[:-1])


def is_map(value: object) -> bool:
    return isinstance(value, Mapping) and not isinstance(value, Struct)


def is_slice(value: object) -> bool:
    return isinstance(value, (list, tuple))


def sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Map entries in Go's order (internal/fmtsort): by key, numbers numerically."""
    items = list(mapping.items())
    try:
        return sorted(items, key=lambda kv: kv[0])
    except TypeError:
        return sorted(items, key=lambda kv: (type(kv[0]).__name__, str(kv[0])))


def _elem_type(values: list[Any]) -> str:
    names = {type_name(v) for v in values}
    if len(names) == 1:
        return names.pop()
    return "interface {}"


def type_name(value: object) -> str:
    """The Go type a value stands for, as ``%T`` and error messages print it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "[]uint8"
    if isinstance(value, Struct):
        return value.type_name
    if isinstance(value, (list, tuple)):
        return "[]" + (_elem_type(list(value)) if value else "interface {}")
    if isinstance(value, Mapping):
        if not value:
            return "map[string]interface {}"
        return f"map[{_elem_type(list(value.keys()))}]{_elem_type(list(value.values()))}"
    if isinstance(value, _dt.datetime):
        return "time.Time"
    if isinstance(value, _dt.timedelta):
        return "time.Duration"
    if isinstance(value, Enum):
        return type(value).__name__
    return type(value).__name__


def is_true(value: object) -> bool:
    """Go's truth: false, 0, nil, and empty strings/slices/maps are false.

    Structs are always true, whatever they contain.
    """
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, (bool, int, float, complex)):
        return bool(value)
    if isinstance(value, (str, bytes, bytearray, list, tuple)):
        return len(value) > 0
    if isinstance(value, Mapping) and not isinstance(value, Struct):
        return len(value) > 0
    return True
