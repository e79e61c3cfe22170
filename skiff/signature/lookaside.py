"""registries.d and lookaside signature storage for registry images.

Registries cannot hold simple signatures, so they live beside them in a
*lookaside* store, configured per registry/namespace/repository in
``registries.d/*.yaml`` (containers-registries.d(5)):

    default-docker:
      lookaside-staging: file:///var/lib/containers/sigstore
    docker:
      registry.example.com/team:
        lookaside: https://sigs.example.com/team        # read (and write, w/o staging)
        lookaside-staging: file:///srv/sigs/team        # write
        use-sigstore-attachments: true

``sigstore``/``sigstore-staging`` are the older names of ``lookaside``/
``lookaside-staging`` (one entry may not use both spellings). A key is a
registry host, a namespace, a repository or an image (``repo:tag``); the
same key may appear in only one file, ``default-docker`` only once.

Lookup, as containers/image does it: the image's identity, then its
namespaces (most specific first, the docker transport's policy namespaces),
then ``default-docker``; for reading, the first section with a
``lookaside``; for writing, the first with a staging or plain URL; if none,
the built-in default directory (/var/lib/containers/sigstore as root,
~/.local/share/containers/sigstore otherwise). ``use-sigstore-attachments``
comes from the first section that sets it (default false).

Layout (shared with skopeo and podman): ``BASE/REPO-PATH@ALG=HEX/signature-N``
with REPO-PATH the repository without its registry and N from 1. Readers
stop at the first missing N. ``file://`` is read and written; ``http(s)://``
is read only, with ``SystemContext.lookaside_timeout``.

Writing never destroys a signature already stored for the digest: new
signatures that are not byte-identical to a stored one are added under the
next free numbers (created with link(2), so two writers cannot take the same
number), so signatures by different signers stay side by side.
(containers/image rewrites the whole list instead; see docs/trust.md.)
"""

from __future__ import annotations

import errno
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import ConfigError, SignatureError
from skiff.oci.digest import Digest

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.oci.reference import NamedReference

MAX_SIGNATURES = 128
"""Readers stop here: a lookaside cannot make a copy read forever."""
MAX_SIGNATURE_SIZE = 4 << 20

_SECTION_KEYS = {
    "lookaside",
    "lookaside-staging",
    "sigstore",
    "sigstore-staging",
    "use-sigstore-attachments",
}


def builtin_default() -> str:
    """Where signatures go when registries.d says nothing (containers/image's default)."""
    if os.geteuid() == 0:
        return "file:///var/lib/containers/sigstore"
    return (Path.home() / ".local/share/containers/sigstore").as_uri()


@dataclass(frozen=True)
class Section:
    """One configuration section (a ``docker:`` entry or ``default-docker``)."""

    source: Path
    lookaside: str | None = None
    lookaside_staging: str | None = None
    use_sigstore_attachments: bool | None = None

    def url(self, write: bool) -> str | None:
        if write and self.lookaside_staging:
            return self.lookaside_staging
        return self.lookaside


def _section(value: Any, where: str, source: Path) -> Section:
    if value is None:
        return Section(source)
    if not isinstance(value, dict):
        raise ConfigError(f"invalid registries.d file {source}: {where} is not a mapping")
    unknown = sorted(str(k) for k in value.keys() - _SECTION_KEYS)
    if unknown:
        raise ConfigError(
            f"invalid registries.d file {source}: unknown key {unknown[0]!r} in {where}",
            f"known keys: {', '.join(sorted(_SECTION_KEYS))}",
        )
    urls: dict[str, str | None] = {}
    for key in ("lookaside", "lookaside-staging", "sigstore", "sigstore-staging"):
        item = value.get(key)
        if item is not None and (not isinstance(item, str) or not item):
            raise ConfigError(f"invalid registries.d file {source}: {where}.{key} is not a URL")
        urls[key] = item
    for new, old in (("lookaside", "sigstore"), ("lookaside-staging", "sigstore-staging")):
        if urls[new] and urls[old]:
            raise ConfigError(
                f"invalid registries.d file {source}: {where} has both {new!r} and {old!r}",
                f"{old!r} is the old name of {new!r}; keep one",
            )
    attachments = value.get("use-sigstore-attachments")
    if attachments is not None and not isinstance(attachments, bool):
        raise ConfigError(
            f"invalid registries.d file {source}: {where}.use-sigstore-attachments "
            "is not true or false"
        )
    return Section(
        source,
        urls["lookaside"] or urls["sigstore"],
        urls["lookaside-staging"] or urls["sigstore-staging"],
        attachments,
    )


