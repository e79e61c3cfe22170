"""What listing commands print: ``--format`` (json, Go template, table) and podman's tables.

Every command that lists or inspects (``images``, ``ps``, ``pod ps``,
``volume ls``, ``inspect``, ``history``, ...) hands its rows here, so that
``--format`` behaves as podman's does everywhere, to the character:

- ``json`` (or ``{{json .}}``): the rows as a JSON array, 4-space indented,
  Go's escaping (``\\u003c`` for ``<``).
- ``table {{.A}}\\t{{.B}}``: a header row (the template run over the header
  names), then one row per item, aligned like podman's tabwriter; spaces in
  a table template separate columns, as in podman.
- any other template: run once per item (podman's implicit ``{{range .}}``),
  unless it has its own ``{{range .}}...{{end}}``; ``\\t`` and ``\\n`` typed
  on the command line are a tab and a newline; a newline ends each item.

Rows are dataclasses, objects, or dicts; a dict row is a struct (a typo in a
field name is an error naming the fields, not ``<no value>``). Nested dicts
are maps. The engine is ``skiff.gotemplate``; the differences from
podman are in docs/format.md.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from skiff.errors import UsageError

__all__ = [
    "bytes_size",
    "default_header",
    "format_items",
    "format_table",
    "human_duration",
    "human_duration_since",
    "human_size",
    "is_json",
    "print_json",
    "render_template",
    "short_id",
    "to_json",
]

_SPACE = "[\t\n\f\r ]"  # Go's RE2 \s
_JSON_RE = re.compile(rf"^{_SPACE}*(json|{{{{{_SPACE}*json *\.?{_SPACE}*}}}}){_SPACE}*$")
_RANGE_RE = re.compile(
    rf"{{{{{_SPACE}*range{_SPACE}*\.{_SPACE}*}}}}.*{{{{{_SPACE}*end{_SPACE}*-?{_SPACE}*}}}}"
)
_TABLE_TOKENS = re.compile(r"table |\\t|\\n| ")
_TABLE_REPLACE = {"table ": "", "\\t": "\t", "\\n": "\n", " ": "\t"}


def is_json(fmt: str | None) -> bool:
    """``json``, ``{{json .}}`` and the like ask for the JSON array, as in podman."""
    return fmt is not None and _JSON_RE.match(fmt) is not None


# --- headers ------------------------------------------------------------------------


def _camel_split(name: str) -> list[str]:
    """Split CamelCase into words as podman's header code does (fatih/camelcase)."""
    runs: list[list[str]] = []
    last = 0
    for c in name:
        if c.islower():
            cls = 1
        elif c.isupper():
            cls = 2
        elif c.isdecimal():
            cls = 3
        else:
            cls = 4
        if cls == last:
            runs[-1].append(c)
        else:
            runs.append([c])
        last = cls
    for i in range(len(runs) - 1):
        if runs[i] and runs[i][0].isupper() and runs[i + 1][0].islower():
            runs[i + 1].insert(0, runs[i].pop())
    return ["".join(r) for r in runs if r]


def default_header(field: str) -> str:
    """A column header from a field name: ``CreatedAt`` → ``CREATED AT``, ``ID`` → ``ID``."""
    return " ".join(_camel_split(field)).upper()


class _Headers(Mapping[str, str]):
    """The header row's data: the command's names, else one derived from the field."""

    def __init__(self, overrides: Mapping[str, str]) -> None:
        self.overrides = overrides

    def __getitem__(self, key: str) -> str:
        header = self.overrides.get(key)
        return header.upper() if header is not None else default_header(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self.overrides)

    def __len__(self) -> int:
        return len(self.overrides)


# --- compiling --format ------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    template: Any  # gotemplate.Template
    table: bool
    each: bool  # run once per item (podman's implicit {{range .}})


def _template(text: str, in_range: bool) -> Any:
    from skiff.gotemplate import Template

    return Template(text, name="format", in_range=in_range)


@functools.lru_cache(maxsize=64)
def _compile(fmt: str) -> _Compiled:
    """Parse a --format once; podman's normalisation, then its fallback to the raw text.

    podman turns ``\\t``/``\\n`` into tab/newline (and, in a table, spaces
    into tabs) before parsing, and if that breaks the template (a ``"\\n"``
    inside a string literal), parses the text as typed instead.
    """
    from skiff.gotemplate import TemplateError

    if fmt.startswith("table "):
        normal = _TABLE_TOKENS.sub(lambda m: _TABLE_REPLACE[m.group(0)], fmt)
        if not normal.endswith("\n"):
            normal += "\n"
        try:
            return _Compiled(_template(normal, True), True, True)
        except TemplateError:
            return _Compiled(_template(fmt, True), True, True)
    normal = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if not normal.endswith("\n"):
        normal += "\n"
    each = not _RANGE_RE.search(normal)
    try:
        return _Compiled(_template(normal, each), False, each)
    except TemplateError:
        each = not _RANGE_RE.search(fmt)
        return _Compiled(_template(fmt, each), False, each)


def _usage_error(exc: Any) -> UsageError:
    if exc.parse:
        hint = "fix the --format template (Go text/template syntax; see docs/format.md)"
    else:
        hint = (
            exc.hint or "check the template's fields and functions; '--format json' shows the data"
        )
    return UsageError(exc.message, hint)


def _as_row(item: object) -> object:
    from skiff.gotemplate import Struct

    if isinstance(item, Mapping) and not isinstance(item, Struct):
        return Struct(item, type_name="row")
    return item


