"""``skiff system df|check|prune`` (and ``system info``, which is ``skiff info``).

df prints podman's summary table (TYPE TOTAL ACTIVE SIZE RECLAIMABLE),
``-v`` its three detailed tables, ``--format`` a template over the
summary rows (``.Type .Total .Active .Size .Reclaimable``, and ``.RawSize``
``.RawReclaimable`` in bytes) or ``json``. check reports the store's
inconsistencies and, with ``--repair``, fixes what is safe; problems left
make it fail (exit 125). prune removes unused images (containers,
networks and volumes are not pruned by skiff yet).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skiff.errors import UsageError

if TYPE_CHECKING:
    from skiff.libimage.df import DfReport, Summary

SUMMARY_COLUMNS = [
    ("Type", "TYPE"),
    ("Total", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
]
IMAGE_COLUMNS = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ImageID", "IMAGE ID"),
    ("Created", "CREATED"),
    ("Size", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("Containers", "CONTAINERS"),
]
CONTAINER_COLUMNS = [
    ("ContainerID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Size", "SIZE"),
    ("Created", "CREATED"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
]
VOLUME_COLUMNS = [("VolumeName", "VOLUME NAME"), ("Links", "LINKS"), ("Size", "SIZE")]
PRUNE_WARNING = (
    "WARNING! This command removes:\n"
    "\t- all dangling images\n"
    "\n"
    "Are you sure you want to continue? [y/N] "
)
PRUNE_ALL_WARNING = PRUNE_WARNING.replace(
    "all dangling images", "all images without at least one container associated with them"
)


def register(parser: argparse.ArgumentParser) -> None:
    REGISTER[parser.prog.rsplit(" ", 1)[-1]](parser)


# --- df ------------------------------------------------------------------------------------


def _register_df(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", help="'json', a Go template, or 'table ...'")
    parser.add_argument("-v", "--verbose", action="store_true", help="show details")
    parser.set_defaults(func=run_df)


def _size(value: int) -> str:
    """go-units HumanSize, podman's df sizes: ``2.142MB``, ``0B``."""
    from skiff.gotemplate.units import human_size

    return human_size(value).replace(" ", "")


def summary_row(s: Summary) -> dict[str, Any]:
    percent = round(s.reclaimable / s.size * 100) if s.size > 0 else 0
    return {
        "Type": s.type,
        "Total": s.total,
        "Active": s.active,
        "Size": _size(s.size),
        "Reclaimable": f"{_size(s.reclaimable)} ({percent}%)",
        "RawSize": s.size,
        "RawReclaimable": s.reclaimable,
    }


