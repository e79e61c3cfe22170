"""crun on hybrid cgroups through its wrapper script, and crun's seccomp
program cache: choosing, writing, reusing — with the real crun binary where
a test needs one, planted files where it needs crun's state."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from skiff.errors import ContainerError
from skiff.runtime import crun_hybrid, seccomp_cache
from skiff.runtime.oci import OCIRuntime, RuntimeChoice, select_runtime
from skiff.runtime.specgen.host import CgroupLayout

HYBRID = CgroupLayout(1, ("hugetlb",))
CRUN = shutil.which("crun")
needs_crun = pytest.mark.skipif(CRUN is None, reason="crun is not installed")


def test_scripts_run_crun_in_a_slave_namespace_without_the_cgroup2_mount() -> None:
    crun = Path("/usr/bin/crun")
    for text in (
        crun_hybrid.busybox_script("/bin/busybox", crun),
        crun_hybrid.util_linux_script("/usr/bin/unshare", "/usr/bin/umount", crun),
    ):
        assert text.startswith("#!")
        assert "slave" in text and "private" not in text
        assert "umount" in text and crun_hybrid.UNIFIED in text
        assert f'exec "$0" "$@"\' {crun} "$@"' in text


def test_wrapper_is_written_once_and_rewritten_when_stale(tmp_path: Path) -> None:
    crun = Path(CRUN or "/usr/bin/crun")
    path = crun_hybrid.ensure_wrapper(tmp_path, crun)
    if path is None:
        pytest.skip("neither busybox nor util-linux here")
    assert path == crun_hybrid.wrapper_path(tmp_path) and path.name == "crun"
    assert os.access(path, os.X_OK)
    written = path.stat().st_mtime_ns
    assert crun_hybrid.ensure_wrapper(tmp_path, crun) == path
    assert path.stat().st_mtime_ns == written  # reused as is
    path.write_text('#!/bin/sh\nexec /somewhere/else "$@"\n')
    assert crun_hybrid.ensure_wrapper(tmp_path, crun) == path
    assert str(crun) in path.read_text()  # a stale script is replaced
    assert crun_hybrid.ensure_wrapper(tmp_path, Path("/opt/crun")) == path
    assert "/opt/crun" in path.read_text()


@needs_crun
def test_wrapper_passes_arguments_and_status_through(tmp_path: Path) -> None:
    path = crun_hybrid.ensure_wrapper(tmp_path, Path(str(CRUN)))
    if path is None:
        pytest.skip("neither busybox nor util-linux here")
    result = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("crun version ")
    failed = subprocess.run(
        [str(path), "--root", str(tmp_path / "state"), "state", "no-such-container"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert failed.returncode != 0 and "no-such-container" in failed.stderr


@needs_crun
def test_selection_uses_the_wrapper_only_when_asked(tmp_path: Path) -> None:
    plain = select_runtime(tmp_path, layout=HYBRID)
    assert plain.wrapper is None and plain.name != "crun"  # crun passed over, as before
    with pytest.raises(ContainerError, match="hybrid"):
        select_runtime(tmp_path, "crun", layout=HYBRID)
    if crun_hybrid.ensure_wrapper(tmp_path / "probe", Path(str(CRUN))) is None:
        pytest.skip("neither busybox nor util-linux here")
    wrapped = select_runtime(tmp_path, layout=HYBRID, wrap_hybrid=True)
    assert wrapped.name == "crun" and wrapped.path == Path(str(CRUN))
    assert wrapped.wrapper == crun_hybrid.wrapper_path(tmp_path)
    assert wrapped.executable == wrapped.wrapper
    assert "hybrid" in wrapped.reason and str(wrapped.wrapper) in wrapped.reason
    asked = select_runtime(tmp_path, "crun", layout=HYBRID, wrap_hybrid=True)
    assert asked.wrapper == wrapped.wrapper and "requested" in asked.reason
    runtime = OCIRuntime(wrapped, tmp_path)
    assert runtime.name == "crun" and runtime.path == wrapped.wrapper
    assert runtime.argv("state", "x")[0] == str(wrapped.wrapper)
    # where crun works as it is, nothing is wrapped
    unified = select_runtime(tmp_path / "v2", layout=CgroupLayout(2), wrap_hybrid=True)
    assert unified.wrapper is None


# --- the seccomp program cache --------------------------------------------------------------

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
}


def _crun(tmp_path: Path) -> OCIRuntime:
    path = Path(CRUN or "/usr/bin/crun")
    return OCIRuntime(RuntimeChoice("crun", path, "1.8.1", "test"), tmp_path)


def _spec(profile: dict[str, object] | None = None) -> dict[str, object]:
    return {"linux": {"seccomp": json.loads(json.dumps(profile or PROFILE))}}


def _plant_program(runtime: OCIRuntime, container_id: str, program: bytes) -> None:
    state = runtime.state_root / container_id
    state.mkdir(parents=True)
    (state / "seccomp.bpf").write_bytes(program)


@needs_crun
def test_a_remembered_program_is_given_to_the_next_container_with_that_profile(
    tmp_path: Path,
) -> None:
    runtime = _crun(tmp_path)
    program = bytes(range(8)) * 3
    first = _spec()
    assert not seccomp_cache.apply(first, runtime)  # nothing cached yet
    assert "annotations" not in first
    _plant_program(runtime, "c1", program)
    seccomp_cache.remember(first, runtime, "c1")
    assert not seccomp_cache.cache_dir(runtime).is_relative_to(runtime.state_root.parent)
    second = _spec()
    assert seccomp_cache.apply(second, runtime)
    annotations = second["annotations"]
    assert isinstance(annotations, dict)
    assert base64.b64decode(annotations[seccomp_cache.ANNOTATION]) == program
    assert second["linux"] == first["linux"]  # the profile stays, for inspect
    other = dict(PROFILE, defaultErrnoRet=1)
    assert not seccomp_cache.apply(_spec(other), runtime)  # another profile: compiled again


@needs_crun
def test_programs_are_not_cached_where_crun_treats_more_than_the_filter(tmp_path: Path) -> None:
    runtime = _crun(tmp_path)
    _plant_program(runtime, "c1", bytes(16))
    for profile in (
        dict(PROFILE, flags=["SECCOMP_FILTER_FLAG_LOG"]),
        dict(PROFILE, listenerPath="/run/listener.sock"),
        dict(PROFILE, defaultAction="SCMP_ACT_NOTIFY"),
    ):
        seccomp_cache.remember(_spec(profile), runtime, "c1")
    with_annotation = _spec()
    with_annotation["annotations"] = {"run.oci.seccomp_fail_unknown_syscall": "1"}
    seccomp_cache.remember(with_annotation, runtime, "c1")
    assert not seccomp_cache.cache_dir(runtime).exists()


@needs_crun
def test_bad_or_foreign_entries_are_not_used(tmp_path: Path) -> None:
    runtime = _crun(tmp_path)
    _plant_program(runtime, "odd", b"1234567")  # not whole instructions
    seccomp_cache.remember(_spec(), runtime, "odd")
    assert not seccomp_cache.cache_dir(runtime).exists()
    _plant_program(runtime, "c1", bytes(8))
    seccomp_cache.remember(_spec(), runtime, "c1")
    (entry,) = seccomp_cache.cache_dir(runtime).iterdir()
    data = json.loads(entry.read_text())
    data["identity"]["runtime"][2] += 1  # another crun binary
    entry.write_text(json.dumps(data))
    assert not seccomp_cache.apply(_spec(), runtime)
    entry.write_text("not json")
    assert not seccomp_cache.apply(_spec(), runtime)
    runc = OCIRuntime(RuntimeChoice("runc", Path("/usr/sbin/runc"), "1.1", "test"), tmp_path)
    assert not seccomp_cache.apply(_spec(), runc)