def _run(compiled: _Compiled, rows: Sequence[object]) -> str:
    from skiff.gotemplate import TemplateError

    try:
        if compiled.each:
            return str(compiled.template.execute_each(rows))
        return str(compiled.template.execute(rows))
    except TemplateError as exc:
        raise _usage_error(exc) from None


def _parse(fmt: str) -> _Compiled:
    from skiff.gotemplate import TemplateError

    try:
        return _compile(fmt)
    except TemplateError as exc:
        raise _usage_error(exc) from None


# --- entry points -----------------------------------------------------------------------


def format_items(
    fmt: str | None,
    items: Sequence[object],
    default_columns: Sequence[tuple[str, str]] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    json_items: Sequence[object] | None = None,
    noheading: bool = False,
) -> str:
    """The output of a listing command, as podman prints it for ``--format fmt``.

    ``fmt``: None when ``--format`` was not given (an empty string is a
    template, printing an empty line per item as podman does).
    ``items``: the rows the template sees. ``default_columns``: (field,
    header) pairs of the table printed without ``--format`` (without it,
    the default is JSON, as for ``inspect``). ``headers``: header names for
    fields whose header is not their split, upper-cased name (``{"ID":
    "IMAGE ID"}``). ``json_items``: what ``--format json`` prints, when it
    differs from the rows. ``noheading``: drop the header row of tables.
    """
    rows = [_as_row(i) for i in items]
    if fmt is None:
        if default_columns is None:
            return to_json(list(json_items if json_items is not None else items)) + "\n"
        body = "\t".join("{{." + f + "}}" for f, _ in default_columns) + "\n"
        names = dict(default_columns)
        if headers:
            names.update(headers)
        compiled = _compile("table " + body)
        return _table(compiled, rows, names, noheading)
    if is_json(fmt):
        return to_json(list(json_items if json_items is not None else items)) + "\n"
    compiled = _parse(fmt)
    if compiled.table:
        return _table(compiled, rows, headers or {}, noheading)
    return _run(compiled, rows)


def _table(
    compiled: _Compiled, rows: Sequence[object], headers: Mapping[str, str], noheading: bool
) -> str:
    from skiff.gotemplate.tabwriter import align

    head = "" if noheading else _run(compiled, [_Headers(headers)])
    return align(head + _run(compiled, rows))


def render_template(template: str, data: object) -> str:
    """One object through ``--format`` (``version``, ``info``): the exact text to write.

    The result ends with the template's own newline or one added, as podman
    prints it; ``json`` gives the object as indented JSON.
    """
    if is_json(template):
        return to_json(data) + "\n"
    if template.startswith("table "):
        return format_items(template, [data])
    from skiff.gotemplate import TemplateError

    normal = template.replace("\\t", "\t").replace("\\n", "\n")
    if not normal.endswith("\n"):
        normal += "\n"
    try:
        try:
            compiled = _template(normal, False)
        except TemplateError:
            compiled = _template(template, False)
        return str(compiled.execute(_as_row(data)))
    except TemplateError as exc:
        raise _usage_error(exc) from None


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A podman-style table of ready-made cells (``REPOSITORY  TAG  IMAGE ID ...``).

    Cells are printed as Go prints values (``true``, ``[a b]``); columns
    are aligned as podman aligns them. An empty ``headers`` prints no header.
    """
    from skiff.gotemplate.gofmt import format_value
    from skiff.gotemplate.tabwriter import align

    lines = []
    if headers:
        lines.append("\t".join(headers) + "\n")
    for row in rows:
        lines.append("\t".join(format_value(cell) for cell in row) + "\n")
    return align("".join(lines))


def to_json(obj: object) -> str:
    """``obj`` as podman's JSON output: Go's MarshalIndent with 4 spaces, no final newline."""
    from skiff.gotemplate.gojson import JSONError, encode

    try:
        return encode(obj, escape_html=True, indent="    ")
    except JSONError as exc:
        raise UsageError(f"cannot print as JSON: {exc}", "this is a bug in skiff") from None


def print_json(obj: object) -> None:
    """Write ``obj`` to stdout as podman's JSON output, with a final newline."""
    sys.stdout.write(to_json(obj) + "\n")


# --- human output ------------------------------------------------------------------------


def human_size(size: float) -> str:
    """Sizes as ``podman images`` prints them: ``1.99 MB`` (3 significant digits, SI units)."""
    from skiff.gotemplate.units import human_size_with_precision

    return human_size_with_precision(size, 3)


def bytes_size(size: float) -> str:
    """Binary sizes as podman's stats print them: ``1.896MiB``."""
    from skiff.gotemplate.units import bytes_size as _bytes_size

    return _bytes_size(size)


def human_duration(seconds: float) -> str:
    """A duration as podman prints it: ``Less than a second``, ``About an hour``, ``3 days``."""
    from skiff.gotemplate.units import human_duration as _human_duration

    return _human_duration(seconds)


def human_duration_since(ts: datetime | float, now: float | None = None) -> str:
    """``5 minutes ago`` for a timestamp (a datetime, or seconds since the epoch)."""
    from skiff.gotemplate.units import human_duration_since as _since

    then = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    return _since(then, time.time() if now is None else now)


def short_id(image_or_container_id: str) -> str:
    """The 12-character ID podman shows (a ``sha256:`` prefix is dropped)."""
    value = image_or_container_id
    if ":" in value:
        value = value.split(":", 1)[1]
    return value[:12]
