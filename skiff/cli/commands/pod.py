"""``skiff pod create|start|stop|restart|kill|pause|unpause|rm|ps|inspect|top|stats|prune|exists``.

One module for the group (``register`` adds the flags of the subcommand
its parser is for); each subcommand parses, calls one function of
``skiff.runtime.pods`` and prints what podman 4.3 prints: ``create`` the
pod ID; the verbs the ID of each pod they acted on; ``ps`` the columns POD
ID, NAME, STATUS, CREATED, INFRA ID, # OF CONTAINERS (``--ctr-names``,
``--ctr-ids``, ``--ctr-status`` replace the count, ``--ns`` adds CGROUP and
NAMESPACES); ``inspect`` one JSON object for one pod, an array for more,
indented by five spaces; ``stats`` podman's pod stats table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiff.errors import SkiffError, UsageError

INSPECT_INDENT = " " * 5
PRUNE_WARNING = (
    "WARNING! This will remove all stopped/exited pods..\nAre you sure you want to continue? [y/N] "
)


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    REGISTER.get(command, _register_verb)(parser)


def _open(args: argparse.Namespace) -> Any:
    from skiff.cli.runtimecli import open_runtime

    return open_runtime(args)


def _records(rt: Any) -> Any:
    from skiff.runtime.pods.records import PodRecords

    return PodRecords(rt.store.db)


def _list(parser: argparse.ArgumentParser, *flags: str, help_text: str) -> None:
    parser.add_argument(*flags, action="append", default=[], help=help_text)


def _key_values(entries: list[str], what: str) -> dict[str, str]:
    out = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {entry!r}", "expected KEY=VALUE")
        out[key] = value
    return out


# --- create ----------------------------------------------------------------------------


def _register_create(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.imageopts import add_bool

    parser.add_argument("pod_name", nargs="?", metavar="NAME", help="name of the pod")
    parser.add_argument("-n", "--name", help="assign a name to the pod")
    _list(parser, "-p", "--publish", help_text="publish a port ([IP:][HOSTPORT:]PORT[/PROTO])")
    _list(parser, "--network", "--net", help_text="network mode or networks of the pod")
    _list(parser, "--network-alias", help_text="add a network-scoped alias")
    parser.add_argument("--share", help="namespaces to share (default ipc,net,uts; none)")
    add_bool(parser, "--infra", "create an infra container (default true)")
    parser.add_argument("--no-infra", action="store_true", help="do not create an infra container")
    parser.add_argument("--infra-image", help="image of the infra container")
    parser.add_argument("--infra-command", help="command of the infra container (JSON or string)")
    parser.add_argument("--infra-name", help="name of the infra container")
    _list(parser, "-l", "--label", help_text="set metadata on the pod (KEY=VALUE)")
    _list(parser, "--label-file", help_text="read labels from a file")
    parser.add_argument("-h", "--hostname", help="the pod's hostname")
    _list(parser, "--add-host", help_text="add a host-to-IP mapping (HOST:IP)")
    _list(parser, "--dns", help_text="set DNS servers")
    _list(parser, "--dns-option", help_text="set DNS options")
    _list(parser, "--dns-search", help_text="set DNS search domains")
    parser.add_argument("--cgroup-parent", help="parent cgroup of the pod's cgroup")
    parser.add_argument("--cpus", help="CPUs the whole pod may use")
    parser.add_argument("-c", "--cpu-shares", type=int, help="CPU shares of the pod")
    parser.add_argument("--cpuset-cpus", help="CPUs the pod may run on (0-3, 0,1)")
    parser.add_argument("--cpuset-mems", help="memory nodes the pod may use")
    parser.add_argument("-m", "--memory", help="memory limit of the whole pod")
    parser.add_argument("--memory-swap", help="memory plus swap limit of the pod (-1 unlimited)")
    parser.add_argument("--pid", help="pid namespace of the infra container (private, host)")
    parser.add_argument("--uts", help="UTS namespace of the infra container (private, host)")
    _list(parser, "--sysctl", help_text="sysctls of the pod (KEY=VALUE)")
    parser.add_argument("--shm-size", help="size of the pod's /dev/shm")
    parser.add_argument("--exit-policy", default="continue", help="continue or stop")
    parser.add_argument("--replace", action="store_true", help="replace a pod of the same name")
    parser.add_argument("--pod-id-file", type=Path, help="write the pod ID to this file")
    parser.add_argument("--userns", help="user namespace (only host)")
    parser.set_defaults(func=_create)


def _create_options(args: argparse.Namespace) -> Any:
    from skiff.cli.createopts import _label_files
    from skiff.runtime.network import ports
    from skiff.runtime.pods.model import PodCreateOptions, PodResources, parse_share
    from skiff.runtime.specgen import etcfiles, limits
    from skiff.runtime.specgen.generator import parse_entrypoint

    if args.pod_name and args.name and args.pod_name != args.name:
        raise UsageError("cannot give a pod name both as an argument and with --name")
    if args.userns and args.userns != "host":
        raise UsageError(f"--userns {args.userns!r} is not supported", "only --userns host")
    infra = not args.no_infra and args.infra is not False
    words = [n for item in args.network for n in item.split(",") if n]
    modes = [w for w in words if w in ("bridge", "none", "host") or w.startswith("ns:")]
    if modes and len(words) > 1:
        raise UsageError(f"--network {modes[0]} cannot be combined with other networks")
    network_mode = modes[0] if modes else "bridge"
    for host_entry in args.add_host:
        etcfiles.parse_add_host(host_entry)
    resources = PodResources(
        cpus=limits.parse_cpus(args.cpus) if args.cpus else None,
        cpu_shares=args.cpu_shares,
        cpuset_cpus=args.cpuset_cpus or "",
        cpuset_mems=args.cpuset_mems or "",
        memory=limits.parse_size(args.memory, "--memory") if args.memory else None,
    )
    if args.memory_swap:
        if resources.memory is None:
            raise UsageError("you must provide a memory limit when setting --memory-swap")
        resources.memory_swap = (
            -1 if args.memory_swap == "-1" else limits.parse_size(args.memory_swap, "--memory-swap")
        )
    return PodCreateOptions(
        name=args.name or args.pod_name or "",
        hostname=args.hostname or "",
        labels={**_label_files(args.label_file), **_key_values(args.label, "--label")},
        share=parse_share(args.share) if args.share is not None else None,
        infra=infra,
        infra_image=args.infra_image or "",
        infra_command=parse_entrypoint(args.infra_command) if args.infra_command else None,
        infra_name=args.infra_name or "",
        network_mode=network_mode,
        networks=[] if modes else words,
        network_aliases=list(args.network_alias),
        ports=[m.to_json() for m in ports.parse_publish_list(args.publish)],
        dns_servers=list(args.dns),
        dns_search=list(args.dns_search),
        dns_options=list(args.dns_option),
        add_hosts=list(args.add_host),
        pid_mode=args.pid or "private",
        uts_mode=args.uts or "private",
        sysctls=_key_values(args.sysctl, "--sysctl"),
        shm_size=limits.parse_size(args.shm_size, "--shm-size") if args.shm_size else None,
        resources=resources,
        exit_policy=args.exit_policy,
        create_command=["skiff", *sys.argv[1:]],
    )


def _create(args: argparse.Namespace) -> int:
    from skiff.runtime.pods.create import create_pod

    options = _create_options(args)
    rt = _open(args)
    try:
        if args.infra_image and rt.store.images.find(args.infra_image) is None:
            from skiff.cli.runtimecli import image_for_run

            image_for_run(rt, args, args.infra_image, "missing", True)
        if args.replace and options.name:
            existing = _records(rt).find(options.name)
            if existing is not None:
                from skiff.runtime.pods.lifecycle import remove_pod

                remove_pod(rt, existing, force=True)
        pod = create_pod(rt, options)
        if args.pod_id_file:
            args.pod_id_file.write_text(pod.id)
        print(pod.id)
        return 0
    finally:
        rt.close()


# --- start, stop, restart, kill, pause, unpause, rm -------------------------------------------


def _register_verb(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    parser.add_argument("-a", "--all", action="store_true", help="act on all pods")
    parser.add_argument("-l", "--latest", action="store_true", help="act on the latest pod")
    if command in ("stop", "restart", "rm"):
        parser.add_argument("-t", "--time", type=int, help="seconds to wait for containers to stop")
    if command in ("stop", "rm"):
        parser.add_argument("-i", "--ignore", action="store_true", help="ignore unknown pods")
    if command == "rm":
        parser.add_argument(
            "-f", "--force", action="store_true", help="stop and remove running pods"
        )
        parser.add_argument("--pod-id-file", type=Path, help="read the pod ID from this file")
    if command == "kill":
        parser.add_argument("-s", "--signal", default="KILL", help="signal to send (default KILL)")
    parser.add_argument("pods", nargs="*", metavar="POD")
    parser.set_defaults(func=_verb, pod_command=command)


def _targets(rt: Any, args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(reference, pod or None when unknown) for the command's arguments."""
    records = _records(rt)
    refs = list(args.pods)
    if getattr(args, "pod_id_file", None):
        refs.append(args.pod_id_file.read_text().strip())
    if args.all or args.latest:
        if refs:
            raise UsageError("--all and --latest cannot be used with pod names")
        every = records.all()
        chosen = every[-1:] if args.latest else every
        return [(p.id, p) for p in chosen]
    if not refs:
        raise UsageError("you must provide at least one pod name or ID", "or use --all or --latest")
    return [(ref, records.find(ref)) for ref in refs]


