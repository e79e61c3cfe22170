"""``skiff rmi`` / ``skiff image rm`` (podman rmi): remove local images.

Prints ``Untagged: NAME`` lines, then ``Deleted: ID`` lines, as podman
does; exit codes are podman's: 1 when an image was not known, 2 when one
is in use by a container, 125 for other failures. With ``--force``, the
containers using an image are removed through the runtime (records,
storage, volumes) before the image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="remove all images")
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="remove images used by containers (and those containers), and images with several names by ID",
    )
    parser.add_argument(
        "-i", "--ignore", action="store_true", help="ignore images that are not known"
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.remove import RemoveOptions, remove_images

    remover = RuntimeRemover(args)
    try:
        report = remove_images(
            system_context(args),
            list(args.images),
            RemoveOptions(
                force=args.force, all=args.all, ignore=args.ignore, remove_container=remover
            ),
        )
    finally:
        remover.close()
    out = [f"Untagged: {name}\n" for name in report.untagged]
    out += [f"Deleted: {image_id}\n" for image_id in report.deleted]
    sys.stdout.write("".join(out))
    failure = report.failure()
    if failure is not None:
        raise failure
    return 0


class RuntimeRemover:
    """Removes a container through the runtime, opened on first use only."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._runtime: Any = None

    def __call__(self, container_id: str) -> None:
        remove = self._remove_fn()
        remove(container_id)

    def _remove_fn(self) -> Callable[[str], None]:
        from skiff.cli.runtimecli import open_runtime
        from skiff.runtime import lifecycle

        if self._runtime is None:
            self._runtime = open_runtime(self._args)
        rt = self._runtime

        def remove(container_id: str) -> None:
            container = rt.records.find(container_id)
            if container is not None:
                lifecycle.remove(rt, container, force=True)

        return remove

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
