"""Deciding whether an image may be copied: the policy check the copy engine runs.

``check_image(ctx, source, manifest)`` loads the policy of ``ctx`` (its
``--policy`` file, ~/.config/containers/policy.json, or the system one),
looks up the requirements for the source's reference (most specific scope
wins) and requires *all* of them to hold:

- ``insecureAcceptAnything`` holds;
- ``reject`` never holds;
- ``signedBy`` holds when at least one simple signature of the image passes
  every check of skiff.signature.verify with the requirement's keys;
- ``sigstoreSigned`` likewise for sigstore signatures and its public key.

It is called with the top-level manifest before any blob is read, so a
refused image leaves nothing at the destination. A refusal is an
``ImageRejected`` naming the image, the policy file and scope, and the
reason — each signature's reason when several were tried.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ConfigError, SignatureError
from skiff.signature.errors import ImageRejected, SignatureRejected
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
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from skiff.config import SystemContext
    from skiff.image.types import ImageSource


def load_context_policy(ctx: SystemContext) -> Policy:
    from skiff.signature.policy.parse import load_policy

    return load_policy(ctx.policy_file_path())


def check_image(
    ctx: SystemContext, source: ImageSource, manifest: bytes, manifest_type: str = ""
) -> None:
    """Raise ImageRejected unless the policy of ``ctx`` accepts the image."""
    PolicyEvaluator(load_context_policy(ctx), ctx).check(source, manifest)


def _label(source: ImageSource) -> str:
    ref = source.reference
    return f"{ref.transport.name}:{ref.string_within_transport()}"


class PolicyEvaluator:
    """One policy applied to images; keeps nothing between checks but the policy."""

    def __init__(self, policy: Policy, ctx: SystemContext) -> None:
        self.policy = policy
        self.ctx = ctx

    def check(self, source: ImageSource, manifest: bytes) -> None:
        scope, requirements = self.policy.requirements_for(source.reference)
        signatures: list[bytes] | None = None
        for requirement in requirements:
            if isinstance(requirement, InsecureAcceptAnything):
                continue
            if isinstance(requirement, Reject):
                raise self._rejected(
                    source,
                    scope,
                    "the scope's requirement is 'reject'",
                    "this policy refuses every image here; pull from an allowed location "
                    "or change the policy",
                )
            if signatures is None:
                signatures = self._signatures(source, scope)
            self._check_signed(source, scope, requirement, signatures, manifest)

    # --- helpers --------------------------------------------------------------

    def _rejected(
        self,
        source: ImageSource,
        scope: Scope,
        reason: str,
        hint: str | None = None,
        reasons: list[SignatureRejected] | None = None,
    ) -> ImageRejected:
        where = f"policy {self.policy.path}" if self.policy.path else "the policy"
        return ImageRejected(
            f"image {_label(source)} rejected by {where}, scope {scope}: {reason}", hint, reasons
        )

    def _signatures(self, source: ImageSource, scope: Scope) -> list[bytes]:
        try:
            return source.get_signatures()
        except SignatureError as exc:
            raise SignatureError(
                f"cannot check image {_label(source)} against policy scope {scope}: {exc.message}",
                exc.hint,
            ) from exc

    def _where(self, source: ImageSource, manifest: bytes) -> str:
        """Where the source keeps signatures, when it can say (registry lookaside)."""
        reader = getattr(source, "signature_reader", None)
        describe = getattr(reader, "describe", None)
        named = source.reference.docker_reference()
        if describe is None or named is None:
            return ""
        from skiff.oci.manifest import manifest_digest

        return f" (looked in {describe(named, manifest_digest(manifest))})"

    def _check_signed(
        self,
        source: ImageSource,
        scope: Scope,
        requirement: Requirement,
        signatures: list[bytes],
        manifest: bytes,
    ) -> None:
        from skiff.signature.sigstore import is_sigstore_blob

        sigstore = isinstance(requirement, SigstoreSigned)
        relevant = [(i + 1, s) for i, s in enumerate(signatures) if is_sigstore_blob(s) == sigstore]
        kind = "sigstore signature" if sigstore else "simple signature"
        if not relevant:
            raise self._rejected(
                source,
                scope,
                f"{requirement.type} requires a {kind}, but the image has none"
                + self._where(source, manifest),
                "sign the image (skiff image copy --sign-by …) and publish the signature "
                "where registries.d points",
            )
        reasons: list[SignatureRejected] = []
        image = source.reference.docker_reference()
        with ExitStack() as stack:
            if isinstance(requirement, SignedBy):
                from skiff.signature.mechanism import ephemeral_keyring
                from skiff.signature.verify import verify_simple

                mechanism, trusted = stack.enter_context(
                    ephemeral_keyring(self._gpg_keys(requirement, scope), self.ctx.tmp_dir)
                )
                for number, blob in relevant:
                    try:
                        verify_simple(
                            blob,
                            mechanism=mechanism,
                            trusted=trusted,
                            manifest=manifest,
                            image=image,
                            identity=requirement.signed_identity,
                        )
                        return
                    except SignatureRejected as exc:
                        exc.message = f"signature {number}: {exc.message}"
                        reasons.append(exc)
                trusted_hint = f"the scope trusts key(s) {', '.join(sorted(trusted))}"
            else:
                assert isinstance(requirement, SigstoreSigned)
                from skiff.signature.verify import verify_sigstore

                key = self._sigstore_key(requirement, scope)
                for number, blob in relevant:
                    try:
                        verify_sigstore(
                            blob,
                            public_key=key,
                            manifest=manifest,
                            image=image,
                            identity=requirement.signed_identity,
                        )
                        return
                    except SignatureRejected as exc:
                        exc.message = f"signature {number}: {exc.message}"
                        reasons.append(exc)
                trusted_hint = "the scope trusts the sigstore key " + (
                    str(requirement.key_path) if requirement.key_path else "in its keyData"
                )
        if len(reasons) == 1:
            summary = f"{requirement.type}: {reasons[0].message}"
            hint = reasons[0].hint or trusted_hint
        else:
            summary = (
                f"{requirement.type}: none of {len(reasons)} signatures is accepted: "
                + "; ".join(r.message for r in reasons)
            )
            hint = trusted_hint
        raise self._rejected(source, scope, summary, hint, reasons)

    def _read_key(self, path: Path, scope: Scope) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read key {path} named by policy {self.policy.path}, scope {scope}: "
                f"{exc.strerror or exc}",
                "fix keyPath in the policy, or install the key file",
            ) from exc

    def _gpg_keys(self, requirement: SignedBy, scope: Scope) -> list[tuple[bytes, str]]:
        keys = []
        for path, data in requirement.key_sources():
            if path is not None:
                keys.append((self._read_key(path, scope), f"key file {path} (scope {scope})"))
            else:
                assert data is not None
                keys.append((data, f"keyData of scope {scope}"))
        return keys

    def _sigstore_key(self, requirement: SigstoreSigned, scope: Scope) -> PublicKeyTypes:
        from skiff.signature.sigstore import load_public_key

        if requirement.key_path is not None:
            data = self._read_key(requirement.key_path, scope)
            what = f"sigstore key {requirement.key_path} (scope {scope})"
        else:
            assert requirement.key_data is not None
            data, what = requirement.key_data, f"keyData of scope {scope}"
        return load_public_key(data, what)