def _verb(args: argparse.Namespace) -> int:
    from skiff.runtime.pods import lifecycle as pods
    from skiff.runtime.pods.model import unknown_pod
    from skiff.runtime.specgen.generator import parse_signal

    command = args.pod_command
    sig = parse_signal(args.signal) if command == "kill" else 0
    timeout = getattr(args, "time", None)
    steps: dict[str, Callable[[Any, Any], Any]] = {
        "start": pods.start_pod,
        "stop": lambda rt, pod: pods.stop_pod(rt, pod, timeout),
        "restart": lambda rt, pod: pods.restart_pod(rt, pod, timeout),
        "kill": lambda rt, pod: pods.kill_pod(rt, pod, sig),
        "pause": pods.pause_pod,
        "unpause": pods.unpause_pod,
        "rm": lambda rt, pod: pods.remove_pod(rt, pod, force=args.force, timeout=timeout),
    }
    verbs = {"start": "starting", "stop": "stopping", "restart": "restarting", "kill": "killing"}
    step = steps[command]
    rt = _open(args)
    errors: list[str] = []
    try:
        for ref, pod in _targets(rt, args):
            if pod is None:
                if not getattr(args, "ignore", False):
                    errors.append(str(unknown_pod(ref)))
                continue
            try:
                report = step(rt, pod)
                if report is not None:
                    report.raise_errors(verbs.get(command, command))
            except SkiffError as exc:
                errors.append(str(exc))
                continue
            print(pod.id)
        sys.stdout.flush()
    finally:
        rt.close()
    if errors:
        raise SkiffError("\n".join(errors) if len(errors) > 1 else errors[0])
    return 0


