"""Dataclasses to JSON-able data and back, preserving types.

A container's SpecGenerator is recorded at create and rebuilt at every
start. ``dataclasses.asdict`` loses which class a value was (a mount may be
a BindMount, a VolumeMount or a TmpfsMount), so every dataclass instance is
written with a ``__kind__`` tag, and reading rebuilds it from its type
hints: nested dataclasses, lists, tuples, dicts, enums, optional values.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

_KIND = "__kind__"


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {_KIND: type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = to_data(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


def from_data(cls: type[Any], data: Any) -> Any:
    """Rebuild a value of type ``cls`` (a dataclass or a typing form)."""
    return _build(cls, data, {})


def _hints(cls: type[Any]) -> dict[str, Any]:
    import sys

    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


def _dataclasses_in(tp: Any) -> list[type[Any]]:
    args = typing.get_args(tp)
    return [a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)]


def _build(tp: Any, data: Any, _seen: dict[str, Any]) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        candidates = _dataclasses_in(tp)
        if isinstance(data, dict) and _KIND in data:
            for candidate in candidates:
                if candidate.__name__ == data[_KIND]:
                    return _build(candidate, data, _seen)
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _build(arg, data, _seen)
            except (TypeError, ValueError, KeyError):
                continue
        raise ValueError(f"cannot rebuild {data!r} as {tp}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data and f.init:
                kwargs[f.name] = _build(hints[f.name], data[f.name], _seen)
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        values = [_build(item, v, _seen) for v in data]
        return tuple(values) if origin is tuple else values
    if origin is dict:
        args = typing.get_args(tp)
        value_type = args[1] if len(args) == 2 else Any
        return {k: _build(value_type, v, _seen) for k, v in data.items()}
    if tp in (int, float, str, bool):
        if tp is float and isinstance(data, int):
            return float(data)
        if not isinstance(data, tp):
            raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    return data
