"""``skiff umount`` (containers) and ``skiff image umount`` (podman's).

Drops one mount reference per name (all of them with ``--force``); the
file system is unmounted when none is left. Containers are printed as the
user named them, images by ID, as podman prints them. Every name is
resolved before anything is unmounted, so a typo unmounts nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from skiff.errors import SkiffError, UsageError


def register(parser: argparse.ArgumentParser) -> None:
    images = parser.prog.split()[-2] == "image"
    parser.add_argument("-a", "--all", action="store_true", help="unmount all")
    parser.add_argument(
        "-f", "--force", action="store_true", help="unmount even if others still use the mount"
    )
    parser.add_argument("names", nargs="*", metavar="IMAGE" if images else "CONTAINER")
    parser.set_defaults(func=run_images if images else run_containers)


def _busy_check(args: argparse.Namespace) -> Callable[[str], str | None]:
    """The runtime's answer to "may this container be unmounted?" (not while it runs)."""
    from skiff.cli.runtimecli import open_runtime

    def busy(container_id: str) -> str | None:
        rt = open_runtime(args)
        try:
            container = rt.records.find(container_id)
            if container is None:
                return None
            status = str(container.state.status)
            if status in ("running", "paused"):
                return f"it is {status}"
            return None
        finally:
            rt.close()

    return busy


def run_containers(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage import mounts
    from skiff.storage.store import Store

    if not args.names and not args.all:
        raise UsageError("container name or ID must be specified", "or use --all")
    ctx = system_context(args)
    if args.names:
        store = Store.open(ctx)
        try:
            for name in args.names:
                if store.containers.find(name) is None:
                    from skiff.errors import ContainerUnknown

                    raise ContainerUnknown(
                        f'no container with name or ID "{name}" found: no such container'
                    )
        finally:
            store.close()
    report = mounts.unmount(
        ctx,
        list(args.names),
        mounts.UnmountOptions(all=args.all, force=args.force, busy=_busy_check(args)),
    )
    sys.stdout.write("".join(f"{name}\n" for name in report.unmounted))
    return _fail(report.errors)


def run_images(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage import mounts

    if not args.names and not args.all:
        raise UsageError("image name or ID must be specified", "or use --all")
    report = mounts.unmount_images(
        system_context(args),
        list(args.names),
        mounts.UnmountOptions(all=args.all, force=args.force),
    )
    sys.stdout.write("".join(f"{image_id}\n" for image_id in report.unmounted))
    return _fail(report.errors)


def _fail(errors: list[SkiffError]) -> int:
    if not errors:
        return 0
    for error in errors[:-1]:
        print(f"Error: {error}", file=sys.stderr)
    raise errors[-1]