@dataclass(frozen=True)
class RegistriesD:
    """The merged configuration of one registries.d directory."""

    directory: Path
    default_docker: Section | None = None
    docker: dict[str, Section] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> RegistriesD:
        """Read every ``*.yaml`` in ``directory`` (missing directory: empty config)."""
        try:
            files = sorted(p for p in directory.iterdir() if p.name.endswith(".yaml"))
        except FileNotFoundError:
            return cls(directory)
        except OSError as exc:
            raise ConfigError(f"cannot read registries.d {directory}: {exc.strerror}") from exc
        if not files:
            return cls(directory)
        import yaml  # ~15 ms: only when there is something to read

        default: Section | None = None
        docker: dict[str, Section] = {}
        for path in files:
            if path.is_dir():
                continue
            try:
                document = yaml.safe_load(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read registries.d file {path}: {exc.strerror}") from exc
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid registries.d file {path}: not YAML ({exc})") from exc
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ConfigError(f"invalid registries.d file {path}: not a YAML mapping")
            unknown = sorted(str(k) for k in document.keys() - {"default-docker", "docker"})
            if unknown:
                raise ConfigError(
                    f"invalid registries.d file {path}: unknown top-level key {unknown[0]!r}",
                    "known keys: default-docker, docker",
                )
            if "default-docker" in document:
                if default is not None:
                    raise ConfigError(
                        f"registries.d: default-docker is defined in both {default.source} and {path}",
                        "keep one",
                    )
                default = _section(document["default-docker"], "default-docker", path)
            entries = document.get("docker") or {}
            if not isinstance(entries, dict):
                raise ConfigError(f"invalid registries.d file {path}: docker is not a mapping")
            for key, value in entries.items():
                if not isinstance(key, str) or not key:
                    raise ConfigError(
                        f"invalid registries.d file {path}: invalid docker key {key!r}"
                    )
                if key in docker:
                    raise ConfigError(
                        f"registries.d: {key!r} is configured in both {docker[key].source} and {path}",
                        "a scope may be configured in one file only",
                    )
                docker[key] = _section(value, f"docker[{key!r}]", path)
        return cls(directory, default, docker)

    def _chain(self, ref: NamedReference) -> list[Section]:
        from skiff.image.transports.docker.transport import DockerReference

        docker_ref = DockerReference.from_named(ref)
        keys = [docker_ref.policy_configuration_identity()]
        keys += docker_ref.policy_configuration_namespaces()
        chain = [self.docker[k] for k in keys if k in self.docker]
        if self.default_docker is not None:
            chain.append(self.default_docker)
        return chain

    def base_url(self, ref: NamedReference, write: bool) -> str:
        """The lookaside URL for ``ref`` (before the repository path is added)."""
        for section in self._chain(ref):
            url = section.url(write)
            if url:
                return url
        return builtin_default()

    def use_sigstore_attachments(self, ref: NamedReference) -> bool:
        for section in self._chain(ref):
            if section.use_sigstore_attachments is not None:
                return section.use_sigstore_attachments
        return False


def load_registries_d(ctx: SystemContext) -> RegistriesD:
    return RegistriesD.load(ctx.registries_d_path())


def signature_location(base: str, ref: NamedReference, digest: Digest) -> str:
    """``BASE/REPO-PATH@ALG=HEX`` — the directory (or URL) of a manifest's signatures."""
    return f"{base.rstrip('/')}/{ref.path}@{digest.algorithm}={digest.hex}"


def _file_path(url: str, what: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file":
        raise ConfigError(f"{what}: {url!r} is not a file:// URL")
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{what}: {url!r} names a remote host", "use file:///PATH")
    return Path(urllib.parse.unquote(parts.path))


class LookasideReader:
    """Reads the simple signatures of one registry's images from their lookaside."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        scheme = urllib.parse.urlsplit(base).scheme
        if scheme not in ("file", "http", "https"):
            raise ConfigError(
                f"lookaside {base!r}: unsupported URL scheme {scheme!r}",
                "use file://, http:// or https:// in registries.d",
            )
        self.base = base
        self.timeout = timeout

    def location(self, ref: NamedReference, digest: Digest) -> str:
        return signature_location(self.base, ref, digest)

    def read(self, ref: NamedReference, digest: Digest) -> list[bytes]:
        location = self.location(ref, digest)
        if self.base.startswith("file:"):
            return self._read_files(_file_path(location, "lookaside"), ref)
        return self._read_http(location, ref)

    def _read_files(self, directory: Path, ref: NamedReference) -> list[bytes]:
        out: list[bytes] = []
        for index in range(1, MAX_SIGNATURES + 1):
            path = directory / f"signature-{index}"
            try:
                with path.open("rb") as handle:
                    data = handle.read(MAX_SIGNATURE_SIZE + 1)
            except FileNotFoundError:
                return out
            except OSError as exc:
                raise SignatureError(
                    f"cannot read signature {path} of {ref}: {exc.strerror or exc}"
                ) from exc
            if len(data) > MAX_SIGNATURE_SIZE:
                raise SignatureError(f"signature {path} of {ref} is larger than 4 MiB")
            out.append(data)
        return out

    def _read_http(self, location: str, ref: NamedReference) -> list[bytes]:
        import urllib3

        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout), retries=False
        )
        out: list[bytes] = []
        try:
            for index in range(1, MAX_SIGNATURES + 1):
                url = f"{location}/signature-{index}"
                try:
                    resp = pool.request("GET", url, preload_content=False, redirect=True)
                    try:
                        if resp.status == 404:
                            return out
                        if resp.status != 200:
                            raise SignatureError(
                                f"reading signatures of {ref} from {url}: HTTP {resp.status}",
                                "check the lookaside configuration in registries.d",
                            )
                        data = resp.read(MAX_SIGNATURE_SIZE + 1)
                    finally:
                        resp.release_conn()
                except urllib3.exceptions.TimeoutError as exc:
                    raise SignatureError(
                        f"reading signatures of {ref} from {url}: no answer within "
                        f"{self.timeout:g} s",
                        "is the lookaside server up? check registries.d",
                    ) from exc
                except urllib3.exceptions.HTTPError as exc:
                    raise SignatureError(
                        f"reading signatures of {ref} from {url}: {exc}",
                        "is the lookaside server up? check registries.d",
                    ) from exc
                if len(data) > MAX_SIGNATURE_SIZE:
                    raise SignatureError(f"signature {url} of {ref} is larger than 4 MiB")
                out.append(data)
            return out
        finally:
            pool.clear()


class LookasideWriter:
    """Adds simple signatures to a ``file://`` lookaside."""

    def __init__(self, base: str) -> None:
        scheme = urllib.parse.urlsplit(base).scheme
        if scheme != "file":
            raise SignatureError(
                f"cannot write signatures to lookaside {base!r}: only file:// can be written",
                "set lookaside-staging to a file:// URL in registries.d",
            )
        self.base = base

    def location(self, ref: NamedReference, digest: Digest) -> str:
        return signature_location(self.base, ref, digest)

    def write(self, ref: NamedReference, digest: Digest, signatures: list[bytes]) -> int:
        """Store the signatures not stored yet; how many were added."""
        directory = _file_path(self.location(ref, digest), "lookaside")
        existing = LookasideReader(self.base).read(ref, digest)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SignatureError(
                f"cannot create lookaside directory {directory}: {exc.strerror or exc}",
                "check lookaside-staging in registries.d and the directory's permissions",
            ) from exc
        added = 0
        index = len(existing) + 1
        for signature in signatures:
            if signature in existing:
                continue
            index = _add_file(directory, index, signature)
            existing.append(signature)
            added += 1
            index += 1
        return added


def _add_file(directory: Path, index: int, data: bytes) -> int:
    """Write ``data`` as ``signature-N`` for the first free N ≥ ``index``; that N."""
    from skiff.image.transports.localfs import fsync_dir, temp_file, write_all

    fd, tmp = temp_file(directory, ".signature-")
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        while index <= MAX_SIGNATURES:
            try:
                os.link(tmp, directory / f"signature-{index}")
            except FileExistsError:
                index += 1
                continue
            fsync_dir(directory)
            return index
        raise SignatureError(f"{directory} already holds {MAX_SIGNATURES} signatures")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise SignatureError(f"no space left to write a signature in {directory}") from exc
        raise SignatureError(
            f"cannot write a signature in {directory}: {exc.strerror or exc}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
