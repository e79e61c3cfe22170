"""A pod's life with skiff beside podman's (bench/pod).

    bench/pod [--runs N] [--warmup N] [--case NAME ...] [--json DIR]

One run of a case is four commands, as a user types them:

    TOOL pod create --name benchpod [--network none]
    TOOL run -d --pod benchpod IMAGE busybox sleep 1000     (starts the infra too)
    TOOL run -d --pod benchpod IMAGE busybox sleep 1000
    TOOL pod rm -f -t 0 benchpod

Cases: ``pod`` (the pod on the default bridge network: netavark sets up and
tears down the pod's namespace) and ``pod-nonet`` (``--network none``);
``kube`` and ``kube-nonet`` do the same work in two commands, as a
Kubernetes user would: ``TOOL kube play [--network none] FILE`` (a Pod with
the two containers, ``imagePullPolicy: IfNotPresent``: podman would otherwise
try the registry first for a ``:latest`` image), ``TOOL pod stop -t 0
benchpod`` and ``TOOL pod rm benchpod`` (podman 4.3's ``pod rm -f -t 0`` of a
kube-played pod takes ~3.7 s here, waiting out a stop timeout despite
``-t 0``: stopping first keeps the comparison about the work, not that).
Each case is one hyperfine call with both tools (all of podman's runs,
then all of skiff's); ``--prepare`` removes a pod left by an interrupted
run. The table shows median wall times, skiff/podman against the goal
(≤ 0.8) and CPU time.

The image is skiff's busybox test image (skiff.testing.busybox), written
as an OCI layout and copied into both stores, so no registry is needed.
Both stores live on the benchfs mount (/var/lib/containers/skiff-bench,
a journaled ext4; ``/work/shared/bench/benchfs up``) in a directory of
this benchmark: podman runs with the anchors' containers.conf (runc,
cgroupfs, safe rlimits) and a storage.conf of its own (overlay). skiff's
modules are byte-compiled first, as a pip install does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import benchcommon as bc

BENCH = "bench/pod"
WORK = bc.BENCH_ROOT / "skiff-pod-bench"
RUN_ROOT = Path("/run/skiff-pod-bench")
IMAGE = "localhost/podbench/busybox:latest"
POD = "benchpod"
GOAL = 0.8
CASES = ("pod", "pod-nonet", "kube", "kube-nonet")


@dataclass
class Case:
    name: str
    network: str
    runs: int


def skiff_prefix() -> str:
    return bc.skiff_prefix(WORK, RUN_ROOT, "overlay")


def check_environment() -> None:
    bc.require_tools(BENCH, ("hyperfine", "podman", "skopeo", "catatonit"))
    bc.warn_unless_benchfs(BENCH)
    WORK.mkdir(parents=True, exist_ok=True)


def load_images(env: dict[str, str]) -> None:
    """The busybox test image in both stores (and each tool's pause image, built once)."""
    sys.path.insert(0, str(bc.REPO))
    from skiff.testing.busybox import build_busybox_layout

    layout = build_busybox_layout(WORK / "layout")
    for argv in (
        ["skopeo", "copy", "-q", layout.reference,
         f"containers-storage:[overlay@{WORK / 'podman'}+{RUN_ROOT / 'podman'}]{IMAGE}"],
        [*skiff_prefix().split(), "image", "copy", "-q", layout.reference,
         f"containers-storage:[overlay@{WORK / 'skiff'}+{RUN_ROOT / 'skiff'}]{IMAGE}"],
    ):  # fmt: skip
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    # one pod each first: podman and skiff both build their pause image on first use
    for tool in ("podman", skiff_prefix()):
        subprocess.run(
            f"{tool} pod create --name warm >/dev/null && {tool} pod rm -f warm >/dev/null",
            shell=True,
            env=env,
            check=True,
        )


def script(tool: str, network: str) -> str:
    net = f" --network {network}" if network else ""
    return (
        f"{tool} pod create --name {POD}{net} >/dev/null"
        f" && {tool} run -d --pod {POD} {IMAGE} busybox sleep 1000 >/dev/null"
        f" && {tool} run -d --pod {POD} {IMAGE} busybox sleep 1000 >/dev/null"
        f" && {tool} pod rm -f -t 0 {POD} >/dev/null"
    )


KUBE_YAML = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {POD}
spec:
  containers:
  - name: one
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [busybox, sleep, "1000"]
  - name: two
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [busybox, sleep, "1000"]
"""


def kube_script(tool: str, network: str) -> str:
    net = f" --network {network}" if network else ""
    return (
        f"{tool} kube play{net} {WORK / 'pod.yaml'} >/dev/null"
        f" && {tool} pod stop -t 0 {POD} >/dev/null"
        f" && {tool} pod rm {POD} >/dev/null"
    )


def run_case(
    case: Case, warmup: int, env: dict[str, str], out_dir: Path
) -> dict[str, tuple[float, float]]:
    skiff = skiff_prefix()
    make = kube_script if case.name.startswith("kube") else script
    commands = [
        "-n", "podman", "--prepare", f"podman pod rm -f -t 0 {POD} >/dev/null 2>&1; true",
        make("podman", case.network),
        "-n", "skiff", "--prepare", f"{skiff} pod rm -f -t 0 {POD} >/dev/null 2>&1; true",
        make(skiff, case.network),
    ]  # fmt: skip
    export = out_dir / f"{case.name}.json"
    return bc.hyperfine(case.runs, warmup, export, commands, shell=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    args = parser.parse_args()
    check_environment()
    bc.compile_skiff()
    env = bc.peer_env(WORK, RUN_ROOT, own_tmp_dir=True)
    load_images(env)
    (WORK / "pod.yaml").write_text(KUBE_YAML)
    chosen = args.case or list(CASES)
    cases = [
        Case(name, "none" if name.endswith("-nonet") else "", args.runs)
        for name in CASES
        if name in chosen
    ]
    out_dir = args.json or Path(tempfile.mkdtemp(prefix="pod-bench-", dir=WORK))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases:
        times = run_case(case, args.warmup, env, out_dir)
        (podman, podman_cpu), (skiff, skiff_cpu) = times["podman"], times["skiff"]
        ratio = skiff / podman
        rows.append(
            f"| {case.name} | {podman * 1000:.0f} ms | {skiff * 1000:.0f} ms "
            f"| {ratio:.2f} | ≤ {GOAL} {'✓' if ratio <= GOAL else '✗'} "
            f"| {podman_cpu * 1000:.0f} / {skiff_cpu * 1000:.0f} ms |"
        )
    print()
    print(
        "| case | podman (median) | skiff (median) | skiff/podman | goal | CPU podman / skiff (mean) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
