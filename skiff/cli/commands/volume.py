"""``skiff volume create|ls|inspect|rm|prune|exists|mount|unmount`` (podman volume).

One module for the whole group: ``register`` is called with the parser of
one subcommand (its ``prog`` ends with the subcommand's name) and adds that
subcommand's flags. Output follows podman 4.3: ``ls`` prints DRIVER and
VOLUME NAME, and nothing at all when there are no volumes; ``inspect`` a
JSON array indented by five spaces; ``ls --format json`` two spaces, with
podman's spelling of an empty map (``{``, a blank line, ``}``); ``rm``,
``prune`` and ``unmount`` the names, ``create`` the name, ``mount`` the
directory. ``rm`` exits 1 for an unknown volume and 2 for one in use.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from skiff.cli.objectgroup import (
    gojson,
    key_values,
    open_store,
    print_error,
    prune_confirmed,
    rm_exit_code,
)
from skiff.errors import SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.runtime.volumes.model import Volume
    from skiff.storage.store import Store

INSPECT_INDENT = " " * 5  # podman volume inspect
LS_JSON_INDENT = " " * 2  # podman volume ls --format json
PRUNE_WARNING = (
    "WARNING! This will remove all volumes not used by at least one container. "
    "The following volumes will be removed:\n"
)
PRUNE_QUESTION = "Are you sure you want to continue? [y/N] "
_EMPTY_MAP = re.compile(r'^( *)("(?:[^"\\]|\\.)*": )\{\}(,?)$', re.MULTILINE)


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    REGISTER[command](parser)


# --- helpers -------------------------------------------------------------------------


def _ls_json(obj: object) -> str:
    """podman's ``volume ls --format json``: an empty map is ``{``, a line holding
    the inner indentation, then ``}`` (its JSON library's way)."""
    text = gojson(obj, LS_JSON_INDENT)
    return _EMPTY_MAP.sub(lambda m: f"{m[1]}{m[2]}{{\n{m[1]}{LS_JSON_INDENT}\n{m[1]}}}{m[3]}", text)


# --- create --------------------------------------------------------------------------


def _register_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="volume name (default: random)")
    parser.add_argument("-d", "--driver", default="local", help="volume driver (local)")
    parser.add_argument(
        "-l", "--label", action="append", default=[], help="set metadata KEY[=VALUE] (repeatable)"
    )
    parser.add_argument(
        "-o",
        "--opt",
        action="append",
        default=[],
        help="driver option: type=…, device=…, o=… (as mount -t, the device, mount -o)",
    )
    parser.add_argument(
        "--ignore", action="store_true", help="do not fail if the volume already exists"
    )
    parser.set_defaults(func=_run_create)


def _run_create(args: argparse.Namespace) -> int:
    from skiff.runtime.volumes.manage import create_volume
    from skiff.runtime.volumes.store import CreateOptions

    options = CreateOptions(
        name=args.name,
        driver=args.driver,
        labels=key_values(args.label, "--label"),
        options=key_values(args.opt, "--opt"),
    )
    print(create_volume(open_store(args), options, ignore=args.ignore).name)
    return 0


# --- ls ------------------------------------------------------------------------------


def _register_ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filter", action="append", default=[], help="filter output (e.g. name=foo)"
    )
    parser.add_argument("--format", help="'json' or a Go template")
    parser.add_argument("--noheading", action="store_true", help="do not print headers")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only volume names")
    parser.set_defaults(func=_run_ls)


def _run_ls(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.runtime.volumes.manage import list_volumes

    volumes = list_volumes(open_store(args), args.filter)
    if is_json(args.format):
        print(_ls_json([v.inspect_json() for v in volumes]))
        return 0
    if not volumes:
        return 0  # podman 4.3 prints not even the header
    if args.quiet:
        for volume in volumes:
            print(volume.name)
        return 0
    sys.stdout.write(
        format_items(
            args.format,
            [v.template_data() for v in volumes],
            default_columns=[("Driver", "DRIVER"), ("Name", "VOLUME NAME")],
            headers={"Name": "VOLUME NAME"},
            noheading=args.noheading,
        )
    )
    return 0


# --- inspect -------------------------------------------------------------------------


def _register_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volumes", metavar="VOLUME", nargs="*", help="volume name")
    parser.add_argument("-a", "--all", action="store_true", help="inspect all volumes")
    parser.add_argument("-f", "--format", help="'json' or a Go template applied to each volume")
    parser.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.runtime.volumes.store import VolumeStore

    if bool(args.volumes) == bool(args.all):
        raise UsageError(
            "provide one or more volume names or use --all", "see 'skiff volume inspect --help'"
        )
    volumes = VolumeStore.of(open_store(args))
    found: list[Volume] = []
    missing: str | None = None
    if args.all:
        found = volumes.all()
    for name in args.volumes:
        volume = volumes.find(name)
        if volume is None:
            missing = missing or name
        else:
            found.append(volume)
    if args.format is None or is_json(args.format):
        print(gojson([v.inspect_json() for v in found], INSPECT_INDENT))
    else:
        sys.stdout.write(format_items(args.format, [v.template_data() for v in found]))
    if missing is not None:
        raise UsageError(
            f"inspecting object: no such volume {missing}", "list volumes with 'skiff volume ls'"
        )
    return 0


# --- rm, prune, exists ---------------------------------------------------------------


def _register_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volumes", metavar="VOLUME", nargs="*", help="volume name")
    parser.add_argument("-a", "--all", action="store_true", help="remove all volumes")
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="remove the containers using the volume, then the volume",
    )
    parser.add_argument(
        "-t",
        "--time",
        type=int,
        default=10,
        help="seconds to wait for running containers to stop before killing them",
    )
    parser.set_defaults(func=_run_rm)


