"""``skiff rm`` (podman rm): remove containers."""

from __future__ import annotations

import argparse
import sys

from skiff.errors import ContainerUnknown, SkiffError, UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="remove all containers")
    parser.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    parser.add_argument("-i", "--ignore", action="store_true", help="ignore unknown containers")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    parser.add_argument("-t", "--time", type=int, help="seconds to wait for stop before killing")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime import lifecycle

    if not args.all and not args.containers:
        raise UsageError("rm: you must provide at least one container name or ID", "or use --all")
    rt = open_runtime(args)
    try:
        targets = rt.records.all() if args.all else args.containers
        last: SkiffError | None = None
        for target in targets:
            try:
                container = rt.records.get(target) if isinstance(target, str) else target
                lifecycle.remove(
                    rt, container, force=args.force, volumes=args.volumes, timeout=args.time
                )
                print(container.id)
            except ContainerUnknown as exc:
                if args.ignore:
                    continue
                last = exc
                print(f"Error: {exc}", file=sys.stderr)
            except SkiffError as exc:
                last = exc
                print(f"Error: {exc}", file=sys.stderr)
        if last is not None:
            return 1 if isinstance(last, ContainerUnknown) else last.exit_code
        return 0
    finally:
        rt.close()
