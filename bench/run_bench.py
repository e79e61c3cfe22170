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
from dataclasses import dataclass, field
from pathlib import Path

import benchcommon as bc

BENCH = "bench/run"
REGISTRY = bc.REGISTRY
IMAGE = f"{REGISTRY}/bench/small:latest"
WORK = bc.BENCH_ROOT / "skiff-run-bench"
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


def skiff_prefix() -> str:
    return bc.skiff_prefix(WORK, RUN_ROOT)


def check_environment() -> None:
    bc.require_tools(BENCH, ("hyperfine", "podman", "runc"))
    bc.require_registry(BENCH)
    bc.warn_unless_benchfs(BENCH)
    WORK.mkdir(parents=True, exist_ok=True)


def ensure_bundle() -> None:
    """The anchors' floor: the small image's busybox tree, ``runc spec``, /bin/true."""
    config = BUNDLE / "config.json"
    if config.exists():
        return
    source = Path(os.environ.get("BENCH_STATE", "/var/tmp/skiff-bench")) / "gen/v1/small/layer0"
    if not source.is_dir():
        bc.die(BENCH, f"fixture content missing ({source}): run {bc.SHARED}/fixtures")
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
    bc.pull_both("podman", skiff_prefix(), IMAGE, env)


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
    commands: list[str] = []
    for command in case.commands:
        commands += ["--prepare", command.prepare]
    for command in case.commands:
        commands += ["--command-name", command.label, command.command]
    export = json_dir / f"{case.name}.json"
    return bc.hyperfine(case.runs, warmup, export, commands, stdout=sys.stderr, env=env)


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
    bc.compile_skiff()
    ensure_bundle()
    env = bc.peer_env(WORK, RUN_ROOT)
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
        goal = "—" if case.goal is None else bc.goal_cell(ratio, case.goal)
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
