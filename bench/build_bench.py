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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIFF = Path(sys.executable).parent / "skiff"
SHARED = Path("/work/shared/bench")
CONTEXT = SHARED / "build-ctx"
REGISTRY = "localhost:5000"
BASE = f"{REGISTRY}/bench/small:latest"
BENCH_ROOT = Path(os.environ.get("BENCH_STORAGE_ROOT", "/var/lib/containers/skiff-bench"))
WORK = BENCH_ROOT / "skiff-build-bench"
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


def die(message: str) -> None:
    print(f"bench/build: {message}", file=sys.stderr)
    sys.exit(1)


def buildah_env() -> dict[str, str]:
    """The anchors' containers.conf, and a storage.conf of this benchmark's own."""
    sys.path.insert(0, str(SHARED))
    import benchlib  # type: ignore[import-not-found]

    conf = WORK / "containers.conf"
    conf.write_text(benchlib.containers_conf_text())
    storage = WORK / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{WORK / "buildah"}"\n'
        f'runroot = "{RUN_ROOT / "buildah"}"\n'
    )
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage)
    env.setdefault("TMPDIR", "/var/tmp")
    return env


def skiff_command() -> str:
    return (
        f"{SKIFF} --root {WORK / 'skiff'} --runroot {RUN_ROOT / 'skiff'} --storage-driver overlay"
    )


def check_environment() -> None:
    for tool in ("hyperfine", "buildah", "docker-registry"):
        if shutil.which(tool) is None:
            die(f"{tool} not found (see /work/shared/bench/README.md)")
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).close()
    except OSError as exc:
        die(f"no registry on {REGISTRY} ({exc}); start it: {SHARED}/registry start")
    if not (CONTEXT / "data" / ".done").exists():
        die(f"the build context's data is missing: {SHARED}/fixtures gen")
    if not os.path.ismount(BENCH_ROOT):
        print(
            f"bench/build: warning: {BENCH_ROOT} is not the benchfs mount "
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


def pull_base(env: dict[str, str]) -> None:
    """Both stores need the base image (the builds run with --pull=false)."""
    for argv in (
        ["buildah", "pull", "-q", "--tls-verify=false", BASE],
        [*skiff_command().split(), "pull", "-q", "--tls-verify=false", BASE],
    ):
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)


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
    export = json_dir / f"{case.name}.json"
    argv = ["hyperfine", "-N", "--style", "basic", "--runs", str(runs), "--warmup", str(warmup)]
    argv += ["--export-json", str(export)]
    argv += ["--prepare", case.buildah_prepare, "--command-name", "buildah", case.buildah]
    argv += ["--prepare", case.skiff_prepare, "--command-name", "skiff", case.skiff]
    subprocess.run(argv, check=True, stdout=sys.stderr, env=env)
    results = json.loads(export.read_text())["results"]
    return {r["command"]: (r["median"], r["user"] + r["system"]) for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per command (default 5 cold, 10 cached)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--case", action="append", help="run only these cases")
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    args = parser.parse_args()
    check_environment()
    compile_skiff()
    env = buildah_env()
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
        verdict = "ok" if ratio <= case.goal else "MISSED"
        print(
            f"| {case.name} | {buildah:.3f} | {skiff:.3f} | {ratio:.2f} | ≤ {case.goal} {verdict} "
            f"| {buildah_cpu:.3f} | {skiff_cpu:.3f} |"
        )


if __name__ == "__main__":
    main()
