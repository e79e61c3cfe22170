"""Flags shared by the commands that reach registries (skopeo's and podman's).

skopeo prefixes them per side (``--src-tls-verify``, ``--dest-creds``);
podman's pull/push use the unprefixed form (``--tls-verify``, ``--creds``).
Both build a ``SystemContext`` per side from the global one.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from skiff.config import SystemContext
from skiff.errors import UsageError


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "t"):
        return True
    if lowered in ("false", "0", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r} (use true or false)")


def add_bool(
    parser: argparse.ArgumentParser, flag: str, help_text: str, dest: str | None = None
) -> None:
    """``--flag`` / ``--flag=true|false`` as the Go tools accept booleans."""
    parser.add_argument(
        flag, nargs="?", const=True, default=None, type=parse_bool, help=help_text, dest=dest
    )


def parse_creds(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not user:
        raise UsageError(f"invalid credentials {text!r}", "expected USERNAME[:PASSWORD]")
    if not sep:
        import getpass

        password = getpass.getpass(f"Password for {user}: ")
    return user, password


def add_side_options(parser: argparse.ArgumentParser, side: str) -> None:
    """The flags of one side of a copy: ``side`` is "src", "dest" or "" (podman style)."""
    p = f"--{side}-" if side else "--"
    d = f"{side}_" if side else ""
    parser.add_argument(
        f"{p}creds", dest=f"{d}creds", metavar="USER[:PASS]", help="credentials for the registry"
    )
    parser.add_argument(
        f"{p}cert-dir",
        dest=f"{d}cert_dir",
        type=Path,
        metavar="DIR",
        help="use certificates (*.crt, *.cert, *.key) from DIR",
    )
    add_bool(
        parser, f"{p}tls-verify", "require HTTPS and verify certificates", dest=f"{d}tls_verify"
    )
    parser.add_argument(
        f"{p}registry-token",
        dest=f"{d}registry_token",
        metavar="TOKEN",
        help="bearer token for the registry",
    )
    parser.add_argument(
        f"{p}no-creds",
        dest=f"{d}no_creds",
        action="store_true",
        help="access the registry anonymously",
    )
    if side:
        parser.add_argument(
            f"{p}authfile",
            dest=f"{d}authfile",
            type=Path,
            metavar="PATH",
            help="auth file for this side",
        )


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--authfile",
        type=Path,
        metavar="PATH",
        help="path of the authentication file (default: ${XDG_RUNTIME_DIR}/containers/auth.json)",
    )
    parser.add_argument(
        "--retry-times",
        type=int,
        default=None,
        metavar="N",
        help="number of times to retry on transient errors",
    )
    parser.add_argument("--override-os", metavar="OS", help="use OS instead of the running OS")
    parser.add_argument("--override-arch", metavar="ARCH", help="use ARCH instead of the machine's")
    parser.add_argument(
        "--override-variant", metavar="VARIANT", help="use VARIANT instead of the machine's"
    )


def side_context(base: SystemContext, args: argparse.Namespace, side: str) -> SystemContext:
    d = f"{side}_" if side else ""
    changes: dict[str, object] = {}
    creds = getattr(args, f"{d}creds", None)
    if creds:
        changes["credentials"] = parse_creds(creds)
    cert_dir = getattr(args, f"{d}cert_dir", None)
    if cert_dir:
        changes["cert_dir"] = cert_dir
    tls = getattr(args, f"{d}tls_verify", None)
    if tls is not None:
        changes["tls_verify"] = tls
    token = getattr(args, f"{d}registry_token", None)
    if token:
        changes["registry_token"] = token
    if getattr(args, f"{d}no_creds", False):
        changes["no_creds"] = True
    authfile = getattr(args, f"{d}authfile", None) or getattr(args, "authfile", None)
    if authfile:
        changes["auth_file"] = authfile
    retry = getattr(args, "retry_times", None)
    if retry is not None:
        changes["retry_times"] = retry
    for key in ("override_os", "override_arch", "override_variant"):
        value = getattr(args, key, None)
        if value:
            changes[key] = value
    if changes.get("credentials") and changes.get("no_creds"):
        raise UsageError(
            f"--{side + '-' if side else ''}creds and --{side + '-' if side else ''}no-creds cannot be used together"
        )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
