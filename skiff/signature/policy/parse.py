"""Strict parsing of policy.json (containers-policy.json(5)).

A trust policy that is misread is worse than one that is refused, so
everything that is not exactly right is a ConfigError naming the file and
the JSON path of the problem: invalid JSON, a duplicated member, an unknown
member or requirement type, a wrong type, a ``signedBy`` without keys or
with two kinds of key source, an empty requirement list, a scope the
transport cannot have. There is no fallback to "accept".

Transport names skiff does not implement (``docker-daemon``, ``atomic``)
are kept without validating their scopes, as containers/image does, so the
policy files podman and skopeo ship parse here too; requirements for them
never apply to a skiff copy.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from skiff.errors import ConfigError, InvalidReference, SkiffError
from skiff.oci.reference import parse_normalized_named, validate_domain
from skiff.signature.policy.identity import (
    ExactReference,
    ExactRepository,
    IdentityRequirement,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
)
from skiff.signature.policy.model import (
    InsecureAcceptAnything,
    Policy,
    Reject,
    Requirement,
    SignedBy,
    SigstoreSigned,
)

MAX_POLICY_SIZE = 4 << 20

UNSUPPORTED_SIGSTORE_FIELDS = {
    "keyPaths",
    "keyDatas",
    "fulcio",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
    "pki",
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, detail: str, hint: str | None = None) -> ConfigError:
        location = f" at {where}" if where else ""
        return ConfigError(f"invalid policy {self.source}{location}: {detail}", hint)

    def obj(self, value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, "expected a JSON object")
        unknown = sorted(value.keys() - allowed)
        if unknown:
            raise self.error(
                where,
                f"unknown field {unknown[0]!r}",
                f"allowed here: {', '.join(sorted(allowed))}",
            )
        missing = sorted(required - value.keys())
        if missing:
            raise self.error(where, f"missing field {missing[0]!r}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(where, "expected a non-empty string")
        return value

    # --- document ----------------------------------------------------------

    def policy(self, document: Any) -> tuple[tuple[Requirement, ...], dict[str, Any]]:
        top = self.obj(document, "", {"default", "transports"}, {"default"})
        default = self.requirements(top["default"], "default")
        transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
        raw_transports = top.get("transports", {})
        if not isinstance(raw_transports, dict):
            raise self.error("transports", "expected a JSON object")
        for name, scopes in raw_transports.items():
            where = f"transports.{name}"
            if not name:
                raise self.error(where, "empty transport name")
            if not isinstance(scopes, dict):
                raise self.error(where, "expected a JSON object of scopes")
            validator = _scope_validator(name)
            parsed: dict[str, tuple[Requirement, ...]] = {}
            for scope, reqs in scopes.items():
                scope_where = f"{where}[{scope!r}]"
                if scope and validator is not None:
                    try:
                        validator(scope)
                    except SkiffError as exc:
                        raise self.error(scope_where, exc.message, exc.hint) from exc
                parsed[scope] = self.requirements(reqs, scope_where)
            transports[name] = parsed
        return default, transports

    def requirements(self, value: Any, where: str) -> tuple[Requirement, ...]:
        if not isinstance(value, list):
            raise self.error(where, "expected a list of requirements")
        if not value:
            raise self.error(
                where,
                "the requirement list is empty",
                'use [{"type": "insecureAcceptAnything"}] to accept, [{"type": "reject"}] to refuse',
            )
        return tuple(self.requirement(item, f"{where}[{i}]") for i, item in enumerate(value))

    def requirement(self, value: Any, where: str) -> Requirement:
        if not isinstance(value, dict):
            raise self.error(where, "expected a requirement object")
        kind = value.get("type")
        if kind == "insecureAcceptAnything":
            self.obj(value, where, {"type"}, {"type"})
            return InsecureAcceptAnything()
        if kind == "reject":
            self.obj(value, where, {"type"}, {"type"})
            return Reject()
        if kind == "signedBy":
            return self.signed_by(value, where)
        if kind == "sigstoreSigned":
            return self.sigstore_signed(value, where)
        if kind is None:
            raise self.error(where, "the requirement has no 'type'")
        raise self.error(
            where,
            f"unknown requirement type {kind!r}",
            "known types: insecureAcceptAnything, reject, signedBy, sigstoreSigned",
        )

    def signed_by(self, value: dict[str, Any], where: str) -> SignedBy:
        allowed = {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}
        self.obj(value, where, allowed, {"type", "keyType"})
        key_type = self.string(value["keyType"], f"{where}.keyType")
        if key_type != "GPGKeys":
            raise self.error(
                f"{where}.keyType", f"unsupported keyType {key_type!r}", "only GPGKeys is supported"
            )
        sources = [k for k in ("keyPath", "keyPaths", "keyData") if k in value]
        if len(sources) != 1:
            raise self.error(
                where,
                "a signedBy requirement needs exactly one of keyPath, keyPaths, keyData"
                + (f" (has {', '.join(sources)})" if sources else " (has none)"),
                "without keys no signature could ever be accepted",
            )
        key_path = key_paths = key_data = None
        if "keyPath" in value:
            key_path = Path(self.string(value["keyPath"], f"{where}.keyPath"))
        elif "keyPaths" in value:
            paths = value["keyPaths"]
            if not isinstance(paths, list) or not paths:
                raise self.error(f"{where}.keyPaths", "expected a non-empty list of paths")
            key_paths = tuple(
                Path(self.string(p, f"{where}.keyPaths[{i}]")) for i, p in enumerate(paths)
            )
        else:
            key_data = self.base64(value["keyData"], f"{where}.keyData")
        identity = self.identity(value.get("signedIdentity"), f"{where}.signedIdentity")
        return SignedBy(key_type, key_path, key_paths, key_data, identity)

    def sigstore_signed(self, value: dict[str, Any], where: str) -> SigstoreSigned:
        present = sorted(UNSUPPORTED_SIGSTORE_FIELDS & value.keys())
        if present:
            raise self.error(
                f"{where}.{present[0]}",
                f"sigstoreSigned with {present[0]!r} is not supported by skiff",
                "use keyPath or keyData with a public key",
            )
        allowed = {"type", "keyPath", "keyData", "signedIdentity"}
        self.obj(value, where, allowed, {"type"})
        sources = [k for k in ("keyPath", "keyData") if k in value]
        if len(sources) != 1:
            raise self.error(
                where,
                "a sigstoreSigned requirement needs exactly one of keyPath, keyData"
                + (f" (has {', '.join(sources)})" if sources else " (has none)"),
            )
        key_path = key_data = None
        if "keyPath" in value:
            key_path = Path(self.string(value["keyPath"], f"{where}.keyPath"))
        else:
            key_data = self.base64(value["keyData"], f"{where}.keyData")
        identity = self.identity(value.get("signedIdentity"), f"{where}.signedIdentity")
        return SigstoreSigned(key_path, key_data, identity)

    def base64(self, value: Any, where: str) -> bytes:
        text = self.string(value, where)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error(where, "not valid base64") from exc
        if not data:
            raise self.error(where, "empty key data")
        return data

    def identity(self, value: Any, where: str) -> IdentityRequirement:
        if value is None:
            return MatchRepoDigestOrExact()
        if not isinstance(value, dict):
            raise self.error(where, "expected an identity object")
        kind = value.get("type")
        simple: dict[str, IdentityRequirement] = {
            "matchExact": MatchExact(),
            "matchRepoDigestOrExact": MatchRepoDigestOrExact(),
            "matchRepository": MatchRepository(),
        }
        if isinstance(kind, str) and kind in simple:
            self.obj(value, where, {"type"}, {"type"})
            return simple[kind]
        if kind == "exactReference":
            self.obj(value, where, {"type", "dockerReference"}, {"type", "dockerReference"})
            ref = self.reference(value["dockerReference"], f"{where}.dockerReference")
            if ref.is_name_only():
                raise self.error(
                    f"{where}.dockerReference",
                    f"{ref} has no tag or digest",
                    "exactReference needs a tagged or digested reference",
                )
            return ExactReference(ref)
        if kind == "exactRepository":
            self.obj(value, where, {"type", "dockerRepository"}, {"type", "dockerRepository"})
            ref = self.reference(value["dockerRepository"], f"{where}.dockerRepository")
            if not ref.is_name_only():
                raise self.error(
                    f"{where}.dockerRepository",
                    f"{value['dockerRepository']!r} is not a repository name",
                    "drop the tag or digest",
                )
            return ExactRepository(ref)
        if kind == "remapIdentity":
            fields = {"type", "prefix", "signedPrefix"}
            self.obj(value, where, fields, fields)
            prefix = self.prefix(value["prefix"], f"{where}.prefix")
            signed = self.prefix(value["signedPrefix"], f"{where}.signedPrefix")
            return RemapIdentity(prefix, signed)
        if kind is None:
            raise self.error(where, "the identity requirement has no 'type'")
        raise self.error(
            where,
            f"unknown signedIdentity type {kind!r}",
            "known types: matchExact, matchRepoDigestOrExact, matchRepository, "
            "exactReference, exactRepository, remapIdentity",
        )

    def reference(self, value: Any, where: str) -> Any:
        text = self.string(value, where)
        try:
            return parse_normalized_named(text)
        except InvalidReference as exc:
            raise self.error(where, exc.message) from exc

    def prefix(self, value: Any, where: str) -> str:
        """A host[:port], a namespace or a repository, in the fully expanded form."""
        text = self.string(value, where)
        if "/" not in text:
            try:
                validate_domain(text)
            except InvalidReference as exc:
                raise self.error(where, f"{text!r} is not a host name") from exc
            return text
        try:
            ref = parse_normalized_named(text)
        except InvalidReference as exc:
            raise self.error(where, exc.message) from exc
        if not ref.is_name_only() or str(ref) != text:
            raise self.error(
                where,
                f"{text!r} is not a fully expanded repository or namespace",
                f"e.g. {ref.name}" if str(ref) != text else "drop the tag or digest",
            )
        return text


def _scope_validator(transport: str) -> Any:
    from skiff.image import transports

    if transport not in transports.names():
        return None
    return transports.get(transport).validate_policy_scope


def _no_duplicates(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(f"invalid policy {source}: duplicate field {key!r}")
            out[key] = value
        return out

    return hook


def parse_policy(data: bytes, source: str = "policy.json", path: Path | None = None) -> Policy:
    """Parse policy.json bytes; ConfigError for anything but a valid policy."""
    parser = _Parser(source)
    try:
        document = json.loads(data, object_pairs_hook=_no_duplicates(source))
    except ConfigError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(
            f"invalid policy {source}: not valid JSON ({exc})",
            "fix the file, or point --policy at a valid one",
        ) from exc
    default, transports = parser.policy(document)
    return Policy(default, transports, path)


def load_policy(path: Path) -> Policy:
    """Read and parse the policy file at ``path``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_POLICY_SIZE + 1)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no trust policy at {path}",
            "create one (see 'skiff image trust set'), pass --policy FILE, "
            "or --insecure-policy to skip the check",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read trust policy {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_POLICY_SIZE:
        raise ConfigError(f"trust policy {path} is larger than {MAX_POLICY_SIZE} bytes")
    return parse_policy(data, str(path), path)
