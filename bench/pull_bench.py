"""``skiff pull``/``skiff push`` beside ``podman pull``/``podman push`` (bench/pull).

    bench/pull [--runs N] [--warmup N] [--case NAME ...] [--no-rss] [--json DIR]

Cases (the /work/shared/bench fixture images on 127.0.0.1:5000):

  pull-IMG[-zstd]  IMG in small, medium, manyfiles, large; gzip (``:latest``)
                   and zstd (``:zstd``) layers. Each run starts without the
                   bench images: both tools remove them with ``rmi -f -i``
                   in ``--prepare`` (as the anchors do), keeping the store
                   itself. Both pull with ``-q --tls-verify=false``.
  push-IMG         the pulled ``:latest`` image to a private sink registry
                   on a free loopback port, emptied before every run: the
                   layers are compressed again (gzip) and uploaded.

Every case is one hyperfine call (all runs of podman, then all of skiff)
and the table shows median wall times, skiff/podman, the goal, CPU time
and the peak RSS of one extra run of each under ``/usr/bin/time -v``.
Goals (ratio of medians): pull ≤ 1.0 small, ≤ 0.5 medium, ≤ 0.7
manyfiles and large.

Both stores live on the benchfs mount (/var/lib/containers/skiff-bench,
a journaled ext4; ``/work/shared/bench/benchfs up``), in a directory of
this benchmark, so the anchors' store is never touched: podman runs with
the anchors' containers.conf and its own storage.conf (overlay). skiff's
modules are byte-compiled first, as a pip install does.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import benchcommon as bc

BENCH = "bench/pull"
REGISTRY = bc.REGISTRY
WORK = bc.BENCH_ROOT / "skiff-pull-bench"
RUN_ROOT = Path("/run/skiff-pull-bench")
IMAGES = ("small", "medium", "manyfiles", "large")
TAGS = {"gzip": "latest", "zstd": "zstd"}
GOALS = {"small": 1.0, "medium": 0.5, "manyfiles": 0.7, "large": 0.7}
RUNS = {"small": 10, "medium": 5, "manyfiles": 5, "large": 3}


@dataclass
class Case:
    name: str
    image: str
    podman: str
    skiff: str
    podman_prepare: str
    skiff_prepare: str
    goal: float | None


def check_environment() -> None:
    bc.require_tools(BENCH, ("hyperfine", "podman", "docker-registry"))
    bc.require_registry(BENCH)
    bc.warn_unless_benchfs(BENCH)
    WORK.mkdir(parents=True, exist_ok=True)


def cases(sink: str, sink_storage: Path) -> list[Case]:
    podman = "podman"
    skiff = bc.skiff_prefix(WORK, RUN_ROOT)
    all_refs = " ".join(f"{REGISTRY}/bench/{i}:{t}" for i in IMAGES for t in TAGS.values())
    reset_podman = f"sh -c '{podman} rmi -f -i {all_refs} >/dev/null'"
    reset_skiff = f"sh -c '{skiff} rmi -f -i {all_refs} >/dev/null'"
    out = []
    for image in IMAGES:
        for compression, tag in TAGS.items():
            ref = f"{REGISTRY}/bench/{image}:{tag}"
            suffix = "" if compression == "gzip" else "-zstd"
            out.append(
                Case(
                    f"pull-{image}{suffix}",
                    image,
                    f"{podman} pull -q --tls-verify=false {ref}",
                    f"{skiff} pull -q --tls-verify=false {ref}",
                    reset_podman,
                    reset_skiff,
                    GOALS[image],
                )
            )
    wipe = f"rm -rf {sink_storage}/docker"
    for image in IMAGES:
        ref = f"{REGISTRY}/bench/{image}:latest"
        dest = f"{sink}/bench/{image}:latest"
        out.append(
            Case(
                f"push-{image}",
                image,
                f"{podman} push -q --tls-verify=false {ref} {dest}",
                f"{skiff} push -q --tls-verify=false {ref} {dest}",
                wipe,
                wipe,
                None,
            )
        )
    return out


def pull_for_push(case: Case, env: dict[str, str]) -> None:
    """A push case needs the image in both stores."""
    ref = f"{REGISTRY}/bench/{case.image}:latest"
    bc.pull_both("podman", bc.skiff_prefix(WORK, RUN_ROOT), ref, env)


def run_case(
    case: Case, runs: int, warmup: int, json_dir: Path, env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    commands = ["--prepare", case.podman_prepare, "--command-name", "podman", case.podman]
    commands += ["--prepare", case.skiff_prepare, "--command-name", "skiff", case.skiff]
    export = json_dir / f"{case.name}.json"
    return bc.hyperfine(runs, warmup, export, commands, stdout=sys.stderr, env=env)


def peak_rss(prepare: str, command: str, env: dict[str, str]) -> int:
    """Maximum resident set size (KiB) of one run, children included."""
    subprocess.run(["sh", "-c", prepare], env=env, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command.split()],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return int(match.group(1)) if match else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per command (default: by image size)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--case", action="append", help="run only these cases")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS runs")
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    args = parser.parse_args()
    check_environment()
    bc.compile_skiff()
    env = bc.peer_env(WORK, RUN_ROOT)
    json_dir = args.json or Path(tempfile.mkdtemp(prefix="json.", dir=WORK))
    json_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with bc.sink_registry(BENCH, WORK, "sink.", "bench-pull-sink") as (sink, storage):
        for case in cases(sink, storage):
            if args.case and case.name not in args.case:
                continue
            print(f"== {case.name}", file=sys.stderr)
            if case.name.startswith("push-"):
                pull_for_push(case, env)
            runs = args.runs or RUNS[case.image]
            medians = run_case(case, runs, args.warmup, json_dir, env)
            rss = (-1, -1)
            if not args.no_rss:
                rss = (
                    peak_rss(case.podman_prepare, case.podman, env),
                    peak_rss(case.skiff_prepare, case.skiff, env),
                )
            rows.append((case, medians, rss))
    if args.json is None:
        shutil.rmtree(json_dir, ignore_errors=True)
    print(
        "| case | podman (s) | skiff (s) | skiff/podman | goal | podman CPU (s) | skiff CPU (s) "
        "| podman RSS (MiB) | skiff RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for case, medians, (podman_rss, skiff_rss) in rows:
        (podman, podman_cpu), (skiff, skiff_cpu) = medians["podman"], medians["skiff"]
        ratio = skiff / podman
        goal = "—" if case.goal is None else bc.goal_cell(ratio, case.goal)
        print(
            f"| {case.name} | {podman:.3f} | {skiff:.3f} | {ratio:.2f} | {goal} "
            f"| {podman_cpu:.3f} | {skiff_cpu:.3f} | {podman_rss / 1024:.0f} | {skiff_rss / 1024:.0f} |"
        )


if __name__ == "__main__":
    main()
