"""The ``skiff`` entry point: global flags, the lazy command table, exit codes.

Start-up time matters (skiff is started for every command), so this module
imports only argparse and the command table; a command's module is imported
only when that command runs. This is also the one place where exceptions
become messages and exit codes (see ``skiff.errors``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import NoReturn

from skiff import __version__
from skiff.errors import SkiffError, UsageError

# name → (module, one-line help). Aliases map to the same module.
COMMANDS: dict[str, tuple[str, str]] = {
    "image": ("skiff.cli.commands.image", "Manage images (copy, inspect, list-tags, delete, ...)"),
    "login": ("skiff.cli.commands.login", "Log in to a container registry"),
    "logout": ("skiff.cli.commands.logout", "Log out of a container registry"),
    "version": ("skiff.cli.commands.version", "Show version information"),
}

ALIASES: dict[str, str] = {}

LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

log = logging.getLogger("skiff")


class Parser(argparse.ArgumentParser):
    """argparse with podman's exit code (125) for usage errors, no SystemExit(2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--version", action="version", version=f"skiff version {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SKIFF_LOG_LEVEL", "warn"),
        choices=sorted(LOG_LEVELS),
        help="log messages at and above this level (default: warn)",
    )
    parser.add_argument("--root", type=Path, help="storage root directory")
    parser.add_argument("--runroot", type=Path, help="storage state (run) directory")
    parser.add_argument("--storage-driver", help="storage driver (overlay, vfs)")
    parser.add_argument("--registries-conf", type=Path, help="path to registries.conf")
    parser.add_argument("--policy", "--signature-policy", dest="policy", type=Path,
                        help="path to the trust policy (policy.json)")
    parser.add_argument("--insecure-policy", action="store_true",
                        help="run without any policy check")
    parser.add_argument("--registries.d", dest="registries_d", type=Path,
                        help="directory with the lookaside (registries.d) configuration")
    parser.add_argument("--tmpdir", type=Path, help="directory for temporary files")


def _command_word(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """The first positional word of argv, skipping global options and their values."""
    takes_value = {
        opt
        for action in parser._actions
        if action.nargs != 0 and action.option_strings
        for opt in action.option_strings
    }
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--":
            return None
        if word.startswith("-"):
            if "=" not in word and word in takes_value:
                skip = True
            continue
        return word
    return None


def build_parser(argv: Sequence[str]) -> Parser:
    parser = Parser(
        prog="skiff",
        description="skiff: manage images, containers, pods and builds without a daemon",
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _command_word(argv, parser)
    chosen = ALIASES.get(chosen or "", chosen)
    for name, (module, help_text) in COMMANDS.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        sub = subparsers.add_parser(name, help=help_text, aliases=aliases, description=help_text)
        if name == chosen:
            import_module(module).register(sub)  # type: ignore[attr-defined]
    return parser


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s[%(name)s] %(message)s"))
    root = logging.getLogger("skiff")
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS[level])
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = False
    try:
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
        configure_logging(args.log_level)
        debug = args.log_level in ("debug", "trace")
        func = getattr(args, "func", None)
        if func is None:
            if args.command:
                # a command group given without its subcommand
                parser.parse_args([*args_list, "--help"])
            parser.print_help()
            return 0
        return int(func(args) or 0)
    except SkiffError as exc:
        _print_error(str(exc))
        if debug:
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of our output went away (| head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout
        except OSError:
            pass
        return 0
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        _print_error(f"internal error: {type(exc).__name__}: {exc}")
        if debug:
            import traceback

            traceback.print_exc()
        else:
            print("(run with --log-level=debug for the traceback)", file=sys.stderr)
        return 125


def _print_error(message: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"Error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
