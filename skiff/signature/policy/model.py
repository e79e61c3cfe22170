"""The parsed policy: requirements per transport scope, and the scope lookup.

A ``Policy`` maps transport names to scopes to requirement lists, plus the
mandatory ``default``. ``requirements_for(ref)`` picks the most specific
match, as containers/image does: the reference's own identity, then its
namespaces (most specific first, as the transport lists them), then the
transport's ``""`` scope, then ``default`` — and only that one list applies.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.signature.policy.identity import IdentityRequirement, MatchRepoDigestOrExact

if TYPE_CHECKING:
    from skiff.image.types import ImageReference


@dataclass(frozen=True)
class InsecureAcceptAnything:
    type: str = "insecureAcceptAnything"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class Reject:
    type: str = "reject"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class SignedBy:
    """Simple signing by one of the GPG keys in ``key_paths`` or ``key_data``."""

    key_type: str = "GPGKeys"
    key_path: Path | None = None
    key_paths: tuple[Path, ...] | None = None
    key_data: bytes | None = None
    signed_identity: IdentityRequirement = field(default_factory=MatchRepoDigestOrExact)
    type: str = "signedBy"

    def key_sources(self) -> list[tuple[Path | None, bytes | None]]:
        """(path, None) per key file, or (None, data) for inline ``keyData``."""
        if self.key_path is not None:
            return [(self.key_path, None)]
        if self.key_paths is not None:
            return [(path, None) for path in self.key_paths]
        return [(None, self.key_data)]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "keyType": self.key_type}
        if self.key_path is not None:
            out["keyPath"] = str(self.key_path)
        if self.key_paths is not None:
            out["keyPaths"] = [str(p) for p in self.key_paths]
        if self.key_data is not None:
            out["keyData"] = base64.b64encode(self.key_data).decode()
        out["signedIdentity"] = self.signed_identity.to_json()
        return out


@dataclass(frozen=True)
class SigstoreSigned:
    """A sigstore signature by the public key in ``key_path`` or ``key_data``."""

    key_path: Path | None = None
    key_data: bytes | None = None
    signed_identity: IdentityRequirement = field(default_factory=MatchRepoDigestOrExact)
    type: str = "sigstoreSigned"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.key_path is not None:
            out["keyPath"] = str(self.key_path)
        if self.key_data is not None:
            out["keyData"] = base64.b64encode(self.key_data).decode()
        out["signedIdentity"] = self.signed_identity.to_json()
        return out


Requirement = InsecureAcceptAnything | Reject | SignedBy | SigstoreSigned


@dataclass(frozen=True)
class Scope:
    """Where a requirement list was found: for messages (``docker: "host/ns"``)."""

    transport: str | None
    """None for the global ``default``."""
    name: str
    """The scope key; "" for a transport's default."""

    def __str__(self) -> str:
        if self.transport is None:
            return "default"
        if not self.name:
            return f'transport "{self.transport}" default ("")'
        return f'{self.transport} "{self.name}"'


@dataclass(frozen=True)
class Policy:
    default: tuple[Requirement, ...]
    transports: dict[str, dict[str, tuple[Requirement, ...]]]
    path: Path | None = None
    """The file it was read from, for messages."""

    def requirements_for(self, ref: ImageReference) -> tuple[Scope, tuple[Requirement, ...]]:
        name = ref.transport.name
        scopes = self.transports.get(name)
        if scopes is not None:
            identity = ref.policy_configuration_identity()
            if identity in scopes:
                return Scope(name, identity), scopes[identity]
            for namespace in ref.policy_configuration_namespaces():
                if namespace in scopes:
                    return Scope(name, namespace), scopes[namespace]
            if "" in scopes:
                return Scope(name, ""), scopes[""]
        return Scope(None, ""), self.default

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": [r.to_json() for r in self.default]}
        if self.transports:
            out["transports"] = {
                transport: {scope: [r.to_json() for r in reqs] for scope, reqs in scopes.items()}
                for transport, scopes in self.transports.items()
            }
        return out
