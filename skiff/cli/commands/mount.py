"""``skiff mount`` (containers; images too) and ``skiff image mount`` (podman's).

With names: mount each and print its merged directory (``image mount``
of several images prints ``NAME  PATH`` rows, as podman). Without: list
what is mounted — containers as ``ID  PATH``, images as ``NAME  PATH`` —
or, with ``--format json``, podman's JSON (indented by one space).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skiff.libimage.mounts import MountedImage

JSON_INDENT = " "


def register(parser: argparse.ArgumentParser) -> None:
    images = parser.prog.split()[-2:] == ["image", "mount"]
    parser.add_argument("-a", "--all", action="store_true", help="mount all")
    parser.add_argument("--format", help="'json' to list mounts as JSON")
    if not images:
        parser.add_argument(
            "--notruncate", action="store_true", help="do not truncate IDs in the listing"
        )
    parser.add_argument(
        "names", nargs="*", metavar="IMAGE" if images else "CONTAINER", help="what to mount"
    )
    parser.set_defaults(func=run_images if images else run_containers)


def _json(data: Any) -> str:
    from skiff.gotemplate.gojson import encode

    return encode(data, escape_html=True, indent=JSON_INDENT) + "\n"


def _check_format(fmt: str | None) -> None:
    from skiff.cli.output import is_json
    from skiff.errors import UsageError

    if fmt is not None and not is_json(fmt):
        raise UsageError(f"unknown --format {fmt!r}", "only 'json' is supported")


def run_containers(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_table
    from skiff.libimage import mounts

    _check_format(args.format)
    ctx = system_context(args)
    names = list(args.names)
    if args.all:
        from skiff.storage.store import Store

        store = Store.open(ctx)
        try:
            names = [c.id for c in store.containers.all()]
        finally:
            store.close()
    if names:
        report = mounts.mount(ctx, names, mounts.MountOptions(images_too=not args.all))
        sys.stdout.write("".join(f"{path}\n" for path in report.paths))
        return 0
    listed = mounts.mounted_containers(ctx)
    if args.format is not None:
        data = [{"id": m.id, "Names": list(m.names), "mountpoint": m.mountpoint} for m in listed]
        sys.stdout.write(_json(data))
        return 0
    rows = [(m.id if args.notruncate else m.id[:12], m.mountpoint) for m in listed]
    sys.stdout.write(format_table([], rows))
    return 0


def run_images(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_table
    from skiff.libimage import mounts

    _check_format(args.format)
    ctx = system_context(args)
    if args.names or args.all:
        names = list(args.names)
        if args.all:
            from skiff.storage.store import Store

            store = Store.open(ctx)
            try:
                names = [i.id for i in store.images.all()]
            finally:
                store.close()
        report = mounts.mount_images(ctx, names)
        if len(report.images) == 1 and not args.all:
            sys.stdout.write(f"{report.paths[0]}\n")
            return 0
        sys.stdout.write(format_table([], [(_label(m), m.mountpoint) for m in report.images]))
        return 0
    listed = mounts.mounted_images(ctx)
    if args.format is not None:
        data = [
            {
                "id": m.id,
                "Names": list(m.digests),
                "Repositories": list(m.repositories),
                "mountpoint": m.mountpoint,
            }
            for m in listed
        ]
        sys.stdout.write(_json(data))
        return 0
    sys.stdout.write(format_table([], [(_label(m), m.mountpoint) for m in listed]))
    return 0


def _label(mounted: MountedImage) -> str:
    return mounted.repositories[0] if mounted.repositories else mounted.id[:12]
