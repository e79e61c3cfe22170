"""``skiff build [OPTIONS] [CONTEXT]`` (also ``bud`` and ``image build``): podman build.

Parses podman's flags, calls ``skiff.build.executor.build_image`` once and
prints what buildah prints: the steps (``STEP 1/8: FROM …``, ``--> Using
cache …``, ``--> ID``, ``COMMIT NAME``, ``Successfully tagged NAME``) and the
RUN commands' own output on stdout, warnings and pull progress on stderr,
and the image ID last on stdout. ``-q`` prints only the ID (and what RUN
commands write to stderr). A failing RUN exits with its command's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.cli import imageopts
from skiff.errors import SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.build.builder import PullPolicy


def register(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.commands.pull import add_platform_options, registry_options

    parser.add_argument(
        "context", nargs="?", default=".", metavar="CONTEXT", help="directory, tar or URL"
    )
    parser.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="CONTAINERFILE",
        help="the Containerfile ('-': standard input; default CONTEXT/Containerfile)",
    )
    parser.add_argument(
        "-t", "--tag", action="append", default=[], metavar="NAME", help="name of the image"
    )
    parser.add_argument("--target", metavar="STAGE", help="build this stage (and what it uses)")
    parser.add_argument(
        "--build-arg", action="append", default=[], metavar="ARG=VALUE", help="a build argument"
    )
    parser.add_argument(
        "--build-arg-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="build arguments from a file of ARG=VALUE lines",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="label of the image"
    )
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="annotation of the image's manifest (oci format)",
    )
    imageopts.add_bool(parser, "--layers", "cache every step as an image (default true)")
    parser.add_argument(
        "--no-cache", action="store_true", help="do not use cached steps (still cache new ones)"
    )
    parser.add_argument(
        "--pull",
        nargs="?",
        const="always",
        default=None,
        metavar="POLICY",
        help="pull base images: always (bare --pull), missing (default), never, newer",
    )
    parser.add_argument("--pull-always", action="store_true", help="same as --pull=always")
    parser.add_argument("--pull-never", action="store_true", help="same as --pull=never")
    parser.add_argument(
        "--format",
        default=os.environ.get("BUILDAH_FORMAT", "oci"),
        choices=("oci", "docker"),
        help="image format (default oci)",
    )
    parser.add_argument(
        "--squash", action="store_true", help="the image has one layer (its whole file system)"
    )
    parser.add_argument("--squash-all", action="store_true", help="same as --squash")
    parser.add_argument("--iidfile", type=Path, metavar="FILE", help="write the image ID there")
    parser.add_argument(
        "--timestamp",
        type=int,
        metavar="SECONDS",
        help="created time and file times of new layers (reproducible images)",
    )
    parser.add_argument(
        "--ignorefile", type=Path, metavar="FILE", help="instead of .containerignore"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="stages built at once")
    parser.add_argument(
        "--network",
        "--net",
        default="private",
        help="network of RUN: private (default), none, host, or a network's name",
    )
    parser.add_argument(
        "-v", "--volume", action="append", default=[], help="bind mount for every RUN (HOST:CTR)"
    )
    imageopts.add_bool(parser, "--rm", "remove working containers after each step (default true)")
    imageopts.add_bool(parser, "--force-rm", "remove working containers even after a failure")
    add_platform_options(parser)
    registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.build.executor import BuildOptions, build_image
    from skiff.cli.commands.pull import platform_context, registry_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.runtimecli import terminations_raise
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.pull import PullOptions

    if len(args.file) > 1:
        raise UsageError("give one Containerfile with -f", "combine the files into one")
    containerfile = args.file[0] if args.file else None
    text = None
    if containerfile == "-":
        text = sys.stdin.read()
    ctx = platform_context(registry_context(args), args)
    copy_options = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy_options, ctx, args)
    quiet = args.quiet
    options = BuildOptions(
        context=args.context,
        containerfile=containerfile,
        containerfile_text=text,
        tags=list(args.tag),
        target=args.target,
        build_args=build_args(args.build_arg, args.build_arg_file),
        labels=list(args.label),
        annotations=list(args.annotation),
        layers=args.layers is not False,
        no_cache=args.no_cache,
        pull=_pull_policy(args),
        pull_options=PullOptions(copy=copy_options, notes=None if quiet else _stderr),
        format=args.format,
        squash=args.squash or args.squash_all,
        iidfile=args.iidfile,
        timestamp=args.timestamp,
        ignorefile=args.ignorefile,
        jobs=args.jobs,
        network=args.network,
        volumes=list(args.volume),
        rm=args.rm is not False,
        force_rm=bool(args.force_rm),
        platform=_platform(args),
        log=None if quiet else _stdout,
        warn=_warn,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=None,
    )
    # SIGTERM and SIGHUP stop a build the way Ctrl-C does: through its cleanup
    with terminations_raise(_Terminated):
        report = build_image(ctx, options)
    print(report.image_id, flush=True)
    return 0


def build_args(items: list[str], files: list[Path]) -> dict[str, str]:
    """``--build-arg-file`` lines first, then ``--build-arg`` (later wins).

    ``KEY`` without ``=`` takes the value from skiff's environment, and is
    left out when unset (podman's rule)."""
    values: dict[str, str] = {}
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UsageError(
                f"cannot read --build-arg-file {path}: {exc.strerror}", "check the path"
            ) from exc
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, sep, value = stripped.partition("=")
            if not sep or not key:
                raise UsageError(
                    f"{path}:{number}: invalid build argument {stripped!r}", "write ARG=VALUE"
                )
            values[key] = value
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {item!r}", "write ARG=VALUE")
        if sep:
            values[key] = value
        elif key in os.environ:
            values[key] = os.environ[key]
    return values


def _platform(args: argparse.Namespace) -> str | None:
    """The platform asked for (``--platform``, or ``--os``/``--arch``/``--variant``),
    which the executor accepts only when it is the host's."""
    if args.platform:
        return str(args.platform)
    if not (args.os or args.arch or args.variant):
        return None
    from skiff.oci.platform import host_platform

    host = host_platform()
    text = f"{args.os or host.os}/{args.arch or host.architecture}"
    variant = args.variant or (host.variant if not args.arch else "")
    return f"{text}/{variant}" if variant else text


def _pull_policy(args: argparse.Namespace) -> PullPolicy:
    from skiff.build.builder import PullPolicy

    if args.pull_always:
        return PullPolicy.ALWAYS
    if args.pull_never:
        return PullPolicy.NEVER
    if args.pull is None:
        return PullPolicy.MISSING
    text = args.pull.lower()
    if text == "true":  # podman's boolean form means always
        return PullPolicy.ALWAYS
    return PullPolicy.parse(text)


def _stdout(line: str) -> None:
    print(line, flush=True)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _warn(text: str) -> None:
    sys.stdout.flush()
    if text.startswith("[Warning]"):
        print(text, file=sys.stderr, flush=True)
    else:
        print(f"WARN[0000] {text}", file=sys.stderr, flush=True)


class _Terminated(SkiffError):
    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}; the build was stopped and cleaned up")
        self.exit_code = 128 + signum
