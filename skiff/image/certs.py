"""Per-registry TLS material from certs.d, as containers/image reads it.

containers-certs.d(5): a directory named after the registry's ``host[:port]``
exactly as references spell it (``my-registry.com:5000``, ``docker.io``)
holds

- ``*.crt``  CA certificates trusted in addition to the system store;
- ``*.cert`` + ``*.key`` client certificate pairs, matched by file name
  (``client.cert`` + ``client.key``). A ``.cert`` without its ``.key`` or a
  ``.key`` without its ``.cert`` is an error, as in containers/image, because
  a half-installed pair otherwise fails later with an opaque TLS alert.

Lookup: ``SystemContext.cert_dir`` (``--cert-dir``) *is* the directory — it
replaces the lookup and has no per-host subdirectory, as with skopeo.
Otherwise the first of ``SystemContext.certs_dirs`` that has a
``host[:port]`` subdirectory is used (no merging across directories, and no
fallback from ``host:port`` to ``host``, as containers/image). A missing
directory means no extra material.

``ssl`` is imported lazily: most commands never open a TLS connection.
Building a context loads the system CA store (tens of milliseconds), so a
client should build one per registry and keep it for the operation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ConfigError

if TYPE_CHECKING:
    import ssl

    from skiff.config import SystemContext

log = logging.getLogger(__name__)

_HINT = "see containers-certs.d(5): *.crt are CA certificates, *.cert + *.key client pairs"


@dataclass(frozen=True)
class TLSMaterial:
    """Extra TLS files for one registry (all empty when there are none)."""

    ca_files: tuple[Path, ...] = ()
    client_pairs: tuple[tuple[Path, Path], ...] = ()
    """(certificate, key) pairs, sorted by file name."""
    directory: Path | None = None
    """The directory the files came from, for messages (None if none was found)."""


def cert_dir_for(ctx: SystemContext, host: str) -> Path | None:
    """The directory holding ``host``'s TLS files, or None if there is none."""
    if ctx.cert_dir is not None:
        return ctx.cert_dir
    if not host or "/" in host or host in (".", ".."):
        raise ConfigError(f"invalid registry {host!r} for a certs.d lookup", "expected HOST[:PORT]")
    for base in ctx.certs_dirs:
        candidate = base / host
        if candidate.is_dir():
            return candidate
    return None


def tls_material_for(ctx: SystemContext, host: str) -> TLSMaterial:
    """The CA files and client pairs configured for ``host`` (``host[:port]``)."""
    directory = cert_dir_for(ctx, host)
    if directory is None:
        return TLSMaterial()
    return read_cert_dir(directory)


def read_cert_dir(directory: Path) -> TLSMaterial:
    """Classify the files of one certs.d directory."""
    try:
        with os.scandir(directory) as entries:
            names = sorted(entry.name for entry in entries if not entry.is_dir())
    except FileNotFoundError:
        return TLSMaterial()
    except PermissionError:
        # containers/image skips an unreadable directory the same way
        log.warning("skipping TLS directory %s: permission denied", directory)
        return TLSMaterial()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS directory {directory}: {exc.strerror}", _HINT) from exc
    present = set(names)
    ca_files: list[Path] = []
    pairs: list[tuple[Path, Path]] = []
    for name in names:
        path = directory / name
        if name.endswith(".crt"):
            if not path.exists():
                log.warning("skipping CA certificate %s: dangling symbolic link", path)
                continue
            ca_files.append(path)
        elif name.endswith(".cert"):
            key = name.removesuffix(".cert") + ".key"
            if key not in present:
                raise ConfigError(
                    f"client certificate {path} has no key {key} beside it",
                    "add the key, or rename the file to .crt if it is a CA certificate",
                )
            pairs.append((path, directory / key))
        elif name.endswith(".key"):
            cert = name.removesuffix(".key") + ".cert"
            if cert not in present:
                raise ConfigError(
                    f"client key {path} has no certificate {cert} beside it",
                    "add the client certificate (.cert) or remove the key",
                )
    return TLSMaterial(tuple(ca_files), tuple(pairs), directory)


def ssl_context_for(ctx: SystemContext, host: str, verify: bool) -> ssl.SSLContext:
    """A client SSLContext for ``host``: system CAs + certs.d, client cert loaded.

    With ``verify=False`` neither the chain nor the host name is checked (the
    registry is insecure), but a client certificate is still presented.
    """
    return ssl_context_from(tls_material_for(ctx, host), verify)


def ssl_context_from(material: TLSMaterial, verify: bool) -> ssl.SSLContext:
    """Build the SSLContext for already collected material."""
    import ssl

    if verify:
        context = ssl.create_default_context()
    else:
        # Nothing will be verified, so the system CA store (~20 ms to load,
        # on every command that talks to an insecure registry) is not needed.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for ca_file in material.ca_files:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load CA certificate {ca_file}: {_reason(exc)}",
                "it must hold PEM certificates; " + _HINT,
            ) from exc
    if material.client_pairs:
        cert, key = material.client_pairs[0]
        if len(material.client_pairs) > 1:
            # OpenSSL keeps one certificate per key type; Go would choose per handshake
            log.warning(
                "%s has %d client certificates; using %s",
                material.directory,
                len(material.client_pairs),
                cert.name,
            )
        try:
            context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load client certificate {cert} with key {key}: {_reason(exc)}",
                "both must be PEM and the key must match the certificate",
            ) from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or exc)
