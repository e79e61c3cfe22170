"""``skiff images`` / ``skiff image ls`` (podman images), ``image exists``, ``image tree``.

One module for the three: ``register`` is called with the parser of one
command (its ``prog`` ends with the command's name). Printing follows
podman 4.3: one row per name of each image (``<none>`` for an image
without names), rows sorted newest first (stable, so the names of one
image keep their order), the default table REPOSITORY TAG IMAGE ID
CREATED SIZE, and ``--format json`` one object per row with podman's keys.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skiff.libimage.listing import ImageSummary

HEADERS = {"ID": "IMAGE ID", "ReadOnly": "R/O", "IsReadOnly": "R/O"}
DEFAULT_COLUMNS = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Created", "CREATED"),
    ("Size", "SIZE"),
]
DIGEST_COLUMNS = [*DEFAULT_COLUMNS[:2], ("Digest", "DIGEST"), *DEFAULT_COLUMNS[2:]]
SORT_KEYS = ("created", "id", "repository", "size", "tag")


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    if command == "exists":
        parser.add_argument("image", metavar="IMAGE")
        parser.set_defaults(func=run_exists)
        return
    if command == "tree":
        parser.add_argument("image", metavar="IMAGE")
        parser.set_defaults(func=run_tree)
        return
    parser.add_argument("-a", "--all", action="store_true", help="show intermediate images too")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        help="filter output (dangling=, reference=, label=, before=, since=, until=, id=, ...)",
    )
    parser.add_argument("--format", help="'json', a Go template, or 'table ...'")
    parser.add_argument(
        "-n", "--noheading", action="store_true", help="do not print column headings"
    )
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print image IDs only")
    parser.add_argument(
        "--sort", default="created", choices=SORT_KEYS, help="sort by (default: created)"
    )
    parser.add_argument("image", nargs="?", metavar="IMAGE", help="show images of this name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_items, is_json, to_json
    from skiff.libimage.listing import ListOptions, list_images

    filters = list(args.filter)
    if args.image:
        filters.append(f"reference={args.image}")
    report = list_images(system_context(args), ListOptions(all=args.all, filters=tuple(filters)))
    pairs = sort_rows(image_rows(report.images, args.no_trunc), args.sort)
    rows = [row for row, _ in pairs]
    if args.quiet:
        ids = dict.fromkeys(row["ID"] for row in rows)
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        return 0
    if is_json(args.format):
        sys.stdout.write(to_json([json_row(image) for _, image in pairs]) + "\n")
        return 0
    columns = DIGEST_COLUMNS if args.digests else DEFAULT_COLUMNS
    sys.stdout.write(
        format_items(
            args.format,
            rows,
            default_columns=columns,
            headers=HEADERS,
            noheading=args.noheading,
        )
    )
    return 0


def split_name(name: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` → (``host:5000/a/b``, ``tag``)."""
    base = name.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon + 1 :]
    return base, "<none>"


Row = tuple[dict[str, Any], "ImageSummary"]


def image_rows(images: list[ImageSummary], no_trunc: bool) -> list[Row]:
    """podman's imageReporter rows (one per name of each image), with their image."""
    from skiff.cli.output import human_duration_since, human_size

    rows: list[Row] = []
    for image in images:
        created = image.created.astimezone()
        since = human_duration_since(created)
        names = [split_name(n) for n in image.names] or [("<none>", "<none>")]
        for repository, tag in names:
            row = {
                "ID": f"sha256:{image.id}" if no_trunc else image.id[:12],
                "Id": image.id,
                "ParentId": image.parent_id,
                "Repository": repository,
                "Tag": tag,
                "Digest": image.digest,
                "Created": since,
                "CreatedSince": since,
                "CreatedAt": created,
                "CreatedTime": created,
                "Size": human_size(image.size),
                "VirtualSize": image.virtual_size,
                "SharedSize": image.shared_size,
                "Labels": dict(sorted(image.labels.items())),
                "Names": list(image.names),
                "RepoDigests": list(image.repo_digests),
                "History": ", ".join(image.names_history),
                "Containers": image.containers,
                "ReadOnly": image.read_only,
                "IsReadOnly": image.read_only,
                "Dangling": image.dangling,
            }
            rows.append((row, image))
    return rows


def sort_rows(rows: list[Row], key: str) -> list[Row]:
    """podman's --sort orders (stable: equal rows keep the store's order)."""
    if key == "created":
        return sorted(rows, key=lambda r: -r[1].created.timestamp())
    if key == "id":
        return sorted(rows, key=lambda r: r[1].id)
    if key == "repository":
        return sorted(rows, key=lambda r: (r[0]["Repository"], r[0]["Tag"]))
    if key == "tag":
        return sorted(rows, key=lambda r: r[0]["Tag"])
    return sorted(rows, key=lambda r: r[1].size)


def json_row(image: ImageSummary) -> dict[str, Any]:
    """What podman 4.3's ``images --format json`` prints for a row (RepoTags is always null)."""
    out: dict[str, Any] = {
        "Id": image.id,
        "ParentId": image.parent_id,
        "RepoTags": None,
        "RepoDigests": list(image.repo_digests),
        "Size": image.size,
        "SharedSize": image.shared_size,
        "VirtualSize": image.virtual_size,
        "Labels": dict(sorted(image.labels.items())) or None,
        "Containers": image.containers,
    }
    if image.read_only:
        out["ReadOnly"] = True
    if image.dangling:
        out["Dangling"] = True
    if image.names:
        out["Names"] = list(image.names)
    out["Digest"] = image.digest
    if image.names_history:
        out["History"] = list(image.names_history)
    out["Created"] = int(image.created.timestamp())
    out["CreatedAt"] = _rfc3339(datetime.fromtimestamp(int(image.created.timestamp())))
    return out


def _rfc3339(value: datetime) -> str:
    from skiff.libimage.layertree import format_time

    return format_time(value.astimezone())


# --- image exists / tree -------------------------------------------------------------


def run_exists(args: argparse.Namespace) -> int:
    """Exit 0 if the image is in local storage, 1 if not (podman image exists)."""
    from skiff.cli.context import system_context
    from skiff.libimage.listing import image_exists

    return 0 if image_exists(system_context(args), args.image) else 1


def run_tree(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.gotemplate.units import human_size
    from skiff.libimage.history import image_tree

    tree = image_tree(system_context(args), args.image)
    lines = [
        f"Image ID: {tree.image_id[:12]}",
        f"Tags:     [{' '.join(tree.names)}]",
        f"Size:     {human_size(tree.size).replace(' ', '')}",
        "Image Layers",
    ]
    for index, layer in enumerate(tree.layers):
        branch = "└── " if index == len(tree.layers) - 1 else "├── "
        size = human_size(layer.size).replace(" ", "")
        line = f"{branch}ID: {layer.id[:12]} Size: {size:>7}"
        if layer.top_of:
            line += f" Top Layer of: [{' '.join(layer.top_of)}]"
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