def run_df(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_items, is_json
    from skiff.libimage.df import DfOptions, disk_usage

    facts = _RuntimeFacts(args)
    try:
        report = disk_usage(
            system_context(args),
            DfOptions(describe_container=facts.describe, list_volumes=facts.volumes),
        )
    finally:
        facts.close()
    if args.verbose:
        if args.format is not None and not is_json(args.format):
            raise UsageError("--verbose takes no --format template", "use --format json")
        if args.format is not None:
            sys.stdout.write(_verbose_json(report))
        else:
            sys.stdout.write(_verbose_text(report))
        return 0
    summaries = report.summary()
    if is_json(args.format):
        from skiff.cli.output import to_json

        data = [
            {
                "Type": s.type,
                "Total": s.total,
                "Active": s.active,
                "Size": s.size,
                "Reclaimable": s.reclaimable,
            }
            for s in summaries
        ]
        sys.stdout.write(to_json(data) + "\n")
        return 0
    rows = [summary_row(s) for s in summaries]
    sys.stdout.write(format_items(args.format, rows, default_columns=SUMMARY_COLUMNS))
    return 0


def _verbose_rows(report: DfReport) -> tuple[list[Any], list[Any], list[Any]]:
    import time

    from skiff.cli.output import human_duration

    now = time.time()
    images = [
        {
            "Repository": i.repository,
            "Tag": i.tag,
            "ImageID": i.id[:12],
            "Created": human_duration(now - i.created.timestamp()),
            "Size": _size(i.size),
            "SharedSize": _size(i.shared_size),
            "UniqueSize": _size(i.unique_size),
            "Containers": i.containers,
        }
        for i in report.images
    ]
    containers = [
        {
            "ContainerID": c.id[:12],
            "Image": c.image_id[:12],
            "Command": c.command,
            "LocalVolumes": c.local_volumes,
            "Size": _size(c.size),
            "Created": human_duration(now - c.created.timestamp()),
            "Status": c.status,
            "Names": c.names,
        }
        for c in report.containers
    ]
    volumes = [
        {"VolumeName": v.name, "Links": v.links, "Size": _size(v.size)} for v in report.volumes
    ]
    return images, containers, volumes


def _verbose_text(report: DfReport) -> str:
    from skiff.cli.output import format_items

    images, containers, volumes = _verbose_rows(report)
    return (
        "Images space usage:\n\n"
        + format_items(None, images, default_columns=IMAGE_COLUMNS)
        + "\nContainers space usage:\n\n"
        + format_items(None, containers, default_columns=CONTAINER_COLUMNS)
        + "\nLocal Volumes space usage:\n\n"
        + format_items(None, volumes, default_columns=VOLUME_COLUMNS)
    )


def _verbose_json(report: DfReport) -> str:
    from skiff.cli.output import to_json

    data = {
        "Images": [
            {
                "Repository": i.repository,
                "Tag": i.tag,
                "ImageID": i.id,
                "Created": i.created,
                "Size": i.size,
                "SharedSize": i.shared_size,
                "UniqueSize": i.unique_size,
                "Containers": i.containers,
            }
            for i in report.images
        ],
        "Containers": [
            {
                "ContainerID": c.id,
                "Image": c.image_id,
                "Command": c.command,
                "LocalVolumes": c.local_volumes,
                "Size": c.size,
                "Created": c.created,
                "Status": c.status,
                "Names": c.names,
            }
            for c in report.containers
        ],
        "Volumes": [
            {"VolumeName": v.name, "Links": v.links, "Size": v.size} for v in report.volumes
        ],
    }
    return to_json(data) + "\n"


class _RuntimeFacts:
    """What the runtime knows about containers and volumes, for df (opened on first use)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._runtime: Any = None

    def _rt(self) -> Any:
        if self._runtime is None:
            from skiff.cli.runtimecli import open_runtime

            self._runtime = open_runtime(self._args)
        return self._runtime

    def describe(self, container_id: str) -> Any:
        from skiff.libimage.df import ContainerFacts
        from skiff.runtime import lifecycle

        rt = self._rt()
        container = rt.records.find(container_id)
        if container is None:
            return None
        with rt.lock(container.id):
            container = lifecycle.sync(rt, container)  # the state as of now, as ps shows it
        status = str(container.state.status)
        return ContainerFacts(
            command=" ".join(container.config.command),
            status=status,
            running=status in ("running", "paused"),
            local_volumes=len(container.config.volumes),
        )

    def volumes(self, store: Any) -> list[Any]:
        from skiff.libimage.df import VolumeUsage, tree_bytes
        from skiff.runtime.volumes.lifecycle import volume_users
        from skiff.runtime.volumes.manage import list_volumes

        out = []
        for volume in list_volumes(store):
            size = tree_bytes(str(volume.mountpoint))
            out.append(VolumeUsage(volume.name, len(volume_users(store, volume.name)), size))
        return out

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


# --- check ---------------------------------------------------------------------------------


def _register_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--repair", action="store_true", help="fix what can be fixed safely")
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="with --repair: also remove containers that depend on damaged layers",
    )
    parser.add_argument(
        "-q", "--quick", action="store_true", help="skip verifying layer contents (slow)"
    )
    parser.add_argument(
        "-m",
        "--max",
        metavar="DURATION",
        help="unused layers older than this (e.g. 24h) are leftovers of cancelled pulls",
    )
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_table
    from skiff.errors import StoreCorrupt
    from skiff.libimage.check import CheckOptions, check_store

    max_age = _duration(args.max) if args.max else None
    from skiff.cli.commands.rmi import RuntimeRemover

    remover = RuntimeRemover(args)
    try:
        report = check_store(
            system_context(args),
            CheckOptions(
                repair=args.repair,
                force=args.force,
                quick=args.quick,
                max_age=max_age,
                remove_container=remover,
            ),
        )
    finally:
        remover.close()
    if report.problems:
        headers = ["PROBLEM", "OBJECT", "DETAIL"]
        rows: list[tuple[str, ...]] = [(p.kind, p.subject, p.detail) for p in report.problems]
        if args.repair:
            headers.append("REPAIR")
            rows = [(*row, p.action) for row, p in zip(rows, report.problems, strict=True)]
        sys.stdout.write(format_table(headers, rows))
    remaining = report.remaining
    if remaining:
        raise StoreCorrupt(
            f"{len(remaining)} problem(s) found in the store",
            "run 'skiff system check --repair'"
            if not args.repair
            else "see the REPAIR column; --force also removes containers on damaged layers",
        )
    if not report.problems:
        print("No problems found")
    return 0


def _duration(text: str) -> float:
    import time

    from skiff.libimage.listing import parse_until

    now = time.time()
    try:
        seconds = now - parse_until(text, now=now)
    except UsageError:
        seconds = -1
    if seconds <= 0 or text.replace(".", "").isdigit():
        raise UsageError(f"invalid --max duration {text!r}", "use a Go duration such as 24h or 90m")
    return seconds


# --- prune ---------------------------------------------------------------------------------


def _register_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--all", action="store_true", help="remove all images no container uses"
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--filter", action="append", default=[], help="only images matching (label=, until=)"
    )
    parser.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.remove import PruneOptions, prune_images

    if not args.force:
        sys.stdout.write(PRUNE_ALL_WARNING if args.all else PRUNE_WARNING)
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    report = prune_images(
        system_context(args), PruneOptions(all=args.all, filters=tuple(args.filter))
    )
    if report.removed:
        sys.stdout.write("Deleted Images\n" + "".join(f"{i}\n" for i in report.removed))
    sys.stdout.write(f"Total reclaimed space: {_size(report.reclaimed)}\n")
    return 0


# --- info ----------------------------------------------------------------------------------


def _register_info(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.commands import info

    info.register(parser)


REGISTER: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "df": _register_df,
    "check": _register_check,
    "prune": _register_prune,
    "info": _register_info,
}
