"""The flags of ``skiff run`` and ``skiff create`` (podman's), turned into a
SpecGenerator and CreateOptions. Parsing only: every value is validated by
the specgen parse helpers, and meaning lives in skiff/runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from skiff.errors import UsageError
from skiff.runtime.records import RestartPolicy


def _list(
    parser: argparse.ArgumentParser,
    *flags: str,
    help_text: str,
    dest: str | None = None,
    metavar: str | None = None,
) -> None:
    kwargs: dict[str, Any] = {"action": "append", "default": [], "help": help_text}
    if dest:
        kwargs["dest"] = dest
    if metavar:
        kwargs["metavar"] = metavar
    parser.add_argument(*flags, **kwargs)


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    """Everything ``create`` and ``run`` share."""
    from skiff.cli.imageopts import add_bool

    parser.add_argument("--name", help="assign a name to the container")
    _list(
        parser,
        "--add-host",
        help_text="add a custom host-to-IP mapping (host:ip)",
        metavar="HOST:IP",
    )
    _list(parser, "--annotation", help_text="add an annotation (key=value)", metavar="KEY=VALUE")
    _list(parser, "--cap-add", help_text="add capabilities", metavar="CAP")
    _list(parser, "--cap-drop", help_text="drop capabilities", metavar="CAP")
    parser.add_argument("--cgroup-parent", help="cgroup parent of the container")
    parser.add_argument("--cgroupns", help="cgroup namespace (host, private)")
    parser.add_argument("--cpu-period", type=int, help="CFS period (µs)")
    parser.add_argument("--cpu-quota", type=int, help="CFS quota (µs)")
    parser.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    parser.add_argument("--cpus", help="number of CPUs")
    parser.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    parser.add_argument("--cpuset-mems", help="memory nodes in which to allow execution")
    _list(parser, "--device", help_text="add a host device", metavar="DEV[:CTR[:PERM]]")
    _list(parser, "--dns", help_text="set custom DNS servers", metavar="IP")
    _list(parser, "--dns-option", help_text="set custom DNS options", metavar="OPT")
    _list(parser, "--dns-search", help_text="set custom DNS search domains", metavar="DOMAIN")
    parser.add_argument("--entrypoint", help="overwrite the default ENTRYPOINT of the image")
    _list(parser, "-e", "--env", help_text="set environment variables", metavar="KEY[=VALUE]")
    _list(parser, "--env-file", help_text="read in a file of environment variables", metavar="FILE")
    _list(parser, "--expose", help_text="expose a port or a range of ports", metavar="PORT")
    _list(parser, "--group-add", help_text="add additional groups to join", metavar="GROUP")
    parser.add_argument("-h", "--hostname", help="set container hostname")
    parser.add_argument("--init", action="store_true", help="run an init inside the container")
    parser.add_argument("--init-path", help="path to the container-init binary")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    parser.add_argument("--ipc", help="IPC namespace to use")
    _list(parser, "-l", "--label", help_text="set metadata on a container", metavar="KEY=VALUE")
    _list(
        parser, "--label-file", help_text="read in a line-delimited file of labels", metavar="FILE"
    )
    parser.add_argument("--log-driver", default="k8s-file", help="logging driver (k8s-file, none)")
    _list(parser, "--log-opt", help_text="logging driver options", metavar="OPT")
    parser.add_argument("-m", "--memory", help="memory limit (format: <number>[<unit>])")
    parser.add_argument("--memory-reservation", help="memory soft limit")
    parser.add_argument(
        "--memory-swap", help="swap limit equal to memory plus swap: '-1' unlimited"
    )
    parser.add_argument("--memory-swappiness", type=int, help="tune memory swappiness (0-100)")
    _list(parser, "--mount", help_text="attach a filesystem mount", metavar="type=TYPE,...")
    parser.add_argument(
        "--network",
        "--net",
        action="append",
        default=[],
        help="connect to a network (bridge, none, host, container:ID, NAME)",
    )
    _list(parser, "--network-alias", help_text="add a network-scoped alias", metavar="ALIAS")
    parser.add_argument("--no-hosts", action="store_true", help="do not create /etc/hosts")
    parser.add_argument("--oom-score-adj", type=int, help="tune the container's OOM preferences")
    parser.add_argument("--pid", help="PID namespace to use")
    parser.add_argument("--pids-limit", type=int, help="tune container pids limit (-1 unlimited)")
    parser.add_argument("--pod", help="run the container in a pod (NAME or new:NAME)")
    parser.add_argument("--privileged", action="store_true", help="give extended privileges")
    _list(
        parser,
        "-p",
        "--publish",
        help_text="publish a container's port to the host",
        metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
    )
    parser.add_argument(
        "-P",
        "--publish-all",
        action="store_true",
        help="publish all exposed ports to random host ports",
    )
    parser.add_argument(
        "--pull",
        default="missing",
        choices=("always", "missing", "never", "newer"),
        help="pull the image before running",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress output while pulling")
    parser.add_argument(
        "--read-only", action="store_true", help="make the root filesystem read-only"
    )
    add_bool(
        parser, "--read-only-tmpfs", "with --read-only, mount tmpfs on /run, /tmp and /var/tmp"
    )
    parser.add_argument(
        "--replace", action="store_true", help="replace a container of the same name"
    )
    parser.add_argument(
        "--restart",
        default="no",
        help="restart policy (no, on-failure[:N], always, unless-stopped)",
    )
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("--runtime", help="OCI runtime to use (crun, runc or a path)")
    _list(parser, "--security-opt", help_text="security options", metavar="OPT")
    parser.add_argument("--shm-size", help="size of /dev/shm")
    parser.add_argument("--stop-signal", help="signal to stop a container")
    parser.add_argument("--stop-timeout", type=int, help="timeout (seconds) to stop a container")
    _list(parser, "--sysctl", help_text="sysctl options", metavar="KEY=VALUE")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    _list(parser, "--tmpfs", help_text="mount a temporary filesystem", metavar="PATH[:OPTS]")
    parser.add_argument("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    _list(parser, "--ulimit", help_text="ulimit options", metavar="NAME=SOFT[:HARD]")
    parser.add_argument("--umask", help="set umask in the container")
    parser.add_argument("--userns", help="user namespace (only 'host' is supported)")
    parser.add_argument("--uts", help="UTS namespace to use")
    _list(parser, "-v", "--volume", help_text="bind mount a volume", metavar="SRC:DST[:OPTS]")
    _list(
        parser, "--volumes-from", help_text="mount volumes from a container", metavar="CTR[:ro|rw]"
    )
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("image", metavar="IMAGE", help="image to run")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and args"
    )


def parse_restart(text: str) -> RestartPolicy:
    name, _, count = text.partition(":")
    if name not in ("no", "on-failure", "always", "unless-stopped"):
        raise UsageError(
            f"invalid restart policy {text!r}", "use no, on-failure[:N], always or unless-stopped"
        )
    retries = 0
    if count:
        if name != "on-failure" or not count.isdigit():
            raise UsageError(
                f"invalid restart policy {text!r}: only on-failure takes a retry count"
            )
        retries = int(count)
    return RestartPolicy(name, retries)


def _key_values(entries: list[str], what: str) -> dict[str, str]:
    out = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {entry!r}", "expected KEY=VALUE")
        out[key] = value
    return out


def _label_files(paths: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read label file {path}: {exc.strerror}") from exc
        for raw in lines:
            line = raw.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                out[key] = value
    return out


def build_spec(args: argparse.Namespace) -> Any:
    """The SpecGenerator for the flags (the image and command included)."""
    from skiff.runtime.specgen import devices, env, etcfiles, limits, mounts
    from skiff.runtime.specgen.generator import (
        Namespace,
        NamespaceMode,
        SpecGenerator,
        parse_entrypoint,
        parse_namespace,
        parse_signal,
    )

    sg = SpecGenerator()
    b, st, sec, net, res = sg.basic, sg.storage, sg.security, sg.network, sg.resources
    b.name = args.name or ""
    b.command = list(args.command) if args.command else None
    if b.command and b.command[0] == "--":
        b.command = b.command[1:] or None
    b.entrypoint = parse_entrypoint(args.entrypoint) if args.entrypoint is not None else None
    caller_env = dict(os.environ)
    env_values: dict[str, str] = {}
    for path in args.env_file:
        env_values.update(env.read_env_file(Path(path), caller_env))
    env_values.update(env.parse_env(args.env, caller_env))
    b.env = env_values
    b.workdir = args.workdir or ""
    b.terminal = args.tty
    b.stdin = args.interactive
    b.hostname = args.hostname or ""
    b.labels = {**_label_files(args.label_file), **_key_values(args.label, "--label")}
    b.annotations = _key_values(args.annotation, "--annotation")
    b.stop_signal = parse_signal(args.stop_signal) if args.stop_signal else None
    b.stop_timeout = args.stop_timeout
    b.init = args.init or bool(args.init_path)
    b.init_path = args.init_path or ""
    if args.umask:
        try:
            b.umask = int(args.umask, 8)
        except ValueError:
            raise UsageError(
                f"invalid --umask {args.umask!r}", "an octal number, e.g. 0022"
            ) from None
    b.sysctls = _key_values(args.sysctl, "--sysctl")

    parsed_mounts: list[Any] = []
    parsed_mounts += [mounts.parse_volume(v) for v in args.volume]
    parsed_mounts += [mounts.parse_mount(m) for m in args.mount]
    parsed_mounts += [mounts.parse_tmpfs(t) for t in args.tmpfs]
    st.mounts = mounts.resolve_host_sources(parsed_mounts)
    st.read_only = args.read_only
    if args.read_only_tmpfs is not None:
        st.read_only_tmpfs = args.read_only_tmpfs
    if args.shm_size:
        st.shm_size = limits.parse_size(args.shm_size, "--shm-size")
    st.devices = [devices.parse_device(d) for d in args.device]

    sec.user = args.user
    sec.group_add = list(args.group_add)
    sec.privileged = args.privileged
    sec.cap_add = list(args.cap_add)
    sec.cap_drop = list(args.cap_drop)
    for opt in args.security_opt:
        sec.add_security_opt(opt)

    for kind, value in (("pid", args.pid), ("ipc", args.ipc), ("uts", args.uts)):
        if value:
            setattr(net, kind, parse_namespace(value, kind))
    if args.cgroupns:
        net.cgroup = parse_namespace(args.cgroupns, "cgroup")
    if args.userns and args.userns != "host":
        raise UsageError(f"--userns {args.userns!r} is not supported", "only --userns host")
    networks = [n for item in args.network for n in item.split(",") if n]
    mode_values = [
        n
        for n in networks
        if n in ("none", "host", "bridge", "private") or n.startswith(("container:", "ns:"))
    ]
    if mode_values:
        if len(networks) > 1:
            raise UsageError(f"--network {mode_values[0]} cannot be combined with other networks")
        net.network = parse_namespace(mode_values[0], "network")
    else:
        net.network = Namespace(NamespaceMode.PRIVATE)
    net.dns_servers = list(args.dns)
    net.dns_search = list(args.dns_search)
    net.dns_options = list(args.dns_option)
    net.add_hosts = [etcfiles.parse_add_host(h) for h in args.add_host]

    if args.memory:
        res.memory = limits.parse_size(args.memory, "--memory")
    if args.memory_swap:
        res.memory_swap = (
            -1 if args.memory_swap == "-1" else limits.parse_size(args.memory_swap, "--memory-swap")
        )
    if args.memory_reservation:
        res.memory_reservation = limits.parse_size(args.memory_reservation, "--memory-reservation")
    res.memory_swappiness = args.memory_swappiness
    if args.cpus:
        res.cpus = limits.parse_cpus(args.cpus)
    res.cpu_period = args.cpu_period
    res.cpu_quota = args.cpu_quota
    res.cpu_shares = args.cpu_shares
    res.cpuset_cpus = args.cpuset_cpus or ""
    res.cpuset_mems = args.cpuset_mems or ""
    if args.pids_limit is not None:
        res.pids_limit = None if args.pids_limit <= 0 else args.pids_limit
    res.cgroup_parent = args.cgroup_parent or ""
    res.oom_score_adj = args.oom_score_adj
    res.ulimits = [limits.parse_ulimit(u) for u in args.ulimit]
    return sg


def user_networks(args: argparse.Namespace) -> list[str]:
    names = [n for item in args.network for n in item.split(",") if n]
    return [
        n
        for n in names
        if n not in ("bridge", "private") and ":" not in n and n not in ("none", "host")
    ]


def port_records(args: argparse.Namespace, exposed: list[str]) -> list[dict[str, Any]]:
    from skiff.runtime.network import ports

    extra_exposed = list(exposed) + [p if "/" in p else f"{p}/tcp" for p in args.expose]
    mappings = ports.parse_publish_list(
        args.publish, publish_all=args.publish_all, exposed=extra_exposed
    )
    return [m.to_json() for m in mappings]


def _resolve_container_refs(rt: Any, sg: Any) -> None:
    """``container:NAME`` namespace modes are recorded by container ID."""
    from dataclasses import replace

    from skiff.runtime.specgen.generator import NamespaceMode

    net = sg.network
    for kind in ("pid", "ipc", "uts", "network"):
        ns = getattr(net, kind)
        if ns.mode == NamespaceMode.CONTAINER:
            setattr(net, kind, replace(ns, value=rt.records.get(ns.value).id))


def create_options(rt: Any, args: argparse.Namespace, image_for_run: Any) -> Any:
    """CreateOptions for ``run``/``create`` from the parsed flags."""
    from skiff.oci.config import ImageConfig
    from skiff.runtime import lifecycle
    from skiff.runtime.create import CreateOptions

    sg = build_spec(args)
    _resolve_container_refs(rt, sg)
    if args.replace and args.name:
        existing = rt.records.find(args.name)
        if existing is not None:
            lifecycle.remove(rt, existing, force=True)
    if args.log_driver not in ("k8s-file", "none"):
        raise UsageError(f"unsupported log driver {args.log_driver!r}", "use k8s-file or none")
    image = image_for_run(rt, args, args.image, args.pull, args.quiet)
    image_config = ImageConfig.from_bytes(image.config)
    if args.rm and args.restart not in ("no", ""):
        raise UsageError("the --rm option conflicts with --restart")
    opts = CreateOptions(
        image=image,
        spec=sg,
        image_name=resolved_image_name(image, args.image),
        name=args.name or "",
        networks=user_networks(args),
        network_aliases={"*": list(args.network_alias)} if args.network_alias else {},
        ports=port_records(args, image_config.exposed_ports)
        if args.publish or args.publish_all or args.expose
        else [],
        publish_all=args.publish_all,
        restart=parse_restart(args.restart),
        auto_remove=args.rm,
        runtime=args.runtime or "",
        log_driver=args.log_driver,
        volumes_from=list(args.volumes_from),
        create_command=["skiff", *sys.argv[1:]],
    )
    if args.pod:
        _into_pod(rt, args.pod, opts)
    return opts


def _into_pod(rt: Any, ref: str, opts: Any) -> None:
    """``--pod NAME`` joins a pod; ``--pod new:NAME`` makes one with the
    container's ports, networks and DNS settings first (podman's)."""
    from skiff.runtime.pods.create import create_pod, join_pod, pods_of
    from skiff.runtime.pods.model import PodCreateOptions
    from skiff.runtime.specgen.generator import Namespace, NamespaceMode

    if not ref.startswith("new:"):
        join_pod(rt, pods_of(rt).get(ref), opts)
        return
    net = opts.spec.network
    mode = {
        NamespaceMode.HOST: "host",
        NamespaceMode.NONE: "none",
        NamespaceMode.PATH: f"ns:{net.network.value}",
    }.get(net.network.mode, "bridge")
    if net.network.mode == NamespaceMode.CONTAINER:
        raise UsageError("--pod new: cannot be combined with --network container:")
    pod = create_pod(
        rt,
        PodCreateOptions(
            name=ref[len("new:") :],
            network_mode=mode,
            networks=list(opts.networks),
            network_aliases=list(opts.network_aliases.get("*", [])),
            ports=list(opts.ports),
            dns_servers=list(net.dns_servers),
            dns_search=list(net.dns_search),
            dns_options=list(net.dns_options),
            add_hosts=[f"{';'.join(h.names)}:{h.address}" for h in net.add_hosts],
            create_command=list(opts.create_command),
        ),
    )
    opts.ports, opts.networks, opts.network_aliases = [], [], {}
    net.network = Namespace(NamespaceMode.PRIVATE)
    net.dns_servers, net.dns_search, net.dns_options, net.add_hosts = [], [], [], []
    join_pod(rt, pod, opts)


def resolved_image_name(image: Any, typed: str) -> str:
    """The image's stored name the user meant (``busybox`` → ``docker.io/library/busybox:latest``)."""
    from skiff.storage.images import repository_of

    names: list[str] = list(image.names)
    if typed.removeprefix("sha256:") == image.id or image.id.startswith(typed):
        return names[0] if names else str(image.id)
    wanted = typed if ":" in typed.rsplit("/", 1)[-1] or "@" in typed else f"{typed}:latest"
    for name in names:
        if name == wanted or name.endswith("/" + wanted):
            return name
    for name in names:
        if repository_of(name).endswith(repository_of(wanted)):
            return name
    return names[0] if names else typed