# --- ps --------------------------------------------------------------------------------------


def _register_ps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ctr-names", action="store_true", help="show the containers' names")
    parser.add_argument("--ctr-ids", action="store_true", help="show the containers' IDs")
    parser.add_argument("--ctr-status", action="store_true", help="show the containers' states")
    parser.add_argument("--ns", action="store_true", help="show the cgroup and namespaces")
    parser.add_argument("-f", "--filter", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--format", help="'json' or a Go template")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest pod")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")
    parser.add_argument("--noheading", action="store_true", help="do not print headers")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the pod IDs only")
    parser.add_argument(
        "--sort", default="created", help="sort by created, id, name, number or status"
    )
    parser.set_defaults(func=_ps)


PS_HEADERS = {
    "ID": "POD ID",
    "InfraID": "INFRA ID",
    "NumberOfContainers": "# OF CONTAINERS",
    "ContainerNames": "NAMES",
    "ContainerIds": "IDS",
    "ContainerStatuses": "STATUS",
    "Cgroup": "CGROUP",
    "Namespace": "NAMESPACES",
}
SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "created": lambda r: -r.CreatedAt,
    "id": lambda r: r.Id,
    "name": lambda r: r.Name,
    "number": lambda r: len(r.Containers),
    "status": lambda r: r.Status,
}


