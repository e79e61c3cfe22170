"""registries.conf: where an image name is really fetched from, and on what terms.

An image reference is a *logical* name; registries.conf (containers-
registries.conf(5)) decides, per name prefix, whether it may be pulled at
all (``blocked``), whether TLS may be skipped (``insecure``), which mirrors
are tried first and where the primary really lives (``location``). It also
holds what short-name resolution needs (``unqualified-search-registries``,
``short-name-mode``, ``[aliases]``; see ``skiff.image.shortnames``).

Files: the main file (``SystemContext.registries_conf_path()``), then every
``*.conf`` in the drop-in directories (``registries_conf_dir_paths()``), each
directory sorted by name. As containers/image does, a later file replaces a
``[[registry]]`` with the same prefix, adds new ones, replaces
``unqualified-search-registries`` and ``short-name-mode`` when it sets them,
and merges ``[aliases]`` (an alias set to ``""`` erases it). Drop-ins must
use the v2 format; the main file may use v1 (``[registries.search]``,
``[registries.insecure]``, ``[registries.block]``), which is converted.

Matching: the ``[[registry]]`` whose prefix is the longest match of the
repository name wins. A prefix is ``host[:port]``, ``host[:port]/ns...`` or
``*.example.com`` (any subdomain, any port); it matches only on a path
component boundary, so ``example.com`` matches ``example.com/x`` but neither
``example.com:5000/x`` nor ``example.comx/y`` (containers/image lets the
first one match by accident and documents that as not to be relied on).

Parsing and validation of one file live in ``skiff.image.registries_file``;
it is done once at load: malformed TOML, a wrong type, an invalid
prefix or location, a mirror without location, a bad ``pull-from-mirror`` or
alias all raise ConfigError naming the file and the key, so a bad file fails
the first command that reads it instead of silently matching nothing.

The parsed result is cached per (file, drop-in directories) and revalidated
by stat, because every pull and push consults it; the cache is the one
module-level mutable object here and is guarded by a lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.config import SYSTEM_REGISTRIES_CONF
from skiff.errors import ConfigError, ImageError, InvalidReference
from skiff.oci.reference import NamedReference, parse_named

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.registries_file import FileLayer

log = logging.getLogger(__name__)

MIRROR_ALL = "all"
MIRROR_DIGEST_ONLY = "digest-only"
MIRROR_TAG_ONLY = "tag-only"
PULL_FROM_MIRROR_VALUES = (MIRROR_ALL, MIRROR_DIGEST_ONLY, MIRROR_TAG_ONLY)

SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
DEFAULT_SHORT_NAME_MODE = "permissive"

AUTH_FILE_HELPER = "containers-auth.json"
"""The credential-helpers value meaning "use auth.json files" (the only one skiff runs)."""


class RegistryBlocked(ImageError):
    """registries.conf marks the registry (or namespace) of a reference as blocked."""


@dataclass(frozen=True)
class Endpoint:
    """One place a namespace can be reached: the primary location or a mirror."""

    location: str
    """``host[:port][/path]`` with no scheme; empty only for a wildcard prefix's
    primary, which means "the reference's own registry"."""
    insecure: bool
    """Skip TLS verification and allow plain http."""
    pull_from_mirror: str = MIRROR_ALL
    """For mirrors: "all", "digest-only" or "tag-only"."""


@dataclass(frozen=True)
class Registry:
    """One ``[[registry]]`` table after defaults were applied."""

    prefix: str
    endpoint: Endpoint
    blocked: bool
    mirrors: tuple[Endpoint, ...]
    mirror_by_digest_only: bool


@dataclass(frozen=True)
class PullSource:
    """One place to try when pulling a reference, in ``pull_sources`` order.

    Connect to ``reference.domain``. Credentials given on the command line
    (``--creds``) are meant for the logical registry: containers/image does not
    send them to a source whose domain differs from the requested one, and
    neither should the client.
    """

    reference: NamedReference
    endpoint: Endpoint
    is_mirror: bool


@dataclass(frozen=True)
class RegistriesConfig:
    """The merged registries.conf (main file + drop-ins)."""

    registries: tuple[Registry, ...]
    """Sorted by prefix; prefixes are unique."""
    unqualified_search_registries: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict, hash=False)
    """Short name (``busybox``, ``opensuse/leap``) → normalized repository name."""
    short_name_mode: str = DEFAULT_SHORT_NAME_MODE
    sources: tuple[Path, ...] = ()
    """Files that were loaded, in order (for messages)."""
    unqualified_search_origin: str = ""
    """The file that set ``unqualified-search-registries`` ("" if none did)."""
    alias_origins: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Short name → the file its alias came from."""
    credential_helpers: tuple[str, ...] = (AUTH_FILE_HELPER,)

    def describe_sources(self) -> str:
        """The loaded files as one string for error messages."""
        if not self.sources:
            return "registries.conf (no file found)"
        return ", ".join(str(path) for path in self.sources)

    def find_registry(self, name: str) -> Registry | None:
        """The registry whose prefix is the longest match of ``name``.

        ``name`` is ``host[:port]`` or a repository ``host[:port]/path`` (no
        tag or digest: prefixes match repository names, as containers/image
        matches ``reference.Name()``). On equal length an exact prefix beats
        a wildcard (``a.example.com`` over ``*.example.com``), where
        containers/image would take whichever sorts first.
        """
        best: Registry | None = None
        best_key = (-1, False)
        for registry in self.registries:
            if _match_length(registry.prefix, name) < 0:
                continue
            key = (len(registry.prefix), not registry.prefix.startswith("*."))
            if key > best_key:
                best, best_key = registry, key
        return best

    def check_blocked(self, ref: NamedReference) -> None:
        """Raise RegistryBlocked if ``ref``'s registry is blocked (pull and push)."""
        registry = self.find_registry(ref.name)
        if registry is not None and registry.blocked:
            raise self._blocked_error(registry, ref)

    def pull_sources(self, ref: NamedReference) -> list[PullSource]:
        """Where to try pulling ``ref``, in order: usable mirrors, then the primary.

        A mirror is skipped when the reference is by tag and the mirror (or the
        registry's ``mirror-by-digest-only``) wants digests only, or when it is
        by digest and the mirror is ``tag-only``. A reference with both tag and
        digest counts as by digest. Each source's reference is rewritten from
        the prefix to that endpoint's location. A source whose rewritten name
        falls under a blocked registry is skipped with a warning; if the
        requested name itself is blocked, RegistryBlocked is raised.
        """
        registry = self.find_registry(ref.name)
        if registry is None:
            return [PullSource(ref, Endpoint(ref.domain, insecure=False), is_mirror=False)]
        if registry.blocked:
            raise self._blocked_error(registry, ref)
        matched = _match_length(registry.prefix, ref.name)
        by_digest = ref.digest is not None
        mirrors: list[Endpoint] = []
        if registry.mirror_by_digest_only:
            if by_digest:
                mirrors = list(registry.mirrors)
        else:
            for mirror in registry.mirrors:
                if mirror.pull_from_mirror == MIRROR_DIGEST_ONLY and not by_digest:
                    continue
                if mirror.pull_from_mirror == MIRROR_TAG_ONLY and by_digest:
                    continue
                mirrors.append(mirror)

        sources: list[PullSource] = []
        candidates = [(mirror, True) for mirror in mirrors] + [(registry.endpoint, False)]
        for endpoint, is_mirror in candidates:
            rewritten = _rewrite(ref, registry.prefix, endpoint.location, matched)
            if rewritten != ref:
                blocker = self.find_registry(rewritten.name)
                if blocker is not None and blocker.blocked:
                    log.warning(
                        "not trying %s for %s: registry %s is blocked in %s",
                        rewritten,
                        ref,
                        blocker.prefix,
                        self.describe_sources(),
                    )
                    continue
            target = endpoint if endpoint.location else replace(endpoint, location=ref.domain)
            sources.append(PullSource(rewritten, target, is_mirror))
        if not sources:
            raise RegistryBlocked(
                f"cannot pull {ref}: every location configured for prefix {registry.prefix} "
                f"is blocked in {self.describe_sources()}",
                "unblock one of the locations or mirrors in registries.conf",
            )
        return sources

    def is_insecure(self, host: str) -> bool:
        """Whether registries.conf allows http / unverified TLS for ``host[:port]``.

        Mirrors carry their own flag in ``PullSource.endpoint.insecure``.
        """
        registry = self.find_registry(host)
        return registry is not None and registry.endpoint.insecure

    def _blocked_error(self, registry: Registry, ref: NamedReference) -> RegistryBlocked:
        return RegistryBlocked(
            f"registry {registry.prefix} is blocked in {self.describe_sources()}: "
            f"refusing to access {ref}",
            f"remove 'blocked = true' from the [[registry]] with prefix {registry.prefix!r} "
            "if this access is intended",
        )


