"""``skiff login REGISTRY`` (podman login): verify credentials, then store them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skiff.cli import imageopts
from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "registry", metavar="REGISTRY", nargs="?", help="registry host[:port][/repo]"
    )
    parser.add_argument("-u", "--username", help="username")
    parser.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    parser.add_argument(
        "--authfile", type=Path, metavar="PATH", help="path of the authentication file"
    )
    parser.add_argument(
        "--cert-dir", type=Path, metavar="DIR", help="certificates for the registry"
    )
    imageopts.add_bool(parser, "--tls-verify", "require HTTPS and verify certificates")
    parser.add_argument(
        "--get-login", action="store_true", help="print the username stored for REGISTRY"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the auth file used")
    parser.set_defaults(func=run)


def _normalize_registry(text: str) -> str:
    for prefix in ("https://", "http://", "docker://"):
        text = text.removeprefix(prefix)
    return text.rstrip("/")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from skiff.cli.context import system_context
    from skiff.image import auth

    ctx = system_context(args)
    changes: dict[str, object] = {}
    if args.authfile:
        changes["auth_file"] = args.authfile
    if args.cert_dir:
        changes["cert_dir"] = args.cert_dir
    if args.tls_verify is not None:
        changes["tls_verify"] = args.tls_verify
    ctx = dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]
    if not args.registry:
        raise UsageError("skiff login: a registry is required", "e.g. skiff login quay.io")
    key = _normalize_registry(args.registry)
    host = key.split("/", 1)[0]
    if args.get_login:
        creds = auth.get_credentials(ctx, host, key.partition("/")[2] or None)
        if creds is None:
            raise UsageError(f"not logged into {key}")
        print(creds.username)
        return 0
    username = args.username
    password = args.password
    if args.password_stdin:
        if password:
            raise UsageError("--password and --password-stdin cannot be used together")
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        if not sys.stdin.isatty():
            raise UsageError(
                "skiff login: a username is required", "use --username, or run on a terminal"
            )
        username = input("Username: ")
    if password is None:
        import getpass

        if not sys.stdin.isatty():
            raise UsageError("skiff login: a password is required", "use --password-stdin")
        password = getpass.getpass("Password: ")
    from skiff.image.transports.docker import check_login

    creds = auth.Credentials(username=username, password=password)
    check_login(ctx, host, creds)
    path = auth.set_credentials(ctx, key, creds)
    if args.verbose:
        print(f"Used: {path}")
    print("Login Succeeded!")
    return 0
