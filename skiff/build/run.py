"""``builder run``: run a command in a working container, in the foreground.

As buildah does, a build step needs no monitor: the spec is generated
(``skiff.runtime.specgen``) from the working container's config being built
(its Env, User and WorkingDir) plus the options, and ``runc run`` (or crun)
executes it with skiff's standard input, output and error passed straight
through; its exit status is the command's. Nothing is recorded among the
runtime's containers: each run has a fresh runtime ID, its bundle
(config.json, /etc/hosts, /etc/resolv.conf, /etc/hostname,
/run/.containerenv) in RUNROOT/containers/ID, and everything is undone
when the command ends, whether it succeeded, failed or was interrupted:
the runtime's container, the network, the mounts.

The root file system is left as the command left it, and nothing else:
/etc/hostname and /run/.containerenv are mounted only over files the image
has (buildah creates them, and its images then carry an empty
/etc/hostname and /run), and any other mount point the runtime had to
create (/etc/hosts in an image without one, a ``-v`` target) is removed
afterwards when it is still empty. With overlay, creating even an empty
file copies its directory up, and the directory would be in the layer.

Networks: ``none`` (the default: a new namespace with only loopback),
``host``, ``private`` (the default network through netavark, as ``skiff
run`` gets), or the name of a network (``skiff network create``); a
network is torn down when the command ends.

Mounts: ``-v`` as ``skiff run`` takes them (host paths only), and the
executor's ``RUN --mount``:

- ``type=bind``: ``source`` inside the build context (``context_dir``), or
  inside the root named by ``from`` (a stage the executor passes in
  ``sources``, else a working container or an image of the store, mounted
  for the run). Read-only unless ``rw``, and then the run writes to a copy
  that is thrown away, as BuildKit does. A source resolving outside its root
  is an error.
- ``type=cache``: a directory kept under STORAGE-ROOT/build-cache, keyed
  by ``id`` (default: the target), created with ``mode``/``uid``/``gid``;
  ``sharing=locked`` (and ``private``, which skiff treats alike) holds a lock
  on it for the run, ``shared`` lets runs use it together.
- ``type=tmpfs``: a tmpfs of ``size`` bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from skiff.build.builder import Builder, find_builder, get_builder
from skiff.errors import (
    BuildError,
    CommandNotFound,
    CommandNotInvokable,
    ContainerError,
    UsageError,
)
from skiff.runtime.engine import Runtime

log = logging.getLogger(__name__)

CACHE_DIR = "build-cache"
_DROPPED_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
"""Variables through which a runtime would hand host fds or sockets to the
container (see skiff.runtime.oci): never passed on."""
_NETWORKS = {"none": "none", "host": "host", "private": "bridge", "bridge": "bridge"}
_NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

Stream = IO[Any] | int | None


@dataclass(frozen=True)
class RunMount:
    """One ``RUN --mount=...`` (BuildKit's keys)."""

    type: str
    target: str
    source: str = ""
    from_: str = ""
    id: str = ""
    sharing: str = "shared"
    read_only: bool | None = None
    """None: the type's default (bind read-only, cache and tmpfs writable)."""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None


def parse_run_mount(text: str) -> RunMount:
    """``type=cache,target=/root/.cache,sharing=locked`` → RunMount."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not key:
            continue
        key = key.lower()
        if sep:
            fields[key] = value
        else:
            flags.add(key)
    kind = fields.pop("type", "bind")
    if kind not in ("bind", "cache", "tmpfs"):
        raise UsageError(f"invalid --mount {text!r}: type must be bind, cache or tmpfs")
    target = next((fields.pop(k) for k in ("target", "dst", "destination") if k in fields), "")
    if not target.startswith("/"):
        raise UsageError(f"invalid --mount {text!r}: target must be an absolute path")
    read_only: bool | None = None
    if flags & {"ro", "readonly"}:
        read_only = True
    if "rw" in flags or "readwrite" in flags:
        read_only = False
    for key in ("ro", "readonly"):
        if key in fields:
            read_only = fields.pop(key).lower() in ("", "true", "1")
    for key in ("rw", "readwrite"):
        if key in fields:
            read_only = fields.pop(key).lower() not in ("", "true", "1")
    sharing = fields.pop("sharing", "shared")
    if sharing not in ("shared", "private", "locked"):
        raise UsageError(f"invalid --mount {text!r}: sharing must be shared, private or locked")

    def number(key: str, base: int = 10) -> int | None:
        if key not in fields:
            return None
        value = fields.pop(key)
        try:
            return int(value, base)
        except ValueError:
            raise UsageError(f"invalid --mount {text!r}: {key}={value!r} is not a number") from None

    mount = RunMount(
        type=kind,
        target=target,
        source=next((fields.pop(k) for k in ("source", "src") if k in fields), ""),
        from_=fields.pop("from", ""),
        id=fields.pop("id", ""),
        sharing=sharing,
        read_only=read_only,
        mode=number("mode", 8),
        uid=number("uid"),
        gid=number("gid"),
        size=number("size"),
    )
    if fields or flags - {"ro", "readonly", "rw", "readwrite"}:
        unknown = sorted(fields) + sorted(flags - {"ro", "readonly", "rw", "readwrite"})
        raise UsageError(f"invalid --mount {text!r}: unknown option {unknown[0]!r}")
    return mount


@dataclass
class RunOptions:
    command: list[str]
    env: list[str] = field(default_factory=list)
    """``KEY=VALUE``, or ``KEY`` for the caller's value."""
    user: str | None = None
    """None: the working container's User."""
    workdir: str | None = None
    """None: the working container's WorkingDir; created when missing."""
    volumes: list[str] = field(default_factory=list)
    mounts: list[RunMount] = field(default_factory=list)
    network: str | None = None
    """none, host, private (the default network) or a network's name; None:
    the working container's default."""
    network_name: str = ""
    """Set from ``network`` when it names a network."""
    terminal: bool = False
    hostname: str | None = None
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    runtime: str = ""
    context_dir: Path | None = None
    """The build context (``--mount type=bind`` sources without ``from``)."""
    sources: Mapping[str, Path] = field(default_factory=dict)
    """Root directories ``--mount from=NAME`` may name (the executor's stages)."""
    stdin: Stream = None
    stdout: Stream = None
    stderr: Stream = None
    """None: skiff's own, passed through."""


@dataclass(frozen=True)
class RunReport:
    exit_code: int
    run_id: str


def run_in_builder(rt: Runtime, ref: str | Builder, options: RunOptions) -> RunReport:
    """Run ``options.command`` in the working container; returns its exit code.

    Runtime failures (the command does not exist, the runtime refused the
    spec) raise: CommandNotFound (127), CommandNotInvokable (126) or
    ContainerError; a command that ran and failed is a non-zero exit code.
    """
    from skiff.storage.layers import random_id

    builder = ref if isinstance(ref, Builder) else get_builder(rt.store, ref)
    if not options.command:
        raise UsageError("no command specified", "give the command after the container name")
    wanted = options.network or builder.network
    network = _NETWORKS.get(wanted)
    if network is None:
        if not _NETWORK_NAME.fullmatch(wanted):
            raise UsageError(
                f"invalid network {wanted!r}", "use none, host, private or a network's name"
            )
        network = "bridge"
        options = dataclasses.replace(options, network_name=wanted)
    if options.terminal and not _is_terminal(options.stdin):
        raise UsageError("a terminal (-t) needs standard input to be a terminal")
    run_id = random_id()
    with contextlib.ExitStack() as cleanup:
        return _run(rt, builder, options, network=network, run_id=run_id, cleanup=cleanup)


def _is_terminal(stream: Stream) -> bool:
    if stream is None:
        return os.isatty(0)
    if isinstance(stream, int):
        return stream >= 0 and os.isatty(stream)
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _run(
    rt: Runtime,
    builder: Builder,
    options: RunOptions,
    *,
    network: str,
    run_id: str,
    cleanup: contextlib.ExitStack,
) -> RunReport:
    from skiff.runtime.specgen import etcfiles, resolve_host_sources
    from skiff.runtime.specgen.host import HostInfo
    from skiff.runtime.specgen.spec import generate_spec

    store = rt.store
    paths = rt.paths(run_id)
    bundle = paths.run_dir
    bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
    cleanup.callback(shutil.rmtree, bundle, ignore_errors=True)
    rootfs = store.mount_container(builder.container_id)
    cleanup.callback(store.unmount_container, builder.container_id)

    sg = _spec_generator(builder, options, network)
    image_config = builder.image_config()
    sg.storage.mounts = resolve_host_sources(
        [*sg.storage.mounts, *_run_mounts(rt, options, bundle, cleanup)]
    )
    host = HostInfo.detect()
    if options.workdir:
        _make_workdir(rootfs, options.workdir, sg, image_config)

    netns_path: str | None = None
    addresses: list[str] = []
    dns: list[str] = []
    if network == "bridge":
        from skiff.runtime.network.setup import setup_network, teardown_network

        status = setup_network(
            store,
            run_id,
            builder.name,
            mode="bridge",
            networks=[options.network_name] if options.network_name else None,
        )
        cleanup.callback(_quietly, teardown_network, store, run_id)
        netns_path = str(status.netns)
        addresses = [str(a.ip) for a in status.addresses]
        dns = [str(ip) for ip in status.dns_servers]
    hostname = sg.basic.hostname
    # /etc/hostname and /run/.containerenv are only mounted over files the
    # image has: creating them would change /etc and / in the layer
    files = etcfiles.write_container_files(
        bundle,
        hosts=etcfiles.render_hosts(
            hostname=hostname,
            name=builder.name,
            addresses=addresses,
            base=_read_text("/etc/hosts") if network == "host" else "",
        ),
        resolv_conf=etcfiles.render_resolv_conf(
            host_resolv_conf=_read_text("/etc/resolv.conf"),
            servers=dns,
            private_netns=network != "host",
        ),
        hostname=etcfiles.render_hostname(hostname) if _exists(rootfs, "/etc/hostname") else None,
        containerenv="" if _exists(rootfs, "/run/.containerenv") else None,
    )
    spec = generate_spec(
        sg,
        image_config,
        rootfs,
        container_id=run_id,
        container_files=files,
        netns_path=netns_path,
        host=host,
    )
    created = _missing_mount_points(rootfs, spec)
    cleanup.callback(_remove_mount_points, rootfs, created)
    _write_json(bundle / "config.json", spec)
    runtime = rt.oci(options.runtime)
    cleanup.callback(_quietly, runtime.delete, run_id, force=True)
    return RunReport(_execute(runtime, run_id, bundle, options), run_id)


def _spec_generator(builder: Builder, options: RunOptions, network: str) -> Any:
    from skiff.runtime.specgen import Namespace, NamespaceMode, SpecGenerator, parse_volume
    from skiff.runtime.specgen.mounts import BindMount

    sg = SpecGenerator()
    sg.basic.command = list(options.command)
    sg.basic.entrypoint = []
    sg.basic.env = _env(options.env)
    sg.basic.workdir = options.workdir or ""
    sg.basic.terminal = options.terminal
    sg.basic.hostname = options.hostname or builder.id[:12]
    sg.security.user = options.user
    sg.security.cap_add = list(options.cap_add)
    sg.security.cap_drop = list(options.cap_drop)
    mode = {
        "none": NamespaceMode.NONE,
        "host": NamespaceMode.HOST,
        "bridge": NamespaceMode.PRIVATE,
    }[network]
    sg.network.network = Namespace(mode)
    for spec in [*builder.volumes, *options.volumes]:
        mount = parse_volume(spec)
        if not isinstance(mount, BindMount):
            raise UsageError(
                f"invalid volume {spec!r}: builder run mounts host directories only",
                "give a host path: -v /host/dir:/container/dir",
            )
        sg.storage.mounts.append(mount)
    return sg


def _env(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --env {item!r}", "use KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue  # podman's rule: an unset variable is left out
            value = os.environ[key]
        out[key] = value
    return out


def _exists(rootfs: Path, path: str) -> bool:
    from skiff.runtime.specgen import rootfs as rootfs_paths

    try:
        return not rootfs_paths.resolve(rootfs, path).missing
    except OSError:
        return False


def _make_workdir(rootfs: Path, workdir: str, sg: Any, image_config: Any) -> None:
    """``--workingdir`` is created when missing, owned by the run's user (buildah)."""
    from skiff.runtime.specgen import rootfs as rootfs_paths
    from skiff.runtime.specgen.user import resolve_user

    if not workdir.startswith("/"):
        raise UsageError(f"invalid --workingdir {workdir!r}: must be an absolute path")
    user = resolve_user(
        rootfs, sg.security.user if sg.security.user is not None else image_config.user
    )
    try:
        rootfs_paths.make_dirs(rootfs, workdir, user.uid, user.gid)
    except OSError as exc:
        raise ContainerError(
            f"cannot create the working directory {workdir}: {exc.strerror or exc}"
        ) from exc


# --- RUN --mount ----------------------------------------------------------------------


def _run_mounts(
    rt: Runtime, options: RunOptions, bundle: Path, cleanup: contextlib.ExitStack
) -> list[Any]:
    from skiff.runtime.specgen.mounts import BindMount, make_tmpfs

    out: list[Any] = []
    for mount in options.mounts:
        if mount.type == "tmpfs":
            opts = [f"size={mount.size}"] if mount.size else []
            if mount.mode is not None:
                opts.append(f"mode={mount.mode:o}")
            out.append(make_tmpfs(mount.target, opts))
        elif mount.type == "cache":
            path = _cache_dir(rt, mount, cleanup)
            out.append(
                BindMount(
                    source=str(path),
                    destination=mount.target,
                    read_only=bool(mount.read_only),
                    given_source=f"cache {mount.id or mount.target}",
                )
            )
        else:
            source = _bind_source(rt, options, mount, cleanup)
            read_only = True if mount.read_only is None else mount.read_only
            if not read_only:
                source = _scratch_copy(source, bundle / f"rw-{len(out)}")
            out.append(
                BindMount(
                    source=str(source),
                    destination=mount.target,
                    read_only=read_only,
                    given_source=mount.source or ".",
                )
            )
    return out


def _cache_dir(rt: Runtime, mount: RunMount, cleanup: contextlib.ExitStack) -> Path:
    key = hashlib.sha256((mount.id or mount.target).encode()).hexdigest()
    base = rt.store.root / CACHE_DIR
    base.mkdir(exist_ok=True, mode=0o700)
    path = base / key
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # made by an earlier run: keep its owner and mode
    else:
        os.chown(path, mount.uid or 0, mount.gid or 0)
        path.chmod(mount.mode if mount.mode is not None else 0o755)
    if mount.sharing in ("locked", "private"):
        fd = os.open(base / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        cleanup.callback(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return path


def _bind_source(
    rt: Runtime, options: RunOptions, mount: RunMount, cleanup: contextlib.ExitStack
) -> Path:
    from skiff.runtime.specgen import rootfs as rootfs_paths

    if not mount.from_:
        if options.context_dir is None:
            raise UsageError(
                f"--mount type=bind,target={mount.target}: no build context to bind from",
                "give from=STAGE or IMAGE",
            )
        root = options.context_dir.resolve()
        found = Path(os.path.realpath(root / mount.source.lstrip("/")))
        if found != root and root not in found.parents:
            raise BuildError(
                f"--mount source {mount.source!r} is outside the build context",
                "bind mounts may only use files of the build context",
            )
        if not found.exists():
            raise BuildError(f"--mount source {mount.source!r} not found in the build context")
        return found
    root = _named_root(rt, options, mount.from_, cleanup)
    try:
        inner = rootfs_paths.resolve(root, mount.source or "/")
    except OSError as exc:
        raise BuildError(
            f"--mount source {mount.source!r} in {mount.from_}: {exc.strerror or exc}"
        ) from exc
    if inner.missing:
        raise BuildError(f"--mount source {mount.source!r} not found in {mount.from_}")
    return root / inner.path.lstrip("/")


def _named_root(rt: Runtime, options: RunOptions, name: str, cleanup: contextlib.ExitStack) -> Path:
    """The root file system ``from=NAME`` means, mounted until the run ends."""
    if name in options.sources:
        return options.sources[name]
    store = rt.store
    other = find_builder(store, name)
    if other is not None:
        path = store.mount_container(other.container_id)
        cleanup.callback(store.unmount_container, other.container_id)
        return path
    from skiff.libimage.names import find_local_image

    image, _ = find_local_image(rt.ctx, store, name)
    path = store.mount_image(image.id)
    cleanup.callback(store.unmount_image, image.id)
    return path


def _scratch_copy(source: Path, target: Path) -> Path:
    """A throw-away copy for a writable bind (its writes are not kept)."""
    from skiff.storage.treecopy import copy_tree

    if source.is_dir():
        copy_tree(source, target)
    else:
        shutil.copy2(source, target)
    return target


# --- mount points ----------------------------------------------------------------------


def _missing_mount_points(rootfs: Path, spec: dict[str, Any]) -> list[str]:
    """In-root paths the runtime will create for its mounts (deepest last)."""
    from skiff.runtime.specgen import rootfs as rootfs_paths

    created: list[str] = []
    for mount in spec.get("mounts", []):
        try:
            resolved = rootfs_paths.resolve(rootfs, mount["destination"])
        except OSError:
            continue
        if not resolved.missing:
            continue
        parts = [p for p in resolved.path.split("/") if p]
        first = len(parts) - len(resolved.missing)
        for end in range(first + 1, len(parts) + 1):
            path = "/" + "/".join(parts[:end])
            if path not in created:
                created.append(path)
    return created


def _remove_mount_points(rootfs: Path, created: list[str]) -> None:
    """Remove what the runtime created for its mounts, if it is still empty."""
    import stat

    from skiff.runtime.copyfs import locate

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in sorted(created, key=lambda p: p.count("/"), reverse=True):
            try:
                with locate(root_fd, path, follow_final=False) as found:
                    if found.st is None or found.name is None:
                        continue
                    if stat.S_ISDIR(found.st.st_mode):
                        os.rmdir(found.name, dir_fd=found.parent_fd)  # only when empty
                    elif stat.S_ISREG(found.st.st_mode) and found.st.st_size == 0:
                        os.unlink(found.name, dir_fd=found.parent_fd)
            except OSError as exc:
                log.debug("keeping mount point %s: %s", path, exc)
    finally:
        os.close(root_fd)


# --- running ---------------------------------------------------------------------------------


def _execute(runtime: Any, run_id: str, bundle: Path, options: RunOptions) -> int:
    from skiff.runtime.oci import read_log_errors

    runtime.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, log_name = tempfile.mkstemp(dir=runtime.log_dir, prefix="build-run-", suffix=".json")
    os.close(fd)
    log_path = Path(log_name)
    try:
        argv = runtime.argv(*runtime.run_args(run_id, bundle), log_path=log_path)
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        try:
            result = subprocess.run(
                argv,
                stdin=options.stdin,
                stdout=options.stdout,
                stderr=options.stderr,
                env=env,
                close_fds=True,
                check=False,
            )
        except OSError as exc:
            raise ContainerError(f"cannot run {runtime.path}: {exc.strerror}") from exc
        errors = read_log_errors(log_path)
        if result.returncode != 0 and errors:
            raise _runtime_error(errors[-1], options.command)
        return result.returncode
    finally:
        with contextlib.suppress(OSError):
            log_path.unlink()


def _runtime_error(message: str, command: list[str]) -> ContainerError:
    """The runtime's own failure (it also printed it on the stderr it shares
    with the command), as one error naming the command."""
    shown = command[0]
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return CommandNotFound(
            f"{shown}: executable file not found in $PATH",
            "check the command, or give its full path",
        )
    if "permission denied" in lowered:
        return CommandNotInvokable(f"{shown}: permission denied", "check the command's mode bits")
    return ContainerError(f"running {shown}: {message}")


def _quietly(func: Any, *args: Any, **kwargs: Any) -> None:
    """Cleanup steps: one failing must not stop the others (logged)."""
    try:
        func(*args, **kwargs)
    except Exception as exc:
        log.warning("cleaning up after a build run: %s", exc)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
    tmp.replace(path)