def _container_remover(args: argparse.Namespace, store: Store) -> Callable[[str], None]:
    """podman's ``volume rm -f``: remove the containers using the volume first
    (stopping them, anonymous volumes kept). A user record whose container
    no longer exists is stale and is simply dropped."""
    from skiff.cli.context import system_context
    from skiff.errors import ContainerUnknown
    from skiff.runtime import lifecycle
    from skiff.runtime.engine import Runtime
    from skiff.runtime.volumes import release

    rt = Runtime(system_context(args), store)

    def remover(container_id: str) -> None:
        try:
            container = rt.records.get(container_id)
        except ContainerUnknown:
            release(store, container_id, remove_anonymous=False)
            return
        lifecycle.remove(rt, container, force=True, volumes=False, timeout=args.time)

    return remover


def _run_rm(args: argparse.Namespace) -> int:
    from skiff.errors import VolumeUnknown
    from skiff.runtime.volumes.manage import remove_volume
    from skiff.runtime.volumes.model import VolumeInUse
    from skiff.runtime.volumes.store import VolumeStore

    if bool(args.volumes) == bool(args.all):
        raise UsageError("choose either one or more volumes or all", "see 'skiff volume rm --help'")
    store = open_store(args)
    names = [v.name for v in VolumeStore.of(store).all()] if args.all else args.volumes
    remover = _container_remover(args, store) if args.force else None
    status = 0
    for name in names:
        try:
            print(remove_volume(store, name, force=args.force, remove_container=remover).name)
        except SkiffError as exc:
            print_error(exc)
            status = rm_exit_code(exc, status, VolumeUnknown, VolumeInUse)
    return status


def _register_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter", action="append", default=[], help="e.g. label=KEY[=VALUE], until=24h"
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(func=_run_prune)


def _confirm(names: list[str], ask: Callable[[], str]) -> bool:
    sys.stdout.write(PRUNE_WARNING)
    if not names:
        sys.stdout.write("No dangling volumes found\n")
        return False
    sys.stdout.write("".join(f"{n}\n" for n in names) + PRUNE_QUESTION)
    return prune_confirmed(ask)


def _run_prune(args: argparse.Namespace) -> int:
    from skiff.runtime.volumes.manage import prune_candidates, prune_volumes

    store = open_store(args)
    if not args.force:
        names = [v.name for v in prune_candidates(store, args.filter)]
        if not _confirm(names, input):
            return 0
    for name in prune_volumes(store, args.filter):
        print(name)
    return 0


def _register_exists(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", metavar="VOLUME", help="volume name")
    parser.set_defaults(func=_run_exists)


def _run_exists(args: argparse.Namespace) -> int:
    from skiff.runtime.volumes.store import VolumeStore

    return 0 if VolumeStore.of(open_store(args)).exists(args.volume) else 1


# --- mount, unmount ------------------------------------------------------------------


def _register_mount(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", metavar="NAME", help="volume name")
    parser.set_defaults(func=_run_mount)


def _run_mount(args: argparse.Namespace) -> int:
    from skiff.runtime.volumes.driver import mount_volume
    from skiff.runtime.volumes.store import VolumeStore

    print(mount_volume(VolumeStore.of(open_store(args)), args.volume))
    return 0


def _register_unmount(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", metavar="NAME", help="volume name")
    parser.set_defaults(func=_run_unmount)


def _run_unmount(args: argparse.Namespace) -> int:
    from skiff.runtime.volumes.driver import unmount_volume
    from skiff.runtime.volumes.store import VolumeStore

    unmount_volume(VolumeStore.of(open_store(args)), args.volume)
    print(args.volume)
    return 0


REGISTER: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "create": _register_create,
    "ls": _register_ls,
    "inspect": _register_inspect,
    "rm": _register_rm,
    "prune": _register_prune,
    "exists": _register_exists,
    "mount": _register_mount,
    "unmount": _register_unmount,
}
