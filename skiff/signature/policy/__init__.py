"""policy.json: the strict parser, the requirement model, the evaluation.

    model.py     requirements (insecureAcceptAnything, reject, signedBy,
                 sigstoreSigned) and the scope lookup
    identity.py  signedIdentity matchers
    parse.py     the strict parser (``load_policy``, ``parse_policy``)
    evaluate.py  ``check_image``: what the copy engine calls

Only ``model`` and ``identity`` are imported here; parsing and evaluation
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.signature.policy.model import (
    InsecureAcceptAnything,
    Policy,
    Reject,
    Requirement,
    Scope,
    SignedBy,
    SigstoreSigned,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageSource

__all__ = [
    "InsecureAcceptAnything",
    "Policy",
    "Reject",
    "Requirement",
    "Scope",
    "SignedBy",
    "SigstoreSigned",
    "check_image",
]


def check_image(
    ctx: SystemContext, source: ImageSource, manifest: bytes, manifest_type: str = ""
) -> None:
    """Raise ImageRejected unless the trust policy of ``ctx`` accepts the image."""
    from skiff.signature.policy.evaluate import check_image as check

    check(ctx, source, manifest, manifest_type)
