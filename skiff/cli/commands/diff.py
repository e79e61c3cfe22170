"""``skiff diff`` / ``container diff`` / ``image diff`` (podman diff).

Prints ``A /path``, ``C /path``, ``D /path`` lines (added, changed,
deleted); ``--format json`` prints podman's object of ``changed``,
``added`` and ``deleted`` lists (empty ones left out), indented by five
spaces as podman does.
"""

from __future__ import annotations

import argparse
import sys

JSON_INDENT = " " * 5
KIND_KEYS = (("C", "changed"), ("A", "added"), ("D", "deleted"))


def register(parser: argparse.ArgumentParser) -> None:
    words = parser.prog.split()
    kind = {"container": "container", "image": "image"}.get(words[-2], "all")
    parser.add_argument("--format", help="'json' for a JSON object")
    parser.add_argument(
        "first", metavar="CONTAINER|IMAGE" if kind == "all" else kind.upper(), help="what to show"
    )
    parser.add_argument(
        "second", nargs="?", metavar="BASE", help="compare against this instead of the parent"
    )
    parser.set_defaults(func=run, diff_kind=kind)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import is_json
    from skiff.errors import UsageError
    from skiff.libimage.changes import DiffOptions, diff

    if args.format is not None and not is_json(args.format):
        raise UsageError(f"unknown --format {args.format!r}", "only 'json' is supported")
    report = diff(system_context(args), args.first, args.second, DiffOptions(args.diff_kind))
    if args.format is not None:
        from skiff.gotemplate.gojson import encode

        data = {
            key: [c.path for c in report.changes if c.kind == kind]
            for kind, key in KIND_KEYS
            if any(c.kind == kind for c in report.changes)
        }
        sys.stdout.write(encode(data, escape_html=True, indent=JSON_INDENT) + "\n")
        return 0
    sys.stdout.write("".join(f"{c.kind} {c.path}\n" for c in report.changes))
    return 0
