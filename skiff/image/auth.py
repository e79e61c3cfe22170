"""Registry credentials in auth.json, read and written as podman and skopeo do.

Format (containers-auth.json(5))::

    {"auths": {"quay.io": {"auth": base64("user:password")},
               "quay.io/team/app": {"auth": "...", "identitytoken": "..."}}}

Reading: ``--creds`` (``SystemContext.credentials``) wins; ``--no-creds``
means none. Otherwise the files are tried in podman's order — the auth file
(``SystemContext.auth_file_path()``), then, unless that was chosen explicitly,
$XDG_CONFIG_HOME/containers/auth.json, Docker's config.json
($DOCKER_CONFIG or ~/.docker) and the legacy ~/.dockercfg — and the first
file with a usable entry wins. Within a file the most specific key wins:
``host/ns/repo``, ``host/ns``, ``host``; failing those, keys written as URLs
by old ``docker login`` (``https://index.docker.io/v1/``) are matched by
their host, with docker.io, index.docker.io and registry-1.docker.io treated
as one registry.

skiff runs no credential helpers: ``credHelpers`` and ``credsStore`` entries
are reported with a warning and skipped, so a registry whose only
credentials live in a helper is accessed anonymously.

Writing (``skiff login``/``logout``) touches only the auth file itself: the
whole document is re-read, changed and written to a temporary file in the
same directory (mode 0600, fsynced) that is renamed over the old one, so a
crash never leaves a truncated file; the directory is created 0700. Keys
and fields skiff does not know are preserved. Two concurrent logins can
still lose one update (neither podman nor skiff locks the file).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import ConfigError, InvalidReference, UsageError
from skiff.oci.reference import parse_normalized_named

if TYPE_CHECKING:
    from skiff.config import SystemContext

log = logging.getLogger(__name__)

_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_LEGACY_FILE_NAME = ".dockercfg"


@dataclass(frozen=True)
class Credentials:
    """A username/password pair, or an OAuth2 identity (refresh) token."""

    username: str
    password: str = field(repr=False)
    identity_token: str = field(default="", repr=False)


# --- keys ---------------------------------------------------------------------


def validate_key(key: str) -> bool:
    """Check an auth.json key (``host[:port][/path]``); True if it has a path.

    Rejected as containers/image does: URLs, anything with a digest, and a
    ``:`` after the host part (a tag).
    """
    if key.startswith(("http://", "https://")):
        raise UsageError(
            f"invalid credentials key {key!r}: contains a URL scheme",
            "give HOST[:PORT][/REPOSITORY], e.g. quay.io or quay.io/team/app",
        )
    if "@" in key:
        raise UsageError(f"invalid credentials key {key!r}: contains '@'", "remove the digest")
    host, slash, rest = key.partition("/")
    if not host:
        raise UsageError(f"invalid credentials key {key!r}: no registry", "e.g. quay.io")
    if slash and ":" in rest:
        raise UsageError(
            f"invalid credentials key {key!r}: contains ':' after HOST[:PORT]", "remove the tag"
        )
    return bool(slash)


def normalize_login_key(arg: str, accept_repositories: bool = True) -> tuple[str, str]:
    """The (auth.json key, registry) for a ``skiff login``/``logout`` argument.

    As podman: a URL is reduced to its ``host[:port]`` (``https://quay.io/v1/``
    → ``quay.io``); without ``accept_repositories`` only the registry is
    kept; a repository key must be a valid name without tag or digest and is
    kept as typed (``docker.io/vendor`` is *not* turned into
    ``docker.io/library/vendor``).
    """
    key = arg
    if arg.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        key = urlsplit(arg).netloc.rpartition("@")[2]
    if not key:
        raise UsageError(f"invalid registry {arg!r}", "e.g. quay.io or localhost:5000")
    registry = key.partition("/")[0]
    if not accept_repositories or key == registry:
        validate_key(registry)
        return registry, registry
    try:
        ref = parse_normalized_named(key)
    except InvalidReference as exc:
        raise UsageError(f"invalid registry or repository {arg!r}: {exc.message}") from exc
    if not ref.is_name_only():
        raise UsageError(
            f"invalid registry or repository {arg!r}: contains a tag or digest",
            "credentials are stored per registry or repository, not per image",
        )
    if ref.domain != registry:
        raise UsageError(
            f"invalid registry or repository {arg!r}: {registry!r} is not a registry",
            "a repository key starts with HOST[:PORT]/",
        )
    validate_key(key)
    return key, registry


def _normalize_registry(host: str) -> str:
    return "index.docker.io" if host in _DOCKER_HUB_HOSTS else host


def _normalize_file_key(key: str, legacy: bool) -> str:
    """The registry an existing key refers to (URL keys reduced to their host)."""
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.partition("/")[0]
    return _normalize_registry(stripped)


def _keys_for(key: str) -> list[str]:
    """``host/a/b`` → [``host/a/b``, ``host/a``, ``host``]."""
    keys = [key]
    while "/" in key:
        key = key.rpartition("/")[0]
        keys.append(key)
    return keys


# --- reading ------------------------------------------------------------------


def get_credentials(
    ctx: SystemContext, registry: str, repository: str | None = None
) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``), or None for anonymous access.

    ``repository`` is the path inside the registry (``library/busybox``; a
    full ``host/path`` name is accepted too) and lets namespaced entries win.
    ``ctx.credentials`` (``--creds``) is returned as is: a caller fetching
    from a mirror on another registry must not pass a context carrying it.
    """
    if ctx.no_creds:
        return None
    if ctx.credentials is not None:
        return Credentials(ctx.credentials[0], ctx.credentials[1])
    key = registry
    if repository:
        key = f"{registry}/{repository.removeprefix(f'{registry}/')}"
    validate_key(key)
    for path, legacy in _read_paths(ctx):
        creds = _find_in_file(path, legacy, key, registry)
        if creds is not None:
            log.debug("found credentials for %s in %s", key, path)
            return creds
    log.debug("no credentials for %s", key)
    return None


