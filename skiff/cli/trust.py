"""Wiring the trust policy and signing into copy operations (CLI side).

The signature issue fills this in: the policy from ``--policy`` /
policy.json is evaluated for every copy, and ``--sign-by`` adds a signer.
Until then every image is accepted, as with an ``insecureAcceptAnything``
policy, and ``--sign-by`` is refused clearly.
"""

from __future__ import annotations

import argparse

from skiff.config import SystemContext
from skiff.errors import UsageError
from skiff.image.copy import CopyOptions


def attach_policy_and_signers(
    options: CopyOptions, ctx: SystemContext, args: argparse.Namespace
) -> None:
    if getattr(args, "sign_by", None):
        raise UsageError("--sign-by is not supported yet", "signing arrives with the trust issue")
