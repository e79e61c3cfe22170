"""``skiff system-container install|uninstall|update|rollback|list|inspect``.

One module for the group (``register`` gets the parser of one subcommand;
its ``prog`` ends with the subcommand's name). The work is
``skiff.system.install``'s; here flags become options and reports become
lines: what was done on stdout, notes (skipped systemd steps, kept files)
on stderr. ``list`` prints a table (``--format json`` or a Go template as
everywhere); ``inspect`` a JSON array, or ``--format '{{.Rootfs}}'``.

Every command takes ``--systemd-dir`` (default /etc/systemd/system), and
``--tmpfiles-dir``/``--host-root`` for tmpfiles.d files and hostfs; after
install, a directory given must be the one recorded at install.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.libimage.pull import PullOptions
    from skiff.system.install import ChangeReport, HostDirs

LIST_COLUMNS = [
    ("Name", "NAME"),
    ("Image", "IMAGE"),
    ("ID", "IMAGE ID"),
    ("Deployment", "DEPLOYMENT"),
    ("Unit", "UNIT"),
]


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    _dir_options(parser)
    if command == "install":
        _register_install(parser)
    elif command == "update":
        _register_update(parser)
    elif command in ("rollback", "uninstall"):
        parser.add_argument("name", metavar="NAME", help="the system container")
        if command == "rollback":
            parser.add_argument(
                "--force",
                action="store_true",
                help="overwrite host files that are not this container's",
            )
        parser.set_defaults(func=_run_rollback if command == "rollback" else _run_uninstall)
    elif command == "list":
        parser.add_argument("--format", help="'json', a Go template, or 'table ...'")
        parser.add_argument(
            "-n", "--noheading", action="store_true", help="do not print column headings"
        )
        parser.set_defaults(func=_run_list)
    elif command == "inspect":
        parser.add_argument("names", nargs="+", metavar="NAME", help="system containers")
        parser.add_argument("-f", "--format", help="a Go template, e.g. '{{.Rootfs}}'")
        parser.set_defaults(func=_run_inspect)


def _dir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--systemd-dir",
        type=Path,
        metavar="DIR",
        help="where unit files go (default /etc/systemd/system)",
    )
    parser.add_argument(
        "--tmpfiles-dir",
        type=Path,
        metavar="DIR",
        help="where tmpfiles.d files go (default /etc/tmpfiles.d)",
    )
    parser.add_argument(
        "--host-root",
        type=Path,
        metavar="DIR",
        help="the host directory /exports/hostfs is copied to (default /)",
    )


def _dirs(args: argparse.Namespace) -> HostDirs:
    from skiff.system.install import HostDirs

    return HostDirs(args.systemd_dir, args.tmpfiles_dir, args.host_root)


def _registry_flags(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.commands.pull import registry_options

    registry_options(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no pull progress, only the results"
    )


def _register_install(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image name or TRANSPORT:REFERENCE")
    parser.add_argument("--name", help="name of the system container and its unit")
    parser.add_argument(
        "--set",
        dest="values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value for the image's templates (repeatable)",
    )
    parser.add_argument(
        "--rootfs", type=Path, metavar="DIR", help="run on this directory as the read-only rootfs"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite host files that are not skiff's"
    )
    _registry_flags(parser)
    parser.set_defaults(func=_run_install)


def _register_update(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the system container")
    parser.add_argument("--rebase", metavar="IMAGE", help="switch to another image")
    parser.add_argument(
        "--force", action="store_true", help="overwrite host files that are not skiff's"
    )
    _registry_flags(parser)
    parser.set_defaults(func=_run_update)


def _pull_options(args: argparse.Namespace) -> tuple[SystemContext, PullOptions]:
    from skiff.cli.commands.pull import _stderr_line, registry_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.pull import PullOptions

    ctx = registry_context(args)
    copy_options = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy_options, ctx, args)
    return ctx, PullOptions(copy=copy_options, notes=None if args.quiet else _stderr_line)


def _print_report(report: ChangeReport) -> None:
    for line in report.actions:
        print(line)
    sys.stdout.flush()
    for note in report.notes:
        print(f"Note: {note}", file=sys.stderr)


def _run_install(args: argparse.Namespace) -> int:
    from skiff.system.install import InstallOptions, install
    from skiff.system.templates import parse_set_values

    values = parse_set_values(args.values)
    ctx, pull = _pull_options(args)
    report = install(
        ctx,
        args.image,
        InstallOptions(
            name=args.name,
            values=values,
            rootfs=args.rootfs,
            force=args.force,
            dirs=_dirs(args),
            pull=pull,
        ),
    )
    _print_report(report)
    return 0


def _run_update(args: argparse.Namespace) -> int:
    from skiff.system.install import UpdateOptions, update

    ctx, pull = _pull_options(args)
    report = update(
        ctx,
        args.name,
        UpdateOptions(rebase=args.rebase, force=args.force, dirs=_dirs(args), pull=pull),
    )
    _print_report(report)
    return 0


def _run_rollback(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.system.install import ChangeOptions, rollback

    report = rollback(
        system_context(args), args.name, ChangeOptions(force=args.force, dirs=_dirs(args))
    )
    _print_report(report)
    return 0


def _run_uninstall(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.system.install import ChangeOptions, uninstall

    report = uninstall(system_context(args), args.name, ChangeOptions(dirs=_dirs(args)))
    _print_report(report)
    return 0


def _notes(notes: list[str]) -> None:
    for note in notes:
        print(f"Note: {note}", file=sys.stderr)


def _run_list(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_items, is_json, short_id
    from skiff.system.query import list_system_containers

    notes: list[str] = []
    views = list_system_containers(system_context(args), notes, _dirs(args))
    _notes(notes)
    if is_json(args.format):
        sys.stdout.write(format_items(args.format, views))
        return 0
    rows = [
        {
            "Name": v.Name,
            "Image": v.Image,
            "ID": short_id(v.ImageID),
            "ImageID": v.ImageID,
            "Deployment": v.Deployment,
            "Unit": v.Unit or "-",
            "Rootfs": v.Rootfs,
            "Directory": v.Directory,
        }
        for v in views
    ]
    sys.stdout.write(format_items(args.format, rows, LIST_COLUMNS, noheading=args.noheading))
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import format_items
    from skiff.errors import UsageError
    from skiff.system.query import inspect_system_container

    notes: list[str] = []
    ctx = system_context(args)
    views = [inspect_system_container(ctx, name, notes, _dirs(args)) for name in args.names]
    _notes(notes)
    if args.format == "":
        raise UsageError("--format needs a template")
    sys.stdout.write(format_items(args.format, views))
    return 0