def _matches(report: Any, key: str, values: list[str]) -> bool:
    import re
    import time

    if key == "id":
        return any(report.Id.startswith(v) for v in values)
    if key == "name":
        return any(re.search(v, report.Name) for v in values)
    if key == "status":
        return any(report.Status.lower() == v.lower() for v in values)
    if key == "label":
        for v in values:
            k, sep, val = v.partition("=")
            if k not in report.Labels or (sep and report.Labels[k] != val):
                return False
        return True
    if key == "ctr-names":
        return any(c.Names == v for c in report.Containers for v in values)
    if key == "ctr-ids":
        return any(c.Id.startswith(v) for c in report.Containers for v in values)
    if key == "ctr-status":
        return any(c.Status == v for c in report.Containers for v in values)
    if key == "ctr-number":
        return any(str(len(report.Containers)) == v for v in values)
    if key == "network":
        return any(v in report.Networks for v in values)
    if key == "until":
        from skiff.runtime.network.filters import parse_until

        return all(report.CreatedAt < parse_until(v, time.time()) for v in values)
    raise UsageError(
        f"{key} is an invalid filter",
        "valid: ctr-ids, ctr-names, ctr-number, ctr-status, id, label, name, network, status, until",
    )


def _ps(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items
    from skiff.runtime.pods.report import pod_report

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid filter {item!r}", "expected KEY=VALUE")
        filters.setdefault(key, []).append(value)
    if args.sort not in SORT_KEYS:
        raise UsageError(f"invalid --sort {args.sort!r}", "use " + ", ".join(SORT_KEYS))
    rt = _open(args)
    try:
        reports = [pod_report(rt, pod) for pod in _records(rt).all()]
    finally:
        rt.close()
    reports = [r for r in reports if all(_matches(r, k, v) for k, v in filters.items())]
    reports.sort(key=SORT_KEYS[args.sort])
    if args.latest:
        reports = sorted(reports, key=lambda r: -r.CreatedAt)[:1]
    for r in reports:
        r.no_trunc = args.no_trunc
    if args.quiet:
        for r in reports:
            print(r.Id)
        return 0
    columns = [
        ("ID", "POD ID"),
        ("Name", "NAME"),
        ("Status", "STATUS"),
        ("Created", "CREATED"),
        ("InfraID", "INFRA ID"),
    ]
    if args.ctr_names:
        columns.append(("ContainerNames", "NAMES"))
    if args.ctr_ids:
        columns.append(("ContainerIds", "IDS"))
    if args.ctr_status:
        columns.append(("ContainerStatuses", "STATUS"))
    if args.ns:
        columns += [("Cgroup", "CGROUP"), ("Namespace", "NAMESPACES")]
    if not (args.ctr_names or args.ctr_ids or args.ctr_status):
        columns.append(("NumberOfContainers", "# OF CONTAINERS"))
    sys.stdout.write(
        format_items(
            args.format,
            reports,
            columns,
            headers=PS_HEADERS,
            json_items=[r.json() for r in reports],
            noheading=args.noheading,
        )
    )
    return 0


# --- inspect, exists ------------------------------------------------------------------------------


def _register_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", help="'json' or a Go template")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest pod")
    parser.add_argument("pods", nargs="*", metavar="POD")
    parser.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.gotemplate.gojson import encode
    from skiff.runtime.pods.report import inspect_pod

    if args.latest == bool(args.pods):
        raise UsageError("pod inspect: give one or more pod names or IDs, or --latest", "not both")
    rt = _open(args)
    try:
        records = _records(rt)
        pods = records.all()[-1:] if args.latest else []
        if args.latest and not pods:
            raise UsageError("no pods to inspect with --latest")
        for ref in args.pods:
            pod = records.find(ref)
            if pod is None:
                raise SkiffError(
                    f"inspecting object: no such pod {ref}", "list pods with 'skiff pod ps'"
                )
            pods.append(pod)
        data = [inspect_pod(rt, pod) for pod in pods]
    finally:
        rt.close()
    if args.format is None or is_json(args.format):
        value: Any = data[0] if len(data) == 1 else data
        sys.stdout.write(encode(value, escape_html=True, indent=INSPECT_INDENT) + "\n")
    else:
        sys.stdout.write(format_items(args.format, data))
    return 0


