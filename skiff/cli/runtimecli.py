"""Shared bits of the container commands: opening the runtime, finding images,
the container a command names, Go-style default-true flags, and SIGTERM/SIGHUP
turned into an exception so that a command stops through its cleanup."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

from skiff.errors import ImageUnknown, UsageError

_TRUE = ("true", "1", "t", "yes")
_FALSE = ("false", "0", "f", "no")


def add_true_by_default(
    parser: argparse.ArgumentParser, short: str, long: str, help_text: str
) -> None:
    """A boolean flag that is on unless the user writes ``LONG=false`` (or
    ``SHORT=false``, 0, f, no), as podman's Go flags take it. Each ``=VALUE``
    spelling is an option of its own: argparse matches a whole option string
    before splitting at "=", so the flag never takes the next word (an
    operand such as cp's SRC) as its value, which ``nargs="?"`` would."""
    dest = long.removeprefix("--").replace("-", "_")
    parser.add_argument(
        short, long, dest=dest, action="store_const", const=True, default=True, help=help_text
    )
    for value in _TRUE + _FALSE:
        parser.add_argument(
            f"{long}={value}",
            f"{short}={value}",
            dest=dest,
            action="store_const",
            const=value in _TRUE,
            help=argparse.SUPPRESS,
        )


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


@contextlib.contextmanager
def terminations_raise(make: Callable[[int], BaseException]) -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``make(signum)`` where the main thread stands,
    as Ctrl-C raises KeyboardInterrupt, so the work in progress unwinds through
    its cleanup (working containers, mounts, networks) instead of ending skiff
    where it stands and leaving them behind. The previous handlers are put back
    on exit."""

    def stop(signum: int, frame: object) -> None:
        raise make(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
