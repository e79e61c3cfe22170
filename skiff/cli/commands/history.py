"""``skiff history IMAGE`` (podman history): the image's history entries, newest first.

Columns ID, CREATED, CREATED BY, SIZE, COMMENT. ``CREATED BY`` is cut to
45 characters unless ``--no-trunc``; ``-H=false`` prints times as the image
recorded them (RFC 3339); ``--format json`` prints podman's compact JSON
(``id``, ``created``, ``CreatedBy``, ``size``, ``comment``, ``Created``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skiff.libimage.history import HistoryEntry

CREATED_BY_WIDTH = 45
DEFAULT_COLUMNS = [
    ("ID", "ID"),
    ("Created", "CREATED"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
]


def register(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.imageopts import parse_bool

    parser.add_argument("--format", help="'json', a Go template, or 'table ...'")
    parser.add_argument(
        "-H",
        "--human",
        nargs="?",
        const=True,
        default=True,
        type=parse_bool,
        help="human readable times (default true; -H=false for RFC 3339)",
    )
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the IDs only")
    parser.add_argument("image", metavar="IMAGE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_items, is_json
    from skiff.libimage.history import image_history

    report = image_history(system_context(args), args.image)
    if args.quiet:
        sys.stdout.write("".join(f"{_id(e.id, args.no_trunc)}\n" for e in report.entries))
        return 0
    if is_json(args.format):
        from skiff.gotemplate.gojson import encode

        data = [json_entry(e) for e in report.entries]
        sys.stdout.write(encode(data, escape_html=True) + "\n")
        return 0
    rows = [row(e, args.human, args.no_trunc) for e in report.entries]
    sys.stdout.write(format_items(args.format, rows, default_columns=DEFAULT_COLUMNS))
    return 0


def _id(value: str, no_trunc: bool) -> str:
    from skiff.libimage.history import MISSING

    if value == MISSING or no_trunc:
        return value
    return value[:12]


def row(entry: HistoryEntry, human: bool, no_trunc: bool) -> dict[str, Any]:
    from skiff.cli.output import human_duration_since, human_size
    from skiff.libimage.layertree import format_time

    created = entry.created.replace(microsecond=0).astimezone()
    since = human_duration_since(created)
    created_by = entry.created_by
    if not no_trunc and len(created_by) > CREATED_BY_WIDTH:
        created_by = created_by[: CREATED_BY_WIDTH - 3] + "..."
    return {
        "ID": _id(entry.id, no_trunc),
        "Created": since if human else format_time(entry.created.replace(microsecond=0)),
        "CreatedAt": created,
        "CreatedSince": since,
        "CreatedBy": created_by,
        "Size": human_size(entry.size),
        "Comment": entry.comment,
        "Tags": [],
    }


def json_entry(entry: HistoryEntry) -> dict[str, Any]:
    from skiff.libimage.layertree import format_time

    out: dict[str, Any] = {
        "id": entry.id,
        "created": format_time(entry.created),
    }
    if entry.created_by:
        out["CreatedBy"] = entry.created_by
    out["size"] = entry.size
    if entry.comment:
        out["comment"] = entry.comment
    out["Created"] = format_time(entry.created.replace(microsecond=0))
    return out
