"""``skiff ps`` (podman ps): list containers."""

from __future__ import annotations

import argparse
import sys

from skiff.errors import UsageError

DEFAULT_COLUMNS = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
]
HEADERS = {
    "ID": "CONTAINER ID",
    "RunningFor": "CREATED",
    "CreatedHuman": "CREATED",
    "CreatedAt": "CREATED AT",
    "Names": "NAMES",
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all containers")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the IDs only")
    parser.add_argument("-s", "--size", action="store_true", help="display the total file sizes")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    parser.add_argument(
        "-f", "--filter", action="append", default=[], help="filter output (KEY=VALUE)"
    )
    parser.add_argument("--format", help="'json' or a Go template")
    parser.add_argument(
        "-n", "--last", type=int, default=-1, help="print the n last created containers"
    )
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("--noheading", action="store_true", help="do not print headers")
    parser.add_argument("-p", "--pod", action="store_true", help="print the pod of each container")
    parser.add_argument(
        "--sort", default="created", help="sort by created, id, image, names, status"
    )
    parser.set_defaults(func=run)


def _matches(row: object, filters: list[tuple[str, str]]) -> bool:
    from skiff.runtime.listing import PsRow

    assert isinstance(row, PsRow)
    by_key: dict[str, list[str]] = {}
    for key, value in filters:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        if key == "status":
            ok = any(row.State == v or (v == "exited" and row.State == "stopped") for v in values)
        elif key == "name":
            import re

            ok = any(re.search(v, row.Names) for v in values)
        elif key == "id":
            ok = any(row.Id.startswith(v) for v in values)
        elif key == "label":
            ok = all(_label_match(row.Labels, v) for v in values)
        elif key == "ancestor":
            ok = any(
                v in (row.Image, row.ImageID)
                or row.ImageID.startswith(v)
                or row.Image.split(":")[0].endswith(v.split(":")[0])
                for v in values
            )
        elif key == "exited":
            ok = row.Exited and any(str(row.ExitCode) == v for v in values)
        elif key == "pod":
            ok = any(
                v in (row.Pod, row.PodName) or (row.Pod and row.Pod.startswith(v)) for v in values
            )
        elif key == "network":
            ok = any(v in row.Networks for v in values)
        else:
            raise UsageError(
                f"{key} is an invalid filter",
                "valid: status, name, id, label, ancestor, exited, pod, network",
            )
        if not ok:
            return False
    return True


def _label_match(labels: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def run(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.listing import list_containers, ps_row

    filters = []
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid filter {item!r}", "expected KEY=VALUE")
        filters.append((key, value))
    rt = open_runtime(args)
    try:
        wanted_all = args.all or any(k in ("status", "exited") for k, _ in filters)
        containers = list_containers(rt, all_containers=wanted_all or args.latest or args.last > 0)
        from skiff.runtime.pods.records import PodRecords

        pod_names = PodRecords(rt.store.db).names()
        rows = [ps_row(c, pod_names) for c in containers]
        rows = [r for r in rows if _matches(r, filters)]
        if args.latest:
            rows = rows[:1]
        elif args.last > 0:
            rows = rows[: args.last]
        if args.no_trunc:
            for r in rows:
                r.ID = r.Id
        if args.quiet:
            for r in rows:
                print(r.ID)
            return 0
        columns = list(DEFAULT_COLUMNS)
        json_items = [r.json() for r in rows] if is_json(args.format) else None
        if args.pod:
            columns.append(("Pod", "POD ID"))
            columns.append(("PodName", "PODNAME"))
            if not args.no_trunc:
                for r in rows:
                    r.Pod = r.Pod[:12]
        sys.stdout.write(
            format_items(
                args.format,
                rows,
                columns,
                headers=HEADERS,
                json_items=json_items,
                noheading=args.noheading,
            )
        )
        return 0
    finally:
        rt.close()
