"""``skiff image trust show|set`` (podman image trust): the trust policy as a table, and edits.

    trust show [--json] [--raw] [-n] [SCOPE]
    trust set --type accept|reject|signedBy|sigstoreSigned [-f KEYFILE]... [--lookaside URL] SCOPE

SCOPE is ``default`` or a docker scope (registry, namespace, repository).
The policy file is the global ``--policy`` (else the user's or the system
policy.json); registries.d is ``--registries.d`` (else the default one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    if command == "set":
        parser.add_argument("scope", metavar="SCOPE", help="'default' or REGISTRY[/REPOSITORY]")
        parser.add_argument(
            "-t",
            "--type",
            default="signedBy",
            metavar="TYPE",
            help="accept, reject, signedBy (default) or sigstoreSigned",
        )
        parser.add_argument(
            "-f",
            "--pubkeysfile",
            action="append",
            type=Path,
            default=[],
            metavar="FILE",
            help="public key file to trust (repeat for several keys, any of which may sign)",
        )
        parser.add_argument(
            "--lookaside",
            metavar="URL",
            help="also record where the scope's signatures are read from (registries.d)",
        )
        parser.set_defaults(func=run_set)
    else:
        parser.add_argument("scope", nargs="?", metavar="SCOPE", help="show only this scope")
        parser.add_argument("-j", "--json", action="store_true", help="output as JSON")
        parser.add_argument("--raw", action="store_true", help="print the policy file as is")
        parser.add_argument(
            "-n", "--noheading", action="store_true", help="do not print the column headings"
        )
        parser.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    import json

    from skiff.cli.context import system_context
    from skiff.cli.output import format_table
    from skiff.signature.trustconfig import raw_policy, show

    ctx = system_context(args)
    if args.raw:
        sys.stdout.write(raw_policy(ctx))
        return 0
    rows = show(ctx, args.scope)
    if args.json:
        # podman prints this one with two-space indentation
        sys.stdout.write(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
        return 0
    headers = [] if args.noheading else ["TRANSPORT", "NAME", "TYPE", "ID", "STORE"]
    sys.stdout.write(
        format_table(headers, [[r.transport, r.name, r.type, r.gpg_id, r.sigstore] for r in rows])
    )
    return 0


def run_set(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.signature.trustconfig import set_trust

    set_trust(system_context(args), args.scope, args.type, args.pubkeysfile, args.lookaside)
    return 0
