"""``image trust show`` and ``image trust set``: policy.json and registries.d as a table.

``show`` lists every scope's requirements as podman does (TRANSPORT "all"
for the default, "repository" for docker scopes; TYPE accept, reject,
signed, sigstoreSigned; ID the keys' user IDs; STORE the lookaside
registries.d gives the scope).

``set`` edits policy.json like podman: the scope ("default" or a docker
scope such as ``registry.example.com/team``) gets exactly one requirement
list, replacing what it had. Differences, on purpose:
- several ``--pubkeysfile`` become *one* ``signedBy`` with ``keyPaths`` (any
  of the keys may sign); podman writes one requirement per key, which then
  all must hold;
- key paths are written absolute;
- ``--lookaside URL`` (and, for sigstoreSigned, ``use-sigstore-attachments``)
  is written to registries.d, in ``skiff-trust.yaml``, which skiff owns.
Every file is validated with the strict parser before it replaces the old
one (atomically); a missing policy.json starts as the distributions ship
it, accepting anything by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import ConfigError, UsageError
from skiff.signature.policy.model import (
    InsecureAcceptAnything,
    Reject,
    Requirement,
    SignedBy,
    SigstoreSigned,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.signature.lookaside import RegistriesD

TRUST_TYPES = {
    "accept": "insecureAcceptAnything",
    "insecureAcceptAnything": "insecureAcceptAnything",
    "reject": "reject",
    "signedBy": "signedBy",
    "sigstoreSigned": "sigstoreSigned",
}
_DESCRIPTION = {
    "insecureAcceptAnything": "accept",
    "reject": "reject",
    "signedBy": "signed",
    "sigstoreSigned": "sigstoreSigned",
}
SKIFF_REGISTRIES_D_FILE = "skiff-trust.yaml"


@dataclass(frozen=True)
class TrustRow:
    """One requirement of one scope, as ``trust show`` prints it."""

    transport: str
    name: str
    repo_name: str
    type: str
    gpg_id: str = ""
    sigstore: str = ""

    def to_json(self) -> dict[str, str]:
        out = {
            "transport": self.transport,
            "name": self.name,
            "repo_name": self.repo_name,
            "type": self.type,
        }
        if self.gpg_id:
            out["gpg_id"] = self.gpg_id
        if self.sigstore:
            out["sigstore"] = self.sigstore
        return out


def _key_ids(requirement: Requirement) -> str:
    if not isinstance(requirement, SignedBy):
        if isinstance(requirement, SigstoreSigned) and requirement.key_path is not None:
            return str(requirement.key_path)
        return ""
    from skiff.signature.mechanism import describe_keys

    ids: list[str] = []
    for path, inline in requirement.key_sources():
        data = inline
        if path is not None:
            try:
                data = path.read_bytes()
            except OSError:
                ids.append(f"{path} (unreadable)")
                continue
        assert data is not None
        for key in describe_keys(data):
            ids.append(_email(key.user_ids[0]) if key.user_ids else key.fingerprint)
    return ", ".join(ids)


def _email(user_id: str) -> str:
    """``Name <a@b>`` → ``a@b`` (what podman shows); the user ID as is otherwise."""
    if user_id.endswith(">") and "<" in user_id:
        return user_id[user_id.rindex("<") + 1 : -1]
    return user_id


def _store(config: RegistriesD, scope: str | None) -> str:
    """The lookaside registries.d configures for a docker scope (or the default)."""
    if scope is not None:
        key = scope
        while key:
            section = config.docker.get(key)
            if section is not None and section.lookaside:
                return section.lookaside
            if "/" not in key:
                break
            key = key.rsplit("/", 1)[0]
    if config.default_docker is not None and config.default_docker.lookaside:
        return config.default_docker.lookaside
    return ""


def show(ctx: SystemContext, scope_filter: str | None = None) -> list[TrustRow]:
    """The policy of ``ctx`` as rows (all scopes, or those named ``scope_filter``)."""
    from skiff.signature.lookaside import RegistriesD
    from skiff.signature.policy.parse import load_policy

    policy = load_policy(ctx.policy_file_path())
    config = RegistriesD.load(ctx.registries_d_path())
    rows: list[TrustRow] = []
    for requirement in policy.default:
        rows.append(
            TrustRow(
                "all",
                "default",
                "default",
                _DESCRIPTION[requirement.type],
                _key_ids(requirement),
                _store(config, None),
            )
        )
    for transport, scopes in policy.transports.items():
        shown = "repository" if transport == "docker" else transport
        for scope, requirements in scopes.items():
            for requirement in requirements:
                store = _store(config, scope) if transport == "docker" else ""
                rows.append(
                    TrustRow(
                        shown,
                        scope,
                        scope,
                        _DESCRIPTION[requirement.type],
                        _key_ids(requirement),
                        store,
                    )
                )
    if scope_filter is not None:
        rows = [r for r in rows if r.name == scope_filter]
    return rows


def raw_policy(ctx: SystemContext) -> str:
    path = ctx.policy_file_path()
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read trust policy {path}: {exc.strerror or exc}") from exc


def _requirement(trust_type: str, pubkeys: list[Path]) -> Requirement:
    kind = TRUST_TYPES.get(trust_type)
    if kind is None:
        raise UsageError(
            f"invalid trust type {trust_type!r}", "use accept, reject, signedBy or sigstoreSigned"
        )
    if kind in ("insecureAcceptAnything", "reject"):
        if pubkeys:
            raise UsageError(f"--pubkeysfile cannot be used with --type {trust_type}")
        return InsecureAcceptAnything() if kind == "insecureAcceptAnything" else Reject()
    if not pubkeys:
        raise UsageError(f"at least one public key must be given for type {kind!r} (--pubkeysfile)")
    paths = []
    for key in pubkeys:
        absolute = key.absolute()
        if not absolute.is_file():
            raise UsageError(f"public key file {key} does not exist")
        paths.append(absolute)
    if kind == "sigstoreSigned":
        if len(paths) != 1:
            raise UsageError("sigstoreSigned takes exactly one --pubkeysfile")
        from skiff.signature.sigstore import load_public_key

        load_public_key(paths[0].read_bytes(), f"public key file {paths[0]}")
        return SigstoreSigned(key_path=paths[0])
    from skiff.signature.mechanism import describe_keys

    for path in paths:
        if not describe_keys(path.read_bytes()):
            raise UsageError(f"{path} contains no OpenPGP public key")
    if len(paths) == 1:
        return SignedBy(key_path=paths[0])
    return SignedBy(key_paths=tuple(paths))


def _validate_scope(scope: str) -> None:
    if scope == "default":
        return
    from skiff.image.transports.docker.transport import TRANSPORT

    try:
        TRANSPORT.validate_policy_scope(scope)
    except ConfigError as exc:
        raise UsageError(
            f"invalid scope {scope!r}: {exc.message}",
            "use 'default', a registry, a namespace or a repository, e.g. quay.io/team",
        ) from exc


def _minimal_json(requirement: Requirement) -> dict[str, Any]:
    """As podman writes it: no signedIdentity when it is the default."""
    out = requirement.to_json()
    if out.get("signedIdentity") == {"type": "matchRepoDigestOrExact"}:
        del out["signedIdentity"]
    return out


def set_trust(
    ctx: SystemContext,
    scope: str,
    trust_type: str,
    pubkeys: list[Path] | None = None,
    lookaside: str | None = None,
) -> None:
    """Give ``scope`` one requirement in policy.json (and lookaside in registries.d)."""
    from skiff.image.transports.localfs import atomic_write
    from skiff.signature.policy.parse import parse_policy

    _validate_scope(scope)
    requirement = _requirement(trust_type, list(pubkeys or []))
    path = ctx.policy_file_path()
    if path.exists():
        data = path.read_bytes()
        parse_policy(data, str(path), path)  # refuse to edit a policy that is already broken
        document: dict[str, Any] = json.loads(data)
    else:
        document = {"default": [{"type": "insecureAcceptAnything"}]}
    entry = [_minimal_json(requirement)]
    if scope == "default":
        document["default"] = entry
    else:
        document.setdefault("transports", {}).setdefault("docker", {})[scope] = entry
    new = (json.dumps(document, indent=4) + "\n").encode()
    parse_policy(new, str(path), path)
    attachments = True if isinstance(requirement, SigstoreSigned) else None
    if lookaside is not None or attachments:
        _set_registries_d(ctx, scope, lookaside, attachments)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, new)


def _set_registries_d(
    ctx: SystemContext, scope: str, lookaside: str | None, attachments: bool | None
) -> None:
    import yaml

    from skiff.image.transports.localfs import atomic_write
    from skiff.signature.lookaside import RegistriesD

    directory = ctx.registries_d_path()
    target = directory / SKIFF_REGISTRIES_D_FILE
    config = RegistriesD.load(directory)
    owner = config.default_docker if scope == "default" else config.docker.get(scope)
    if owner is not None and owner.source != target:
        raise ConfigError(
            f"{scope} is already configured in {owner.source}",
            "edit that file, or remove the entry from it first",
        )
    document: dict[str, Any] = {}
    if target.exists():
        loaded = yaml.safe_load(target.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid registries.d file {target}: not a YAML mapping")
        document = loaded
    if scope == "default":
        section = dict(document.get("default-docker") or {})
    else:
        section = dict((document.get("docker") or {}).get(scope) or {})
    if lookaside is not None:
        section.pop("sigstore", None)
        section["lookaside"] = lookaside
    if attachments is not None:
        section["use-sigstore-attachments"] = attachments
    if scope == "default":
        document["default-docker"] = section
    else:
        document.setdefault("docker", {})[scope] = section
    text = yaml.safe_dump(document, default_flow_style=False, sort_keys=True)
    directory.mkdir(parents=True, exist_ok=True)
    previous = target.read_bytes() if target.exists() else None
    atomic_write(target, text.encode())
    try:
        RegistriesD.load(directory)
    except ConfigError:
        if previous is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write(target, previous)
        raise