def _register_exists(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pod", metavar="POD")
    parser.set_defaults(func=_exists)


def _exists(args: argparse.Namespace) -> int:
    rt = _open(args)
    try:
        return 0 if _records(rt).find(args.pod) is not None else 1
    finally:
        rt.close()


# --- top, stats ---------------------------------------------------------------------------------------


def _register_top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--latest", action="store_true", help="the latest pod")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="POD [DESCRIPTOR...]")
    parser.set_defaults(func=_top)


def _top(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_table
    from skiff.runtime.pods.usage import pod_processes

    words = list(args.args)
    if not args.latest and not words:
        raise UsageError("you must provide the name or ID of a running pod", "or --latest")
    rt = _open(args)
    try:
        records = _records(rt)
        if args.latest:
            every = records.all()
            if not every:
                raise UsageError("pod top --latest: there are no pods")
            pod = every[-1]
        else:
            pod = records.get(words.pop(0))
        headers, rows = pod_processes(rt, pod, words)
        sys.stdout.write(format_table(headers, rows))
        return 0
    finally:
        rt.close()


def _register_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all pods (the default)")
    parser.add_argument("--format", help="'json' or a Go template")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest pod")
    parser.add_argument("--no-reset", action="store_true", help="do not clear the screen")
    parser.add_argument("--no-stream", action="store_true", help="print one report and exit")
    parser.add_argument("-i", "--interval", type=int, default=5, help="seconds between reports")
    parser.add_argument("pods", nargs="*", metavar="POD")
    parser.set_defaults(func=_stats)


def _stats_text(rows: list[Any], fmt: str | None) -> str:
    from skiff.cli.output import format_items, is_json
    from skiff.gotemplate.gojson import encode
    from skiff.runtime.pods.usage import POD_STATS_COLUMNS, POD_STATS_HEADERS

    if is_json(fmt):
        return encode([r.json() for r in rows], escape_html=True, indent=INSPECT_INDENT) + "\n"
    if fmt is None:  # the default table says MEM %, a template's column MEM
        headers = {k: v for k, v in POD_STATS_HEADERS.items() if k != "Mem"}
        return format_items(None, rows, POD_STATS_COLUMNS, headers=headers)
    if not fmt.startswith("table"):
        fmt = "table " + fmt  # podman 4.3 prints the header above a plain template too
    return format_items(fmt, rows, POD_STATS_COLUMNS, headers=POD_STATS_HEADERS)


def _stats(args: argparse.Namespace) -> int:
    from skiff.cli.live import check_interval, print_reports
    from skiff.runtime.pods.usage import pod_stats

    check_interval(args)
    if args.latest and args.pods:
        raise UsageError("--latest cannot be combined with pod names")
    rt = _open(args)
    try:
        records = _records(rt)
        previous = None

        def report() -> str:
            nonlocal previous
            if args.pods:
                pods = [records.get(ref) for ref in args.pods]
            else:
                pods = records.all()[-1:] if args.latest else records.all()
            rows, previous = pod_stats(rt, pods, previous)
            return _stats_text(rows, args.format)

        return print_reports(args, report)
    finally:
        rt.close()


# --- prune -----------------------------------------------------------------------------------------


def _register_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    from skiff.runtime.pods.lifecycle import prune_pods

    if not args.force:
        sys.stdout.write(PRUNE_WARNING)
        sys.stdout.flush()
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    rt = _open(args)
    try:
        for pod_id in prune_pods(rt):
            print(pod_id)
        return 0
    finally:
        rt.close()


REGISTER: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "create": _register_create,
    "ps": _register_ps,
    "ls": _register_ps,
    "list": _register_ps,
    "inspect": _register_inspect,
    "exists": _register_exists,
    "top": _register_top,
    "stats": _register_stats,
    "prune": _register_prune,
}
