"""What the bench/*_bench.py scripts share: one place for the set-up and the
measuring they must all do the same way, so that their numbers compare.

- where things are (the repository, skiff's entry point, the anchors'
  bench directory, the benchfs mount for stores) and the checks before a run
  (tools on PATH, the fixture registry up, benchfs mounted);
- skiff byte-compiled first, as a pip install leaves it (this environment
  sets PYTHONDONTWRITEBYTECODE, which would otherwise make every run pay
  for compiling);
- the peer tool's environment: the anchors' containers.conf and a
  storage.conf of the benchmark's own, so the anchors' store is never
  touched;
- a private sink registry on a free loopback port, for push cases;
- hyperfine run with one set of flags and its JSON export read back as
  (median wall time, mean CPU time) per command, and the goal column.

The scripts run as ``python bench/NAME_bench.py``, so this module is found
beside them on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIFF = Path(sys.executable).parent / "skiff"
SHARED = Path("/work/shared/bench")
REGISTRY = "localhost:5000"
BENCH_ROOT = Path(os.environ.get("BENCH_STORAGE_ROOT", "/var/lib/containers/skiff-bench"))


def die(bench: str, message: str) -> NoReturn:
    print(f"{bench}: {message}", file=sys.stderr)
    sys.exit(1)


# --- before a run ----------------------------------------------------------------------


def require_tools(bench: str, tools: tuple[str, ...]) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            die(bench, f"{tool} not found (see /work/shared/bench/README.md)")


def require_registry(bench: str) -> None:
    """The anchors' fixture registry (started by /work/shared/bench/registry)."""
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).close()
    except OSError as exc:
        die(bench, f"no registry on {REGISTRY} ({exc}); start it: {SHARED}/registry start")


def warn_unless_benchfs(bench: str) -> None:
    """Stores elsewhere than on benchfs (a journaled ext4) time the disk differently."""
    if not os.path.ismount(BENCH_ROOT):
        print(
            f"{bench}: warning: {BENCH_ROOT} is not the benchfs mount "
            f"({SHARED}/benchfs up); disk timings will differ from the anchors'",
            file=sys.stderr,
        )


def compile_tree(package: Path) -> None:
    """Byte-compile ``package`` as a pip install does, whatever PYTHONDONTWRITEBYTECODE says."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def compile_skiff() -> None:
    """Byte-compile skiff and keep the code of its dataclasses, as ``make compile`` does."""
    compile_tree(REPO / "skiff")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "skiff.codecache"], env=env, check=True, stdout=subprocess.DEVNULL
    )


# --- the tools' stores -----------------------------------------------------------------


def skiff_prefix(work: Path, run_root: Path, driver: str | None = None) -> str:
    """skiff's command line on the benchmark's own store (``work``/skiff)."""
    prefix = f"{SKIFF} --root {work / 'skiff'} --runroot {run_root / 'skiff'}"
    return f"{prefix} --storage-driver {driver}" if driver else prefix


def peer_env(
    work: Path, run_root: Path, tool: str = "podman", *, own_tmp_dir: bool = False
) -> dict[str, str]:
    """The anchors' containers.conf, and a storage.conf of this benchmark's own
    (overlay, ``work``/TOOL). ``own_tmp_dir`` moves libpod's tmp_dir under
    ``run_root`` too, for benchmarks that make pods (their state lives there)."""
    sys.path.insert(0, str(SHARED))
    import benchlib  # type: ignore[import-not-found]

    text = benchlib.containers_conf_text()
    if own_tmp_dir:
        text = text.replace(
            f'tmp_dir = "{benchlib.RUN_ROOT}/libpod"', f'tmp_dir = "{run_root}/libpod"'
        )
    conf = work / "containers.conf"
    conf.write_text(text)
    storage = work / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{work / tool}"\n'
        f'runroot = "{run_root / tool}"\n'
    )
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage)
    env.setdefault("TMPDIR", "/var/tmp")
    return env


def pull_both(peer: str, skiff: str, ref: str, env: dict[str, str]) -> None:
    """``ref`` pulled into the peer's store and skiff's (command prefixes, split at spaces)."""
    for prefix in (peer, skiff):
        subprocess.run(
            [*prefix.split(), "pull", "-q", "--tls-verify=false", ref],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sink_registry(bench: str, parent: Path, prefix: str, secret: str) -> Iterator[tuple[str, Path]]:
    """A docker-registry on a free loopback port, its storage in a new directory
    under ``parent``, no blob cache (so deleting its storage really empties it);
    yields (host, storage dir) and removes everything at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    storage = root / "storage"
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}},"
        " maintenance: {uploadpurging: {enabled: false}}}\n"
        f"http: {{addr: '127.0.0.1:{port}', secret: {secret}}}\n"
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
                    die(bench, f"sink registry did not start; see {root / 'registry.log'}")
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


# --- measuring -------------------------------------------------------------------------


def hyperfine(
    runs: int,
    warmup: int,
    export: Path,
    commands: list[str],
    *,
    shell: bool = False,
    **run_kwargs: Any,
) -> dict[str, tuple[float, float]]:
    """One hyperfine call over ``commands`` (its ``--prepare``, ``--command-name``
    and command arguments, in hyperfine's order); returns, per command name,
    (median wall time, mean CPU time user+system) in seconds.

    The median is robust to a neighbour's burst on a shared machine. Commands
    are run without a shell (``-N``) unless ``shell`` (a command that is a
    pipeline of several). ``run_kwargs`` go to ``subprocess.run`` (env, cwd,
    stdout)."""
    argv = ["hyperfine", *([] if shell else ["-N"]), "--style", "basic"]
    argv += ["--runs", str(runs), "--warmup", str(warmup), "--export-json", str(export)]
    subprocess.run([*argv, *commands], check=True, **run_kwargs)
    results = json.loads(export.read_text())["results"]
    return {r["command"]: (r["median"], r["user"] + r["system"]) for r in results}


def goal_cell(ratio: float, goal: float) -> str:
    """The goal column: ``≤ GOAL ok`` or ``≤ GOAL MISSED``."""
    return f"≤ {goal} {'ok' if ratio <= goal else 'MISSED'}"
