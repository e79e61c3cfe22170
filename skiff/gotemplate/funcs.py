"""Template functions: Go's builtins and the ones podman adds.

Each function declares Go-like parameter types, because the executor checks
arguments the way Go does before calling (``{{upper 5}}`` fails with
"expected string; found 5", ``{{join .Names 5}}`` with "expected string;
found 5"). Parameter kinds:

- ``value``: anything, including the invalid ``NO_VALUE`` (Go's
  reflect.Value parameters: eq, len, index, and, or, ...)
- ``any``: anything; ``NO_VALUE`` becomes ``None`` (Go's interface{})
- ``string``, ``int``, ``bool``, ``[]string``: that type only.

podman's set is the one containers/common's ``report`` package registers for
podman 4: json, join, lower, pad, split, title, truncate, upper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from skiff.gotemplate.gofmt import format_value, sprint, sprintf, sprintln
from skiff.gotemplate.values import NO_VALUE, Struct, is_true, type_name


class FuncError(Exception):
    """A function failed; the executor reports "error calling NAME: message"."""


@dataclass(frozen=True, slots=True)
class Func:
    """A callable with its Go signature."""

    fn: Callable[..., Any]
    params: tuple[str, ...] = ()
    variadic: str | None = None
    short_circuit: str | None = None  # "and" / "or": stop at a falsy / truthy argument


GO_TYPE_NAMES = {
    "value": "reflect.Value",
    "any": "interface {}",
    "string": "string",
    "int": "int",
    "bool": "bool",
    "[]string": "[]string",
}

# --- comparison ---------------------------------------------------------------

_BAD_COMPARISON = "incompatible types for comparison"
_BAD_COMPARISON_TYPE = "invalid type for comparison"


def _basic_kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, complex):
        return "complex"
    if isinstance(v, str):
        return "string"
    return None


def _is_nil(v: Any) -> bool:
    return v is None or v is NO_VALUE


def _eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if not _is_nil(arg1) and not _is_nil(arg):
                raise FuncError(_BAD_COMPARISON)
            truth = _is_nil(arg1) and _is_nil(arg)
        elif k1 is not None:
            truth = bool(arg1 == arg)
        elif _is_nil(arg1) or _is_nil(arg):
            truth = _is_nil(arg1) == _is_nil(arg)
        else:
            if isinstance(arg, (list, tuple, dict, set)) or (
                isinstance(arg, Mapping) and not isinstance(arg, Struct)
            ):
                raise FuncError(f"non-comparable type {format_value(arg)}: {type_name(arg)}")
            if type_name(arg1) != type_name(arg):
                raise FuncError(_BAD_COMPARISON)
            truth = bool(arg1 == arg)
        if truth:
            return True
    return False


def _ne(arg1: Any, arg2: Any) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: Any, arg2: Any) -> bool:
    k1 = _basic_kind(arg1)
    k2 = _basic_kind(arg2)
    if k1 is None or k2 is None:
        raise FuncError(_BAD_COMPARISON_TYPE)
    if k1 != k2:
        raise FuncError(_BAD_COMPARISON)
    if k1 in ("bool", "complex"):
        raise FuncError(_BAD_COMPARISON_TYPE)
    return bool(arg1 < arg2)


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: Any, arg2: Any) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: Any, arg2: Any) -> bool:
    return not _lt(arg1, arg2)


# --- containers -------------------------------------------------------------------


def _index_arg(index: Any, cap: int) -> int:
    if index is None or index is NO_VALUE:
        raise FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index slice/array with type {type_name(index)}")
    if index < 0 or index > cap:
        raise FuncError(f"index out of range: {index}")
    return index


def _zero_of_values(mapping: Mapping[Any, Any]) -> Any:
    """The zero value of a map's element type, as well as values reveal it.

    Python dicts carry no element type; a map of strings (labels,
    annotations: the common case) gives "" as Go does, a map of mixed values
    gives nil, as Go's map[string]interface{} does.
    """
    kinds = {type(v) for v in mapping.values()}
    if not kinds or kinds == {str}:
        return ""
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind in (int, float, bool, list, dict):
            return kind()
    return None


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise FuncError("index of untyped nil")
    for index in indexes:
        if isinstance(item, str):
            raw = item.encode()
            if _index_arg(index, len(raw)) == len(raw):
                raise FuncError("reflect: string index out of range")
            item = raw[index]
        elif isinstance(item, (list, tuple, bytes)):
            if _index_arg(index, len(item)) == len(item):
                raise FuncError("reflect: slice index out of range")
            item = item[index]
        elif isinstance(item, Mapping) and not isinstance(item, Struct):
            keys = list(item.keys())
            key_type = type_name(keys[0]) if keys else None
            if key_type and any(type_name(k) != key_type for k in keys):
                key_type = None  # mixed keys: a map[interface{}]...
            if index is None or index is NO_VALUE:
                if key_type is not None:
                    raise FuncError(f"value is nil; should be of type {key_type}")
                item = _zero_of_values(item)
                continue
            if key_type is not None and type_name(index) != key_type:
                raise FuncError(f"value has type {type_name(index)}; should be {key_type}")
            try:
                item = item[index]
            except (KeyError, TypeError):
                item = _zero_of_values(item)
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq: Any = item.encode()
    elif isinstance(item, (list, tuple)):
        seq = item
    else:
        raise FuncError(f"can't slice item of type {type_name(item)}")
    idx = [0, len(seq), len(seq)]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, len(seq))
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    result = seq[idx[0] : idx[1]]
    if isinstance(item, str):
        return result.decode("utf-8", "replace")
    return result


def _len(item: Any) -> int:
    if item is None or item is NO_VALUE:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, (list, tuple, bytes, bytearray)) or (
        isinstance(item, Mapping) and not isinstance(item, Struct)
    ):
        return len(item)
    raise FuncError(f"len of type {type_name(item)}")


def _not(arg: Any) -> bool:
    return not is_true(arg)


def _call(fn: Any, *args: Any) -> Any:
    if fn is None or fn is NO_VALUE:
        raise FuncError("call of nil")
    if not callable(fn) or isinstance(fn, type):
        raise FuncError(f"non-function of type {type_name(fn)}")
    return fn(*args)


# --- escaping -----------------------------------------------------------------------


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(args)


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def _html(*args: Any) -> str:
    return "".join(_HTML.get(c, c) for c in _eval_args(args))


_JS = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _js(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in _JS:
            out.append(_JS[c])
        elif c < " ":
            out.append(f"\\u{ord(c):04X}")
        elif ord(c) < 0x80 or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04X}")
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_eval_args(args), safe="")


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, args)


def _print(*args: Any) -> str:
    return sprint(args)


def _println(*args: Any) -> str:
    return sprintln(args)


# --- podman's functions -----------------------------------------------------------------


def go_upper(s: str) -> str:
    """strings.ToUpper: rune by rune (ß stays ß, as in Go)."""
    if s.isascii():
        return s.upper()
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def go_lower(s: str) -> str:
    """strings.ToLower: rune by rune."""
    if s.isascii():
        return s.lower()
    return "".join(low if len(low := c.lower()) == 1 else c for c in s)


def _is_separator(c: str) -> bool:
    if c < "\x80":
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdecimal():
        return False
    return c.isspace()


def go_title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word."""
    out = []
    prev = " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _json(value: Any) -> str:
    from skiff.gotemplate.gojson import JSONError, encode

    try:
        return encode(None if value is NO_VALUE else value, escape_html=False)
    except JSONError:
        return ""  # podman ignores the encoder's error and prints nothing


