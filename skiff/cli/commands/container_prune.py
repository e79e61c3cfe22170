"""``skiff container prune`` (podman's): remove all containers that are not running.

Prints the ID of each container removed. Without ``-f`` it asks first, as
podman does (anything but y/Y leaves everything in place).
"""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only containers matching: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE]",
    )
    parser.set_defaults(func=run)


def _confirmed() -> bool:
    sys.stdout.write(
        "WARNING! This will remove all non running containers.\n"
        "Are you sure you want to continue? [y/N] "
    )
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.prune import parse_filters, prune_containers

    flt = parse_filters(args.filter)
    if not args.force and not _confirmed():
        return 0
    rt = open_runtime(args)
    try:
        report = prune_containers(rt, flt)
        for container_id in report.removed:
            print(container_id)
        sys.stdout.flush()
        for container_id, exc in report.errors:
            print(f"Error: removing container {container_id[:12]}: {exc}", file=sys.stderr)
        return report.errors[-1][1].exit_code if report.errors else 0
    finally:
        rt.close()
