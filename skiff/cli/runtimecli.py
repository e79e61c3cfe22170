"""Shared bits of the container commands: opening the runtime, finding images,
the container a command names."""

from __future__ import annotations

import argparse
from typing import Any

from skiff.errors import ImageUnknown, UsageError


def open_runtime(args: argparse.Namespace) -> Any:
    from skiff.cli.context import system_context
    from skiff.runtime.engine import Runtime

    return Runtime(system_context(args))


def container_or_latest(rt: Any, ref: str | None, latest: bool, command: str) -> Any:
    """The container a command names, or with ``--latest`` the last one created
    (podman's ``-l``); ``command`` names the command in the error when there is none."""
    if not latest:
        return rt.records.get(ref)
    everything = rt.records.all()
    if not everything:
        raise UsageError(f"{command} --latest: there are no containers")
    return everything[-1]


def image_for_run(rt: Any, args: argparse.Namespace, name: str, pull: str, quiet: bool) -> Any:
    """The local image for ``run``/``create``, pulled per ``--pull`` (podman's policies)."""
    store = rt.store
    image = None if pull == "always" else store.images.find(name)
    if image is not None and pull != "newer":
        return image
    if pull == "never":
        raise ImageUnknown(f"{name}: image not known", "pull it first, or use --pull=missing")
    from skiff.cli import imageopts
    from skiff.cli.commands.pull import pull_with_output

    ctx = imageopts.side_context(rt.ctx, args, "")
    report = pull_with_output(ctx, name, args, quiet=quiet)
    return store.images.get(report.image_ids[-1])
