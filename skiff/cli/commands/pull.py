"""``skiff pull IMAGE...`` (podman pull): progress on stderr, image IDs on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

from skiff.cli import imageopts
from skiff.errors import UsageError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.libimage.pull import PullReport


def add_platform_options(parser: argparse.ArgumentParser) -> None:
    """``--platform OS/ARCH[/VARIANT]`` and its parts, as podman pull/create take them."""
    parser.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the platform to choose from a manifest list (conflicts with --arch and --os)",
    )
    parser.add_argument("--arch", metavar="ARCH", help="use ARCH instead of the machine's")
    parser.add_argument("--os", metavar="OS", help="use OS instead of the running OS")
    parser.add_argument(
        "--variant", metavar="VARIANT", help="use VARIANT instead of the machine's variant"
    )


def platform_context(ctx: SystemContext, args: argparse.Namespace) -> SystemContext:
    """``ctx`` with the platform the flags ask for (podman's rules and wording)."""
    from skiff.oci.platform import Platform

    if args.platform:
        if args.arch or args.os:
            raise UsageError("--platform option can not be specified with --arch or --os")
        platform = Platform.parse(args.platform)
        return dataclasses.replace(
            ctx,
            override_os=platform.os,
            override_arch=platform.architecture,
            override_variant=platform.variant or args.variant or None,
        )
    return dataclasses.replace(
        ctx,
        override_os=args.os or ctx.override_os,
        override_arch=args.arch or ctx.override_arch,
        override_variant=args.variant or ctx.override_variant,
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image name or reference")
    parser.add_argument(
        "-a",
        "--all-tags",
        action="store_true",
        help="pull every tagged image of the repository",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the image ID, no progress"
    )
    add_platform_options(parser)
    registry_options(parser)
    parser.set_defaults(func=run)


def registry_options(parser: argparse.ArgumentParser) -> None:
    """The registry flags pull and push share (podman's names)."""
    from pathlib import Path

    imageopts.add_side_options(parser, "")
    parser.add_argument(
        "--authfile",
        type=Path,
        metavar="PATH",
        help="path of the authentication file (default: ${XDG_RUNTIME_DIR}/containers/auth.json)",
    )
    parser.add_argument(
        "--retry",
        dest="retry_times",
        type=int,
        metavar="N",
        help="times to retry on transient registry errors (default 3)",
    )
    parser.add_argument(
        "--retry-delay",
        metavar="DURATION",
        help="delay between retries, e.g. 2s or 500ms (default: exponential backoff)",
    )
    parser.add_argument(
        "--disable-content-trust",
        action="store_true",
        help="Docker's flag, accepted and ignored as podman does",
    )


def registry_context(args: argparse.Namespace) -> SystemContext:
    """The context for one registry operation: global flags, then the registry flags."""
    from skiff.cli.context import system_context

    if args.retry_times is not None and args.retry_times < 0:
        raise UsageError("--retry must not be negative")
    ctx = imageopts.side_context(system_context(args), args, "")
    if args.retry_delay:
        ctx = dataclasses.replace(ctx, retry_delay=parse_duration(args.retry_delay))
    return ctx


def parse_duration(text: str) -> float:
    """Go durations as podman takes them for --retry-delay: 500ms, 2s, 1m30s."""
    import re

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r}", "use e.g. 500ms, 2s or 1m30s")
    return sum(float(number) * units[unit] for number, unit in parts)


def run(args: argparse.Namespace) -> int:
    ctx = platform_context(registry_context(args), args)
    for text in args.images:
        report = pull_with_output(ctx, text, args, quiet=args.quiet, all_tags=args.all_tags)
        for image_id in report.image_ids:
            print(image_id, flush=True)
    return 0


def pull_with_output(
    ctx: SystemContext,
    text: str,
    args: argparse.Namespace,
    *,
    quiet: bool,
    all_tags: bool = False,
) -> PullReport:
    """Pull as ``skiff pull`` shows it (progress and "Trying to pull" on stderr).

    For commands that pull on the way (``run``/``create --pull``): they get
    podman's output and the trust policy of ``args`` without repeating it.
    """
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.pull import PullOptions, pull_image

    copy_options = CopyOptions(progress=podman_progress(quiet))
    attach_policy_and_signers(copy_options, ctx, args)
    options = PullOptions(
        all_tags=all_tags, copy=copy_options, notes=None if quiet else _stderr_line
    )
    return pull_image(ctx, text, options)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
