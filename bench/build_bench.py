"""``skiff build`` beside ``buildah build`` on the shared build benchmark (bench/build).

    bench/build [--runs N] [--warmup N] [--case build-cold|build-cached ...] [--json DIR]

The build is /work/shared/bench/build-ctx (two stages: 5 RUNs, 2 COPYs, a
COPY --from, ENV/LABEL/WORKDIR/CMD; ~4 MB of context) on the fixture image
``localhost:5000/bench/small:latest``, with the anchors' flags:

  build-cold    ``build -q --layers --no-cache --pull=false --tls-verify=false
                -t localhost/skiff-bench/build:cold CTX``; every run starts
                without the image and without dangling (intermediate) images:
                ``rmi -f`` of the tag and ``image prune -f`` in --prepare,
                as the anchors do for buildah.
  build-cached  the same without ``--no-cache`` after a first build: every
                step comes from the layer cache.

Each case is one hyperfine call (all runs of buildah, then all of skiff);
the table shows median wall times, skiff/buildah, the goal (≤ 1.0 cold,
≤ 0.5 cached) and CPU times. RUN steps use each tool's default network
(a private network namespace on its default network), as in the anchors.

Both stores live on the benchfs mount (/var/lib/containers/skiff-bench, a
journaled ext4; ``/work/shared/bench/benchfs up``) in a directory of this
benchmark, so the anchors' store is never touched: buildah runs with the
anchors' containers.conf and a storage.conf of its own (overlay), skiff
with ``--root``/``--runroot`` there (overlay). skiff's modules are
byte-compiled first, as a pip install does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import benchcommon as bc

BENCH = "bench/build"
CONTEXT = bc.SHARED / "build-ctx"
BASE = f"{bc.REGISTRY}/bench/small:latest"
WORK = bc.BENCH_ROOT / "skiff-build-bench"
RUN_ROOT = Path("/run/skiff-build-bench")
FLAGS = "-q --layers --pull=false --tls-verify=false"


@dataclass
class Case:
    name: str
    buildah: str
    skiff: str
    buildah_prepare: str
    skiff_prepare: str
    goal: float
    runs: int


def skiff_command() -> str:
    return bc.skiff_prefix(WORK, RUN_ROOT, "overlay")


def check_environment() -> None:
    bc.require_tools(BENCH, ("hyperfine", "buildah", "docker-registry"))
    bc.require_registry(BENCH)
    if not (CONTEXT / "data" / ".done").exists():
        bc.die(BENCH, f"the build context's data is missing: {bc.SHARED}/fixtures gen")
    bc.warn_unless_benchfs(BENCH)
    WORK.mkdir(parents=True, exist_ok=True)


def pull_base(env: dict[str, str]) -> None:
    """Both stores need the base image (the builds run with --pull=false)."""
    bc.pull_both("buildah", skiff_command(), BASE, env)


def cases() -> list[Case]:
    skiff = skiff_command()
    cold_tag = "localhost/skiff-bench/build:cold"
    cached_tag = "localhost/skiff-bench/build:cached"

    def reset(tool: str) -> str:
        return f"sh -c '{tool} rmi -f {cold_tag} >/dev/null 2>&1; {tool} image prune -f >/dev/null 2>&1; true'"

    return [
        Case(
            "build-cold",
            f"buildah build {FLAGS} --no-cache -t {cold_tag} {CONTEXT}",
            f"{skiff} build {FLAGS} --no-cache -t {cold_tag} {CONTEXT}",
            reset("buildah"),
            reset(skiff),
            1.0,
            5,
        ),
        Case(
            "build-cached",
            f"buildah build {FLAGS} -t {cached_tag} {CONTEXT}",
            f"{skiff} build {FLAGS} -t {cached_tag} {CONTEXT}",
            "true",
            "true",
            0.5,
            10,
        ),
    ]


def run_case(
    case: Case, runs: int, warmup: int, json_dir: Path, env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    commands = ["--prepare", case.buildah_prepare, "--command-name", "buildah", case.buildah]
    commands += ["--prepare", case.skiff_prepare, "--command-name", "skiff", case.skiff]
    export = json_dir / f"{case.name}.json"
    return bc.hyperfine(runs, warmup, export, commands, stdout=sys.stderr, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per command (default 5 cold, 10 cached)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--case", action="append", help="run only these cases")
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    args = parser.parse_args()
    check_environment()
    bc.compile_skiff()
    env = bc.peer_env(WORK, RUN_ROOT, "buildah")
    pull_base(env)
    json_dir = args.json or Path(tempfile.mkdtemp(prefix="json.", dir=WORK))
    json_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases():
        if args.case and case.name not in args.case:
            continue
        print(f"== {case.name}", file=sys.stderr)
        rows.append((case, run_case(case, args.runs or case.runs, args.warmup, json_dir, env)))
    if args.json is None:
        shutil.rmtree(json_dir, ignore_errors=True)
    print(
        "| case | buildah (s) | skiff (s) | skiff/buildah | goal | buildah CPU (s) | skiff CPU (s) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for case, medians in rows:
        (buildah, buildah_cpu), (skiff, skiff_cpu) = medians["buildah"], medians["skiff"]
        ratio = skiff / buildah
        print(
            f"| {case.name} | {buildah:.3f} | {skiff:.3f} | {ratio:.2f} | {bc.goal_cell(ratio, case.goal)} "
            f"| {buildah_cpu:.3f} | {skiff_cpu:.3f} |"
        )


if __name__ == "__main__":
    main()
