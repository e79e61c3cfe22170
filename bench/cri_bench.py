"""The CRI server's pod loop beside ``skiff pod`` and podman's pod commands (bench/cri).

    bench/cri [--iterations N] [--pods N] [--cli-runs N] [--json FILE]

1. gRPC (``cri``): one iteration is what kubelet does for a one-container
   pod, through a running ``skiff cri serve`` on a CNI bridge network:
   RunPodSandbox + CreateContainer + StartContainer + StopPodSandbox +
   RemovePodSandbox (``busybox sleep 1000`` from the busybox test image).
   Reported: median, mean and p90 per pod over ``--iterations``, and the
   time of each RPC.
2. RSS: ``--pods`` more iterations, then the server's resident set size
   (VmRSS of the server process) — it must not grow with the pods it
   served, since everything lives in the store.
3. The same pod from the CLI, as a user types it, for skiff and podman
   (``--cli-runs`` each, sequentially, default bridge networks):
   ``TOOL pod create --name P && TOOL run -d --pod P IMAGE busybox sleep
   1000 && TOOL pod rm -f -t 0 P``.

Stores: under $BENCH_STORAGE_ROOT/skiff-cri-bench (the benchfs mount of
/work/shared/bench if it is up; see its README), run dirs under
/run/skiff-cri-bench. podman runs with the anchors' containers.conf (runc,
cgroupfs, safe rlimits). Everything the benchmark makes is removed at the
end; the CNI bridge of the run too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchcommon as bc

BENCH = "bench/cri"
WORK = bc.BENCH_ROOT / "skiff-cri-bench"
RUN_ROOT = Path("/run/skiff-cri-bench")
POD = "cribench"

sys.path.insert(0, str(bc.REPO))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def grpc_loop(env: Any, iterations: int, timings: dict[str, list[float]] | None) -> list[float]:
    from cri_api.v1 import api_pb2

    per_pod = []
    for i in range(iterations):
        steps: dict[str, float] = {}
        start = time.perf_counter()
        t = start
        sid, config = env.run_sandbox(env.sandbox_config(f"p{i}"))
        steps["RunPodSandbox"] = time.perf_counter() - t
        t = time.perf_counter()
        cid = env.create_container(
            sid, config, env.container_config("c", ["busybox", "sleep", "1000"])
        )
        steps["CreateContainer"] = time.perf_counter() - t
        t = time.perf_counter()
        env.start_container(cid)
        steps["StartContainer"] = time.perf_counter() - t
        t = time.perf_counter()
        env.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid))
        steps["StopPodSandbox"] = time.perf_counter() - t
        t = time.perf_counter()
        env.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid))
        steps["RemovePodSandbox"] = time.perf_counter() - t
        per_pod.append(time.perf_counter() - start)
        if timings is not None:
            for name, value in steps.items():
                timings.setdefault(name, []).append(value)
    return per_pod


def cli_loop(prefix: list[str], image: str, runs: int, env: dict[str, str]) -> list[float]:
    def sh(*args: str) -> None:
        subprocess.run([*prefix, *args], env=env, check=True, stdout=subprocess.DEVNULL)

    subprocess.run(
        [*prefix, "pod", "rm", "-f", "-t", "0", POD], env=env, capture_output=True, check=False
    )
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        sh("pod", "create", "--name", POD)
        sh("run", "-d", "--pod", POD, image, "busybox", "sleep", "1000")
        sh("pod", "rm", "-f", "-t", "0", POD)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        bc.die(BENCH, "run as root")
    for tool in ("podman", "skopeo", "catatonit", "conmon"):
        if shutil.which(tool) is None:
            bc.die(BENCH, f"{tool} not found")
    WORK.mkdir(parents=True, exist_ok=True)
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    from skiff.testing.busybox import build_busybox_layout
    from skiff.testing.criserver import CRIEnv

    results: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    try:
        layout = build_busybox_layout(base / "layout")
        env = CRIEnv(base / "env", layout)
        try:
            env.start()
            grpc_loop(env, 3, None)  # warm up: the pause image, caches
            timings: dict[str, list[float]] = {}
            per_pod = grpc_loop(env, args.iterations, timings)
            results["cri"] = summary(per_pod)
            results["cri_steps"] = {k: statistics.median(v) for k, v in timings.items()}
            assert env.process is not None
            results["rss_start_kib"] = rss_kib(env.process.pid)
            grpc_loop(env, args.pods, None)
            results["rss_after_kib"] = rss_kib(env.process.pid)
            results["rss_pods"] = args.pods + args.iterations + 3
            # the same store from the CLI
            skiff = [*env.skiff_argv()]
            skiff_env = env.environ()
            cli_loop(skiff, env.image, 2, skiff_env)
            results["skiff_cli"] = summary(cli_loop(skiff, env.image, args.cli_runs, skiff_env))
        finally:
            env.close()
        penv = bc.peer_env(WORK, RUN_ROOT, own_tmp_dir=True)
        podman = ["podman"]
        image = "localhost/cribench/busybox:latest"
        subprocess.run(
            ["skopeo", "copy", "-q", layout.reference,
             f"containers-storage:[overlay@{WORK / 'podman'}+{RUN_ROOT / 'podman'}]{image}"],
            env=penv, check=True,
        )  # fmt: skip
        cli_loop(podman, image, 2, penv)
        results["podman_cli"] = summary(cli_loop(podman, image, args.cli_runs, penv))
        subprocess.run(["podman", "rmi", "-a", "-f"], env=penv, capture_output=True, check=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(results, args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    def row(name: str, s: dict[str, float]) -> str:
        return (
            f"| {name} | {s['median'] * 1000:.0f} | {s['mean'] * 1000:.0f} "
            f"| {s['p90'] * 1000:.0f} |"
        )

    print(f"\nper pod (ms), {args.iterations} iterations gRPC, {args.cli_runs} runs CLI")
    print("| path | median | mean | p90 |\n|---|---|---|---|")
    print(row("CRI gRPC: run+create+start+stop+remove", results["cri"]))
    print(row("skiff CLI: pod create + run -d + pod rm -f", results["skiff_cli"]))
    print(row("podman CLI: pod create + run -d + pod rm -f", results["podman_cli"]))
    print("\nCRI steps (median ms): " + ", ".join(
        f"{k} {v * 1000:.0f}" for k, v in results["cri_steps"].items()
    ))  # fmt: skip
    print(
        f"server RSS: {results['rss_start_kib'] / 1024:.1f} MiB after warm-up, "
        f"{results['rss_after_kib'] / 1024:.1f} MiB after {results['rss_pods']} pods"
    )


if __name__ == "__main__":
    main()