def _join(elems: list[str], sep: str) -> str:
    return sep.join(elems)


def _split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)
    return s.split(sep)


def _pad(source: str, prefix: int, suffix: int) -> str:
    if source == "":
        return source
    if prefix < 0 or suffix < 0:
        raise FuncError("strings: negative Repeat count")
    return " " * prefix + source + " " * suffix


def _truncate(source: str, length: int) -> str:
    raw = source.encode()
    if len(raw) < length:
        return source
    if length < 0:
        raise FuncError(f"runtime error: slice bounds out of range [:{length}]")
    return raw[:length].decode("utf-8", "replace")


def _and(*args: Any) -> Any:  # the executor short-circuits; this is the plain form
    for arg in args:
        if not is_true(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if is_true(arg):
            return arg
    return args[-1]


BUILTINS: dict[str, Func] = {
    "and": Func(_and, ("value",), "value", short_circuit="and"),
    "or": Func(_or, ("value",), "value", short_circuit="or"),
    "not": Func(_not, ("value",)),
    "call": Func(_call, ("value",), "value"),
    "html": Func(_html, (), "any"),
    "js": Func(_js, (), "any"),
    "urlquery": Func(_urlquery, (), "any"),
    "index": Func(_index, ("value",), "value"),
    "slice": Func(_slice, ("value",), "value"),
    "len": Func(_len, ("value",)),
    "print": Func(_print, (), "any"),
    "printf": Func(_printf, ("string",), "any"),
    "println": Func(_println, (), "any"),
    "eq": Func(_eq, ("value",), "value"),
    "ne": Func(_ne, ("value", "value")),
    "lt": Func(_lt, ("value", "value")),
    "le": Func(_le, ("value", "value")),
    "gt": Func(_gt, ("value", "value")),
    "ge": Func(_ge, ("value", "value")),
}

PODMAN_FUNCS: dict[str, Func] = {
    "json": Func(_json, ("any",)),
    "join": Func(_join, ("[]string", "string")),
    "lower": Func(go_lower, ("string",)),
    "pad": Func(_pad, ("string", "int", "int")),
    "split": Func(_split, ("string", "string")),
    "title": Func(go_title, ("string",)),
    "truncate": Func(_truncate, ("string", "int")),
    "upper": Func(go_upper, ("string",)),
}

DEFAULT_FUNCS: dict[str, Func] = {**BUILTINS, **PODMAN_FUNCS}

__all__ = ["BUILTINS", "DEFAULT_FUNCS", "GO_TYPE_NAMES", "PODMAN_FUNCS", "Func", "FuncError"]
