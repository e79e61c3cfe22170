"""``skiff image copy`` beside ``skopeo copy`` on the shared bench images.

    bench/copy [--runs 5] [--warmup 1] [--case NAME ...] [--json DIR] [--baseline REV]

Each case is one hyperfine call timing skopeo and skiff with the same
arguments (all runs of one, then all of the other) and prints the ratio of
the median wall times (skiff / skopeo; goal ≤ 0.9) and the mean CPU time
(user + system) of each:

  pull-medium, pull-large  registry → ``oci:`` (docker://localhost:5000/bench/IMG:latest)
  push-medium, push-large  ``oci:`` → registry (the fixture layouts in
                           /var/tmp/skiff-bench/oci, into a private sink
                           registry emptied before every run)
  zstd-large               gzip → zstd of the large image, ``oci:`` → ``oci:``,
                           beside ``zstd -T2 -3`` compressing the same
                           uncompressed layer (goal: skiff ≤ 1.5 x zstd; also
                           shown with an fsync of zstd's output, as durable
                           as the layouts skiff and skopeo write) and
                           skopeo's own conversion

Needs the bench environment of /work/shared/bench (its registry on
127.0.0.1:5000 with the fixture images, the OCI layouts, the benchfs
mount for scratch) plus hyperfine, skopeo, zstd and docker-registry. The
sink registry is started here on a free loopback port and stopped at the
end. skiff's modules are byte-compiled first (as a pip install does;
this environment sets PYTHONDONTWRITEBYTECODE), so start-up is measured
as users get it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import benchcommon as bc

BENCH = "bench/copy"
SKIFF = bc.SKIFF
REGISTRY = bc.REGISTRY
OCI = Path(os.environ.get("BENCH_STATE", "/var/tmp/skiff-bench")) / "oci"
SCRATCH = bc.BENCH_ROOT / "scratch"
GOAL_RATIO = 0.9
GOAL_ZSTD = 1.5


@dataclass
class Case:
    name: str
    skopeo: str
    skiff: str
    prepare: str
    extra: dict[str, str] | None = None
    """Further commands timed in the same hyperfine call (label → command)."""


def check_environment() -> None:
    bc.require_tools(BENCH, ("hyperfine", "skopeo", "zstd", "docker-registry"))
    bc.require_registry(BENCH)
    for image in ("medium", "large"):
        if not (OCI / f"{image}-gzip" / "index.json").exists():
            bc.die(BENCH, f"{OCI}/{image}-gzip missing; build it: /work/shared/bench/fixtures")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(SCRATCH.parent):
        print(
            f"bench/copy: warning: {SCRATCH.parent} is not the benchfs mount "
            "(/work/shared/bench/benchfs up); disk timings may differ",
            file=sys.stderr,
        )


def plain_large_layer() -> Path:
    """The large image's layer, uncompressed, in scratch (made once, checked by diff ID)."""
    layout = OCI / "large-gzip"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest).read_bytes())
    config_digest = manifest["config"]["digest"].split(":", 1)[1]
    config = json.loads((layout / "blobs/sha256" / config_digest).read_bytes())
    (layer,) = manifest["layers"]
    diff_id = config["rootfs"]["diff_ids"][0]
    out = SCRATCH / f"copy-large-{diff_id.split(':', 1)[1][:12]}.tar"
    if not out.exists():
        from isal import igzip

        digest = hashlib.sha256()
        tmp = out.with_suffix(".partial")
        blob = layout / "blobs/sha256" / layer["digest"].split(":", 1)[1]
        with igzip.open(blob) as src, tmp.open("wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if f"sha256:{digest.hexdigest()}" != diff_id:
            tmp.unlink()
            bc.die(BENCH, "the large layer does not decompress to its diff ID")
        tmp.rename(out)
    return out


def baseline_tree(rev: str) -> Path:
    """skiff's package as of ``rev`` (``git archive``), byte-compiled, in scratch."""
    commit = subprocess.run(
        ["git", "-C", str(bc.REPO), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = SCRATCH / f"copy-baseline-{commit}"
    if not (tree / "skiff").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(bc.REPO), "archive", commit, "skiff"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    bc.compile_tree(tree / "skiff")
    return tree


def cases(sink: str, sink_storage: Path, baseline: tuple[str, Path] | None) -> list[Case]:
    """The cases; ``baseline`` (label, tree) adds that skiff version to each."""
    out: list[Case] = []
    for image in ("medium", "large"):
        dest = SCRATCH / f"copy-pull-{image}"
        args = (
            f"-q --src-tls-verify=false docker://{REGISTRY}/bench/{image}:latest oci:{dest}:latest"
        )
        out.append(
            Case(
                f"pull-{image}",
                f"skopeo copy {args}",
                f"{SKIFF} image copy {args}",
                f"rm -rf {dest}",
            )
        )
    for image in ("medium", "large"):
        args = (
            f"-q --dest-tls-verify=false oci:{OCI}/{image}-gzip:latest "
            f"docker://{sink}/bench/{image}:latest"
        )
        out.append(
            Case(
                f"push-{image}",
                f"skopeo copy {args}",
                f"{SKIFF} image copy {args}",
                f"rm -rf {sink_storage}/docker",
            )
        )
    dest = SCRATCH / "copy-zstd-large"
    plain = plain_large_layer()
    args = f"-q --dest-compress-format zstd oci:{OCI}/large-gzip:latest oci:{dest}:latest"
    out.append(
        Case(
            "zstd-large",
            f"skopeo copy {args}",
            f"{SKIFF} image copy {args}",
            f"rm -rf {dest} {SCRATCH}/copy-large.tar.zst",
            extra={
                "zstd -T2": f"zstd -q -T2 -3 -f {plain} -o {SCRATCH}/copy-large.tar.zst",
                # the same, durable like the oci: layouts both copy tools write
                "zstd -T2 + fsync": (
                    f"sh -c 'zstd -q -T2 -3 -f {plain} -o {SCRATCH}/copy-large.tar.zst"
                    f" && sync {SCRATCH}/copy-large.tar.zst'"
                ),
            },
        )
    )
    if baseline is not None:
        label, tree = baseline
        # PYTHONPATH wins over the venv's editable install of the current tree
        # (-P: the current directory is not put first on sys.path)
        old = f"env PYTHONPATH={tree} {sys.executable} -P -m skiff.cli.main"
        for case in out:
            case.extra = {label: case.skiff.replace(str(SKIFF), old, 1), **(case.extra or {})}
    return out


def run_case(case: Case, runs: int, warmup: int, json_dir: Path) -> dict[str, tuple[float, float]]:
    commands = ["--prepare", case.prepare]
    for label, command in {
        "skopeo": case.skopeo,
        "skiff": case.skiff,
        **(case.extra or {}),
    }.items():
        commands += ["--command-name", label, command]
    export = json_dir / f"{case.name}.json"
    return bc.hyperfine(runs, warmup, export, commands, stdout=sys.stderr, cwd=SCRATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--case", action="append", help="run only these cases")
    parser.add_argument("--json", type=Path, help="keep hyperfine's JSON exports here")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also time skiff as of git revision REV in the same runs (before/after)",
    )
    args = parser.parse_args()
    check_environment()
    bc.compile_skiff()
    baseline = None
    if args.baseline:
        baseline = (f"skiff@{args.baseline}", baseline_tree(args.baseline))
    json_dir = args.json or Path(tempfile.mkdtemp(prefix="copy-bench-json.", dir=SCRATCH))
    json_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with bc.sink_registry(BENCH, SCRATCH, "copy-sink.", "bench-copy-sink") as (sink, storage):
        for case in cases(sink, storage, baseline):
            if args.case and case.name not in args.case:
                continue
            print(f"== {case.name}", file=sys.stderr)
            means = run_case(case, args.runs, args.warmup, json_dir)
            rows.append((case.name, means))
    if args.json is None:
        shutil.rmtree(json_dir, ignore_errors=True)
    # the copies' outputs (the uncompressed large layer stays: it is a cache)
    for leftover in SCRATCH.glob("copy-pull-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.rmtree(SCRATCH / "copy-zstd-large", ignore_errors=True)
    (SCRATCH / "copy-large.tar.zst").unlink(missing_ok=True)
    others = [label for label in (rows[0][1] if rows else {}) if label.startswith("skiff@")]
    head = "| case | skopeo wall (s) | skiff wall (s) | skiff/skopeo | goal | skopeo CPU (s) | skiff CPU (s) |"
    rule = "|---|---:|---:|---:|---|---:|---:|"
    for label in others:
        head += f" {label} wall (s) | {label}/skopeo | {label} CPU (s) |"
        rule += "---:|---:|---:|"
    print(head)
    print(rule)
    for name, means in rows:
        (skopeo, skopeo_cpu), (skiff, skiff_cpu) = means["skopeo"], means["skiff"]
        ratio = skiff / skopeo
        line = (
            f"| {name} | {skopeo:.3f} | {skiff:.3f} | {ratio:.2f} | {bc.goal_cell(ratio, GOAL_RATIO)} "
            f"| {skopeo_cpu:.3f} | {skiff_cpu:.3f} |"
        )
        for label in others:
            wall, cpu = means[label]
            line += f" {wall:.3f} | {wall / skopeo:.2f} | {cpu:.3f} |"
        print(line)
    for name, means in rows:
        for version in ["skiff", *others]:
            skiff = means[version][0]
            for label in ("zstd -T2", "zstd -T2 + fsync"):
                if label in means:
                    zstd = means[label][0]
                    ratio = skiff / zstd
                    verdict = "ok" if ratio <= GOAL_ZSTD else "MISSED"
                    print(
                        f"{name}: {label} {zstd:.3f} s, {version} {skiff:.3f} s: "
                        f"{version}/({label}) = {ratio:.2f} (goal ≤ {GOAL_ZSTD}: {verdict})"
                    )


if __name__ == "__main__":
    main()
