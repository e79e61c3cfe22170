"""What the ``skiff network`` and ``skiff volume`` command groups share.

Both follow podman's commands for a named object in the store: they open
the store the global flags name, take ``KEY[=VALUE]`` labels and options,
print JSON as podman's Go encoder does (HTML escaped, a given indent),
report each failed name of a multi-name ``rm`` on its own ``Error:`` line
and exit with podman's code for the worst failure, and ask before a prune.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from skiff.errors import SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.storage.store import Store


def open_store(args: argparse.Namespace) -> Store:
    from skiff.cli.context import system_context
    from skiff.storage.store import Store

    return Store.open(system_context(args))


def print_error(exc: SkiffError) -> None:
    """One failed name of several: ``Error: ...`` on stderr, after what stdout has so far."""
    sys.stdout.flush()
    print(f"Error: {exc}", file=sys.stderr)


def key_values(values: list[str] | None, flag: str) -> dict[str, str]:
    """``--label``/``--opt`` values: KEY=VALUE, or KEY alone for an empty value."""
    out: dict[str, str] = {}
    for item in values or []:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {flag} {item!r}", f"use {flag} KEY[=VALUE]")
        out[key] = value
    return out


def gojson(obj: object, indent: str) -> str:
    from skiff.gotemplate.gojson import JSONError, encode

    try:
        return encode(obj, escape_html=True, indent=indent)
    except JSONError as exc:
        raise UsageError(f"cannot print as JSON: {exc}", "this is a bug in skiff") from None


def rm_exit_code(
    exc: SkiffError, previous: int, unknown: type[SkiffError], in_use: type[SkiffError]
) -> int:
    """podman's exit code of ``rm``: 1 when an object does not exist (``unknown``),
    2 when it is in use (``in_use``), else the error's own; the highest seen wins."""
    if isinstance(exc, unknown):
        code = 1
    elif isinstance(exc, in_use):
        code = 2
    else:
        code = exc.exit_code
    return max(previous, code)


def prune_confirmed(ask: Callable[[], str]) -> bool:
    """The answer to the prune question just written to stdout: y or yes (any
    case) goes ahead; no answer at all (stdin at its end) is an error, not a no."""
    sys.stdout.flush()
    try:
        answer = ask()
    except EOFError:
        raise UsageError(
            "no answer to the confirmation prompt", "use -f to prune without asking"
        ) from None
    return answer.strip().lower() in ("y", "yes")