# --- matching and rewriting -------------------------------------------------


def _hostname(host: str) -> str:
    """``host[:port]`` without the port (``[::1]:5000`` → ``[::1]``)."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    return host.partition(":")[0]


def _match_length(prefix: str, name: str) -> int:
    """How many leading characters of ``name`` the prefix covers, or -1."""
    if prefix.startswith("*."):
        host = name.partition("/")[0]
        hostname = _hostname(host)
        suffix = prefix[1:]
        if len(hostname) > len(suffix) and hostname.endswith(suffix):
            return len(host)
        return -1
    if name == prefix:
        return len(prefix)
    if name.startswith(prefix) and name[len(prefix)] == "/":
        return len(prefix)
    return -1


def _rewrite(ref: NamedReference, prefix: str, location: str, matched: int) -> NamedReference:
    """``ref`` with its first ``matched`` characters replaced by ``location``."""
    if not location:
        return ref
    text = location + str(ref)[matched:]
    if text == str(ref):
        return ref
    try:
        return parse_named(text)
    except InvalidReference as exc:
        raise InvalidReference(
            f"rewriting {ref} from prefix {prefix!r} to location {location!r} "
            f"gives an invalid reference {text!r}: {exc.message}",
            "fix the location in registries.conf (docker.io locations need the "
            "library/ namespace spelled out)",
        ) from exc


# --- loading ----------------------------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[tuple[Path, tuple[Path, ...]], tuple[object, RegistriesConfig]] = {}


def load_registries_conf(ctx: SystemContext) -> RegistriesConfig:
    """The registries configuration for ``ctx`` (main file + drop-ins), cached.

    The cache is keyed by the paths and revalidated with the files' stat data
    (mtime, size, inode) and the drop-in directory listings, so an edited
    file is picked up by the next call in a long-running process (the CRI).
    """
    main = ctx.registries_conf_path()
    dirs = ctx.registries_conf_dir_paths()
    key = (main, dirs)
    drop_ins = _list_drop_ins(dirs)
    signature = (_stat_signature(main), tuple((p, _stat_signature(p)) for p in drop_ins))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
    config = load_registries_files(main, drop_ins, main_optional=main == SYSTEM_REGISTRIES_CONF)
    with _cache_lock:
        _cache[key] = (signature, config)
    return config


def load_registries_files(
    main: Path, drop_ins: Sequence[Path], main_optional: bool = False
) -> RegistriesConfig:
    """Parse and merge ``main`` and then ``drop_ins`` in order (uncached).

    A missing ``main`` is an error unless ``main_optional`` (the system file
    may legitimately be absent); a drop-in that vanished since it was listed
    is skipped.
    """
    from skiff.image.registries_file import parse_registries_file

    layers: list[FileLayer] = []
    try:
        layers.append(parse_registries_file(main, drop_in=False))
    except FileNotFoundError:
        if not main_optional:
            raise ConfigError(
                f"registries configuration {main} does not exist",
                "create it or point --registries-conf / $CONTAINERS_REGISTRIES_CONF "
                "at an existing file",
            ) from None
    for path in drop_ins:
        try:
            layers.append(parse_registries_file(path, drop_in=True))
        except FileNotFoundError:
            continue
    return _merge(layers)


def _list_drop_ins(dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in dirs:
        try:
            with os.scandir(directory) as entries:
                names = sorted(
                    entry.name
                    for entry in entries
                    if entry.name.endswith(".conf") and entry.is_file()
                )
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot list registries.conf drop-in directory {directory}: {exc.strerror}",
                "fix its permissions or remove it",
            ) from exc
        files.extend(directory / name for name in names)
    return files


def _stat_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _merge(layers: Sequence[FileLayer]) -> RegistriesConfig:
    registries: dict[str, Registry] = {}
    search: tuple[str, ...] = ()
    search_origin = ""
    mode = ""
    aliases: dict[str, str | None] = {}
    alias_origins: dict[str, str] = {}
    helpers: tuple[str, ...] = ()
    for layer in layers:
        for registry in layer.registries:
            registries[registry.prefix] = registry
        if layer.unqualified_search is not None:
            search = layer.unqualified_search
            search_origin = str(layer.path)
        if layer.short_name_mode is not None:
            mode = layer.short_name_mode
        for name, value in layer.aliases.items():
            aliases[name] = value
            alias_origins[name] = str(layer.path)
        if layer.credential_helpers is not None:
            helpers = layer.credential_helpers
    kept = {name: value for name, value in aliases.items() if value is not None}
    return RegistriesConfig(
        registries=tuple(registries[prefix] for prefix in sorted(registries)),
        unqualified_search_registries=search,
        aliases=kept,
        short_name_mode=mode or DEFAULT_SHORT_NAME_MODE,
        sources=tuple(layer.path for layer in layers),
        unqualified_search_origin=search_origin,
        alias_origins={name: alias_origins[name] for name in kept},
        credential_helpers=helpers or (AUTH_FILE_HELPER,),
    )