def _read_paths(ctx: SystemContext) -> list[tuple[Path, bool]]:
    paths = [(ctx.auth_file_path(), False)]
    for path in ctx.auth_fallback_paths():
        if all(path != seen for seen, _ in paths):
            paths.append((path, path.name == _LEGACY_FILE_NAME))
    return paths


def _find_in_file(path: Path, legacy: bool, key: str, registry: str) -> Credentials | None:
    document = _read_document(path, legacy)
    if document is None:
        return None
    helpers = document.get("credHelpers")
    if isinstance(helpers, dict) and registry in helpers:
        _warn_once(
            f"{path}: credential helper {helpers[registry]!r} for {registry} is not "
            'supported by skiff; using entries in "auths" only'
        )
    if document.get("credsStore"):
        _warn_once(
            f"{path}: credsStore {document['credsStore']!r} is not supported by skiff; "
            'using entries in "auths" only'
        )
    auths: dict[str, Any] = document["auths"]
    candidates = [registry] if legacy else _keys_for(key)
    for candidate in candidates:
        if candidate in auths:
            return _decode(path, candidate, auths[candidate])
    wanted = _normalize_registry(registry)
    for existing, entry in auths.items():
        if _normalize_file_key(existing, legacy) == wanted:
            return _decode(path, existing, entry)
    return None


def _decode(path: Path, key: str, entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: auths entry {key!r} is not a JSON object", _FIX_HINT)
    encoded = entry.get("auth") or ""
    token = entry.get("identitytoken") or ""
    if not isinstance(encoded, str) or not isinstance(token, str):
        raise ConfigError(
            f"{path}: auths entry {key!r}: auth/identitytoken must be strings", _FIX_HINT
        )
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(
            f'{path}: auths entry {key!r}: "auth" is not base64 of USER:PASSWORD', _FIX_HINT
        ) from exc
    username, colon, password = decoded.partition(":")
    if not colon:
        # docker skips such entries too; an empty one marks a credential helper
        if decoded:
            log.warning("%s: auths entry %r has no ':' in \"auth\"; ignoring it", path, key)
        return None
    return Credentials(username, password.strip("\x00"), token)


_FIX_HINT = "fix the entry, or log in again with 'skiff login' to rewrite it"


def _read_document(path: Path, legacy: bool) -> dict[str, Any] | None:
    """The file's JSON object with an "auths" object, or None if there is no file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read credentials file {path}: {exc.strerror}", "check its permissions"
        ) from exc
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: malformed JSON: {exc}", _FIX_HINT) from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: not a JSON object", _FIX_HINT)
    if legacy:
        return {"auths": document}
    auths = document.get("auths")
    if auths is None:
        document["auths"] = {}
    elif not isinstance(auths, dict):
        raise ConfigError(f'{path}: "auths" is not a JSON object', _FIX_HINT)
    return document


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)


# --- writing ------------------------------------------------------------------


def set_credentials(ctx: SystemContext, key: str, creds: Credentials) -> Path:
    """Store ``creds`` under ``key`` in the auth file; returns the file's path.

    ``key`` is ``host[:port]`` or ``host[:port]/repository`` (see
    ``normalize_login_key``).
    """
    validate_key(key)
    path = ctx.auth_file_path()
    document = _read_document(path, legacy=False) or {"auths": {}}
    helpers = document.get("credHelpers")
    if isinstance(helpers, dict) and key in helpers:
        log.warning(
            "%s: %s is configured to use credential helper %r, which skiff does not run; "
            'storing the credentials in "auths" instead (podman will keep using the helper)',
            path,
            key,
            helpers[key],
        )
    entry: dict[str, str] = {
        "auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
    }
    if creds.identity_token:
        entry["identitytoken"] = creds.identity_token
    document["auths"][key] = entry
    _write_document(path, document)
    return path


def remove_credentials(ctx: SystemContext, key: str) -> bool:
    """Remove the entry for exactly ``key`` from the auth file; False if there was none."""
    validate_key(key)
    path = ctx.auth_file_path()
    document = _read_document(path, legacy=False)
    if document is None or key not in document["auths"]:
        return False
    del document["auths"][key]
    _write_document(path, document)
    return True


def remove_all_credentials(ctx: SystemContext) -> None:
    """Empty "auths" in the auth file (``logout --all``); other keys are kept.

    Credentials kept by credential helpers are not touched (skiff runs none);
    a warning says so when the file names helpers.
    """
    path = ctx.auth_file_path()
    document = _read_document(path, legacy=False)
    if document is None:
        return
    if document.get("credHelpers") or document.get("credsStore"):
        log.warning(
            "%s: credentials kept by credential helpers were not removed (skiff runs no helpers)",
            path,
        )
    document["auths"] = {}
    _write_document(path, document)


def _write_document(path: Path, document: dict[str, Any]) -> None:
    data = json.dumps(document, indent="\t").encode("utf-8")
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600, so the secret is never readable by others
        fd, tmp_name = tempfile.mkstemp(prefix=".auth-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ConfigError(
            f"cannot write credentials file {path}: {exc.strerror}",
            "check the directory's permissions, or choose another file with --authfile",
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write credentials file {path}: {exc.strerror}",
            "check free space and permissions, or choose another file with --authfile",
        ) from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not all filesystems allow fsync on a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of directory %s not supported", directory)
    finally:
        os.close(fd)
