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
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIFF = Path(sys.executable).parent / "skiff"
SHARED = Path("/work/shared/bench")
REGISTRY = "localhost:5000"
BENCH_ROOT = Path(os.environ.get("BENCH_STORAGE_ROOT", "/var/lib/containers/skiff-bench"))
WORK = BENCH_ROOT / "skiff-pull-bench"
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


def die(message: str) -> None:
    print(f"bench/pull: {message}", file=sys.stderr)
    sys.exit(1)


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
    for tool in ("hyperfine", "podman", "docker-registry"):
        if shutil.which(tool) is None:
            die(f"{tool} not found (see /work/shared/bench/README.md)")
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).close()
    except OSError as exc:
        die(f"no registry on {REGISTRY} ({exc}); start it: {SHARED}/registry start")
    if not os.path.ismount(BENCH_ROOT):
        print(
            f"bench/pull: warning: {BENCH_ROOT} is not the benchfs mount "
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sink_registry() -> Iterator[tuple[str, Path]]:
    """A docker-registry on a free loopback port with its storage in WORK."""
    root = Path(tempfile.mkdtemp(prefix="sink.", dir=WORK))
    storage = root / "storage"
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}},"
        " maintenance: {uploadpurging: {enabled: false}}}\n"
        f"http: {{addr: '127.0.0.1:{port}', secret: bench-pull-sink}}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    die(f"sink registry did not start; see {root / 'registry.log'}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", storage
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def cases(sink: str, sink_storage: Path) -> list[Case]:
    podman = "podman"
    skiff = f"{SKIFF} --root {WORK / 'skiff'} --runroot {RUN_ROOT / 'skiff'}"
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
    subprocess.run(["podman", "pull", "-q", "--tls-verify=false", ref], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(
        [str(SKIFF), "--root", str(WORK / "skiff"), "--runroot", str(RUN_ROOT / "skiff"),
         "pull", "-q", "--tls-verify=false", ref],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def run_case(
    case: Case, runs: int, warmup: int, json_dir: Path, env: dict[str, str]
) -> dict[str, tuple[float, float]]:
    export = json_dir / f"{case.name}.json"
    argv = ["hyperfine", "-N", "--style", "basic", "--runs", str(runs), "--warmup", str(warmup)]
    argv += ["--export-json", str(export)]
    argv += ["--prepare", case.podman_prepare, "--command-name", "podman", case.podman]
    argv += ["--prepare", case.skiff_prepare, "--command-name", "skiff", case.skiff]
    subprocess.run(argv, check=True, stdout=sys.stderr, env=env)
    results = json.loads(export.read_text())["results"]
    return {r["command"]: (r["median"], r["user"] + r["system"]) for r in results}


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
    compile_skiff()
    env = podman_env()
    json_dir = args.json or Path(tempfile.mkdtemp(prefix="json.", dir=WORK))
    json_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with sink_registry() as (sink, storage):
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
        goal = "—"
        if case.goal is not None:
            goal = f"≤ {case.goal} {'ok' if ratio <= case.goal else 'MISSED'}"
        print(
            f"| {case.name} | {podman:.3f} | {skiff:.3f} | {ratio:.2f} | {goal} "
            f"| {podman_cpu:.3f} | {skiff_cpu:.3f} | {podman_rss / 1024:.0f} | {skiff_rss / 1024:.0f} |"
        )


if __name__ == "__main__":
    main()
