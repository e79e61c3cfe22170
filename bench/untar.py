#!/usr/bin/env python3
"""Time GNU tar against skiff's layer extractor on the same layers.

    .venv/bin/python bench/untar.py [--files 10000] [--large 3] [--large-mib 32]
                                    [--runs 5] [--workdir /dev/shm] [--layer FILE ...]

Without ``--layer`` it generates a source tree (small files of 0-8 KiB in
100 directories plus a few large files, all compressible like binaries and
text) and packs it with GNU tar into layers: small files gzip, small files
plain (extraction cost per entry, no decompression) in pax format (a PAX
header per member, as GNU tar writes them) and in GNU format (no PAX
headers, like most Go-written layers), large files gzip (throughput). zstd
variants are added when the ``zstd`` tool is installed. Each layer is
extracted ``--runs`` times by ``tar -xpf`` (``--numeric-owner``,
decompression by tar's own ``gzip``/``zstd`` child) and by
``skiff.storage.archive.apply``
(vfs format) into a fresh directory on tmpfs; the table shows the median
CPU time (user+sys, children included) and wall time of each, and the
ratio skiff/tar. Directories are removed between runs, outside the timing.
``--tar-split`` makes skiff also write the tar-split record the store keeps
(GNU tar has no counterpart).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from skiff.storage.archive import apply

WORDS = [
    b"container",
    b"layer",
    b"overlay",
    b"digest",
    b"manifest",
    b"registry",
    b"\x00\x01\x02\x03",
    b"\x7fELF",
    b"libc.so.6",
    b"/usr/lib",
]


def _content(rng: random.Random, size: int) -> bytes:
    """Compressible but not trivial: words plus some random bytes."""
    parts: list[bytes] = []
    total = 0
    while total < size:
        if rng.random() < 0.2:
            piece = rng.randbytes(rng.randint(8, 64))
        else:
            piece = rng.choice(WORDS) + b" "
        parts.append(piece)
        total += len(piece)
    return b"".join(parts)[:size]


def make_tree(root: Path, files: int, large: int, large_mib: int) -> tuple[Path, Path]:
    rng = random.Random(42)
    small = root / "small"
    big = root / "large"
    for index in range(files):
        directory = small / f"d{index % 100:03d}" / f"s{index % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"file{index:05d}.txt"
        path.write_bytes(_content(rng, rng.randint(0, 8192)))
        if index % 50 == 0:
            path.chmod(0o755)
        if index % 97 == 0:
            (directory / f"link{index:05d}").symlink_to(path.name)
    big.mkdir(parents=True, exist_ok=True)
    block = _content(rng, 1 << 20)
    for index in range(large):
        with (big / f"blob{index}.bin").open("wb") as out:
            for chunk in range(large_mib):
                out.write(block[chunk:] + block[:chunk])
    return small, big


def pack(source: Path, target: Path, compress: str, fmt: str = "posix") -> Path:
    tar = target.with_suffix(".tar")
    subprocess.run(
        ["tar", f"--format={fmt}", "--numeric-owner", "-C", str(source), "-cf", str(tar), "."],
        check=True,
    )
    if compress == "gzip":
        subprocess.run(["gzip", "-6", "-k", "-f", str(tar)], check=True)
        return tar.with_suffix(".tar.gz")
    if compress == "zstd":
        subprocess.run(["zstd", "-q", "-3", "-f", str(tar)], check=True)
        return tar.with_suffix(".tar.zst")
    return tar


def time_gnu_tar(layer: Path, dest: Path) -> tuple[float, float]:
    argv = ["tar", "--numeric-owner", "-xpf", str(layer), "-C", str(dest)]
    if layer.suffix == ".gz":
        argv.insert(1, "-z")
    elif layer.suffix == ".zst":
        argv.insert(1, "--zstd")
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"tar failed on {layer}")
    return usage.ru_utime + usage.ru_stime, wall


TAR_SPLIT = False


def time_apply(layer: Path, dest: Path) -> tuple[float, float]:
    split = dest.with_name(dest.name + ".tar-split") if TAR_SPLIT else None
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with layer.open("rb") as stream:
        apply(stream, dest, whiteout_format="vfs", tar_split=split)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def count_entries(layer: Path) -> int:
    argv = ["tar", "-tf", str(layer)]
    if layer.suffix == ".zst":
        argv.insert(1, "--zstd")
    out = subprocess.run(argv, check=True, capture_output=True).stdout
    return out.count(b"\n")


def bench(layer: Path, work: Path, runs: int) -> None:
    entries = count_entries(layer)
    results: dict[str, list[tuple[float, float]]] = {"tar": [], "skiff": []}
    for _ in range(runs):
        for name, func in (("tar", time_gnu_tar), ("skiff", time_apply)):
            dest = Path(tempfile.mkdtemp(dir=work, prefix=f"x-{name}-"))
            results[name].append(func(layer, dest))
            shutil.rmtree(dest)
            Path(f"{dest}.tar-split").unlink(missing_ok=True)
    tar_cpu = statistics.median(c for c, _ in results["tar"])
    tar_wall = statistics.median(w for _, w in results["tar"])
    our_cpu = statistics.median(c for c, _ in results["skiff"])
    our_wall = statistics.median(w for _, w in results["skiff"])
    size = layer.stat().st_size
    print(
        f"{layer.name:<24} {entries:>7} {size / 2**20:>8.1f}  "
        f"{tar_cpu:>7.3f} {tar_wall:>7.3f}  {our_cpu:>7.3f} {our_wall:>7.3f}  "
        f"{our_cpu / tar_cpu:>5.2f}x {our_wall / tar_wall:>5.2f}x  "
        f"{1e6 * tar_cpu / entries:>6.1f} {1e6 * our_cpu / entries:>6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--large-mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", default="/dev/shm")
    parser.add_argument("--layer", action="append", type=Path, default=[])
    parser.add_argument(
        "--tar-split", action="store_true", help="also write a tar-split record, as the store does"
    )
    args = parser.parse_args()
    global TAR_SPLIT  # noqa: PLW0603 (a benchmark switch)
    TAR_SPLIT = args.tar_split
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="skiff-bench-untar-"))
    try:
        layers = list(args.layer)
        if not layers:
            small, big = make_tree(work / "src", args.files, args.large, args.large_mib)
            layers.append(pack(small, work / "small", "gzip"))
            layers.append(pack(small, work / "small-plain", ""))
            layers.append(pack(small, work / "small-plain-ustar", "", fmt="gnu"))
            layers.append(pack(big, work / "large", "gzip"))
            if shutil.which("zstd"):
                layers.append(pack(small, work / "small-zstd", "zstd"))
                layers.append(pack(big, work / "large-zstd", "zstd"))
        print(
            f"{'layer':<24} {'entries':>7} {'MiB':>8}  {'tar cpu':>7} {'wall':>7}  "
            f"{'skiff':>7} {'wall':>7}  {'cpu':>6} {'wall':>6}  {'us/entry tar':>6} {'skiff':>6}"
        )
        for layer in layers:
            bench(layer, work, args.runs)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
