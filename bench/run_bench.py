"""``skiff run``/``skiff ps`` beside podman's, with bare runc as the floor (bench/run).

    bench/run [--runs N] [--warmup N] [--case NAME ...] [--containers N] [--json DIR]

Cases (the /work/shared/bench ``small`` image from 127.0.0.1:5000, pulled
into both stores first):

  run        ``skiff run --rm IMG true`` | ``podman run --rm IMG true`` |
             ``runc run -b BUNDLE`` (the anchors' busybox bundle running
             /bin/true): one hyperfine call, default (bridge) networks
  run-nonet  the same with ``--network=none``
  ps         ``skiff ps -a`` | ``podman ps -a`` with N (default 100)
             created containers in each store
  ps-running ``skiff ps`` | ``podman ps`` with N running containers (each
             ``sleep`` under its conmon: the cost of checking live ones)

The table shows median wall times, skiff/podman, skiff minus the floor
(skiff's own overhead above the bare runtime), CPU time and the goals:
skiff/podman ≤ 0.5 and skiff - runc < 100 ms for the run cases.

Both stores live on the benchfs mount (/var/lib/containers/skiff-bench,
a journaled ext4; ``/work/shared/bench/benchfs up``) in a directory of this
benchmark, so the anchors' store is never touched: podman runs with the
anchors' containers.conf (runc, cgroupfs, safe rlimits) and a storage.conf
of its own (overlay). skiff's modules are byte-compiled first, as a pip
install does. Containers the ps cases made are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIFF = Path(sys.executable).parent / "skiff"
SHARED = Path("/work/shared/bench")
REGISTRY = "localhost:5000"
IMAGE = f"{REGISTRY}/bench/small:latest"
BENCH_ROOT = Path(os.environ.get("BENCH_STORAGE_ROOT", "/var/lib/containers/skiff-bench"))
WORK = BENCH_ROOT / "skiff-run-bench"
RUN_ROOT = Path("/run/skiff-run-bench")
BUNDLE = WORK / "bundle"
FLOOR_ID = "skiff-run-bench-floor"
RUN_GOAL = 0.5
OVERHEAD_GOAL = 0.100


@dataclass
class Command:
    label: str
    command: str
    prepare: str = "true"


@dataclass
class Case:
    name: str
    commands: list[Command]
    runs: int
    goal: float | None = None
    setup: list[str] = field(default_factory=list)


def die(message: str) -> None:
    print(f"bench/run: {message}", file=sys.stderr)
    sys.exit(1)


def skiff_prefix() -> str:
    return f"{SKIFF} --root {WORK / 'skiff'} --runroot {RUN_ROOT / 'skiff'}"


def podman_env() -> dict[str, str]:
    """The anchors' containers.conf, and a storage.conf of this benchmark's own."""
    sys.path.insert(0, str(SHARED))
    import benchlib  # type: ignore[import-not-found]

    conf = WORK / "containers.conf"
    conf.write_text(benchlib.containers_conf_text())
    storage = WORK / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{WORK / "podman"}"\n'
        f'runroot = "{RUN_ROOT / "podman"}"\n'
    )
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage)
    env.setdefault("TMPDIR", "/var/tmp")
    return env


def check_environment() -> None:
    for tool in ("hyperfine", "podman", "runc"):
        if shutil.which(tool) is None:
            die(f"{tool} not found (see /work/shared/bench/README.md)")
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).close()
    except OSError as exc:
        die(f"no registry on {REGISTRY} ({exc}); start it: {SHARED}/registry start")
    if not os.path.ismount(BENCH_ROOT):
        print(
            f"bench/run: warning: {BENCH_ROOT} is not the benchfs mount "
            f"({SHARED}/benchfs up); disk timings will differ from the anchors'",
            file=sys.stderr,
        )
    WORK.mkdir(parents=True, exist_ok=True)


def compile_skiff() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "skiff")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ensure_bundle() -> None:
    """The anchors' floor: the small image's busybox tree, ``runc spec``, /bin/true."""
    config = BUNDLE / "config.json"
    if config.exists():
        return
    source = Path(os.environ.get("BENCH_STATE", "/var/tmp/skiff-bench")) / "gen/v1/small/layer0"
    if not source.is_dir():
        die(f"fixture content missing ({source}): run {SHARED}/fixtures")
    shutil.rmtree(BUNDLE, ignore_errors=True)
    BUNDLE.mkdir(parents=True)
    shutil.copytree(source, BUNDLE / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec", "-b", str(BUNDLE)], check=True)
    spec = json.loads(config.read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["hostname"] = "bench"
    config.write_text(json.dumps(spec, indent=1))


def pull_images(env: dict[str, str]) -> None:
    subprocess.run(
        ["podman", "pull", "-q", "--tls-verify=false", IMAGE],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [*skiff_prefix().split(), "pull", "-q", "--tls-verify=false", IMAGE],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def floor() -> Command:
    return Command(
        "runc",
        f"runc run -b {BUNDLE} {FLOOR_ID}",
        f"sh -c 'runc delete -f {FLOOR_ID} >/dev/null 2>&1; true'",
    )


def cases(containers: int, runs: int | None) -> list[Case]:
    skiff = skiff_prefix()
    label_filter = "--filter label=skiff-run-bench"
    make_created = [
        f"podman create -q --network=none --label skiff-run-bench {IMAGE} true",
        f"{skiff} create --network=none --label skiff-run-bench {IMAGE} true",
    ]
    make_running = [
        f"podman run -d --network=none --label skiff-run-bench {IMAGE} sleep 100000",
        f"{skiff} run -d --network=none --label skiff-run-bench {IMAGE} sleep 100000",
    ]
    return [
        Case(
            "run",
            [
                Command("skiff", f"{skiff} run --rm {IMAGE} true"),
                Command("podman", f"podman run --rm {IMAGE} true"),
                floor(),
            ],
            runs or 20,
            RUN_GOAL,
        ),
        Case(
            "run-nonet",
            [
                Command("skiff", f"{skiff} run --rm --network=none {IMAGE} true"),
                Command("podman", f"podman run --rm --network=none {IMAGE} true"),
                floor(),
            ],
            runs or 20,
            RUN_GOAL,
        ),
        Case(
            "ps",
            [
                Command("skiff", f"{skiff} ps -a {label_filter}"),
                Command("podman", f"podman ps -a {label_filter}"),
            ],
            runs or 20,
            None,
            [cmd for cmd in make_created for _ in range(containers)],
        ),
        Case(
            "ps-running",
            [
                Command("skiff", f"{skiff} ps {label_filter}"),
                Command("podman", f"podman ps {label_filter}"),
            ],
            runs or 20,
            None,
            [cmd for cmd in make_running for _ in range(containers)],
        ),
    ]


def remove_bench_containers(env: dict[str, str]) -> None:
    for prefix in ("podman", skiff_prefix()):
        ids = subprocess.run(
            [*prefix.split(), "ps", "-a", "-q", "--filter", "label=skiff-run-bench"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(
                [*prefix.split(), "rm", "-f", "-t", "0", *ids],
                env=env,
                check=False,
                stdout=subprocess.DEVNULL,
            )


def run_case(
    case: Case, warmup: int, json_dir: Path, env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    export = json_dir / f"{case.name}.json"
    argv = ["hyperfine", "-N", "--style", "basic", "--runs", str(case.runs)]
    argv += ["--warmup", str(warmup), "--export-json", str(export)]
    for command in case.commands:
        argv += ["--prepare", command.prepare]
    for command in case.commands:
        argv += ["--command-name", command.label, command.command]
    subprocess.run(argv, check=True, stdout=sys.stderr, env=env)
    results = json.loads(export.read_text())["results"]
    return {r["command"]: (r["median"], r["user"] + r["system"]) for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per command (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--case", action="append", help="run only these cases")
    parser.add_argument(
        "--containers", type=int, default=100, help="containers in each store for ps"
    )
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    args = parser.parse_args()
    check_environment()
    compile_skiff()
    ensure_bundle()
    env = podman_env()
    pull_images(env)
    json_dir = args.json or Path(tempfile.mkdtemp(prefix="json.", dir=WORK))
    json_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for case in cases(args.containers, args.runs):
            if args.case and case.name not in args.case:
                continue
            print(f"== {case.name}", file=sys.stderr)
            remove_bench_containers(env)
            for step in case.setup:
                subprocess.run(step.split(), env=env, check=True, stdout=subprocess.DEVNULL)
            rows.append((case, run_case(case, args.warmup, json_dir, env)))
    finally:
        remove_bench_containers(env)
        if args.json is None:
            shutil.rmtree(json_dir, ignore_errors=True)
    print(
        "| case | skiff (s) | podman (s) | runc (s) | skiff/podman | goal | skiff - runc (ms) "
        "| goal | skiff CPU (s) | podman CPU (s) |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|---:|---:|")
    for case, medians in rows:
        skiff, skiff_cpu = medians["skiff"]
        podman, podman_cpu = medians["podman"]
        ratio = skiff / podman
        goal = "—"
        if case.goal is not None:
            goal = f"≤ {case.goal} {'ok' if ratio <= case.goal else 'MISSED'}"
        runc = overhead = over_goal = "—"
        if "runc" in medians:
            floor_s = medians["runc"][0]
            runc = f"{floor_s:.3f}"
            extra = skiff - floor_s
            overhead = f"{extra * 1000:.0f}"
            over_goal = (
                f"< {OVERHEAD_GOAL * 1000:.0f} {'ok' if extra < OVERHEAD_GOAL else 'MISSED'}"
            )
        print(
            f"| {case.name} | {skiff:.3f} | {podman:.3f} | {runc} | {ratio:.2f} | {goal} "
            f"| {overhead} | {over_goal} | {skiff_cpu:.3f} | {podman_cpu:.3f} |"
        )


if __name__ == "__main__":
    main()
