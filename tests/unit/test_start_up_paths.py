"""The pieces that keep a skiff command's start-up and ending short: conmon's
exit command script, the dataclass code cache, the database's schema check
and close, timer-kept process waits. Real processes, real SQLite, no fakes."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff import codecache
from skiff.errors import StorageError
from skiff.runtime import procwait
from skiff.runtime.engine import EXIT_COMMAND_SCRIPT
from skiff.storage import db as dbmod
from skiff.storage.db import Database

# --- the exit command ---------------------------------------------------------------------


def _exit_command(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(EXIT_COMMAND_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_exit_command_does_nothing_for_a_removed_container(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = _exit_command(tmp_path / "containers" / "gone", "/usr/bin/touch", marker)
    assert result.returncode == 0 and not result.stderr
    assert not marker.exists()


def test_exit_command_runs_the_cleanup_for_an_existing_container(tmp_path: Path) -> None:
    container_dir = tmp_path / "containers" / "c1"
    container_dir.mkdir(parents=True)
    marker = tmp_path / "ran"
    result = _exit_command(container_dir, "/bin/sh", "-c", f'touch {marker}; exit "$0"', "3")
    assert result.returncode == 3  # the cleanup's own status: the script exec'd it
    assert marker.exists()


def test_exit_command_failures_are_reported(tmp_path: Path) -> None:
    result = _exit_command(tmp_path, tmp_path / "no-such-program")
    assert result.returncode == 127
    assert "cannot run" in result.stderr and "Traceback" not in result.stderr
    usage = _exit_command(tmp_path)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_exit_command_script_needs_no_site_packages() -> None:
    """It runs with -I -S: nothing but the standard library may be imported."""
    source = EXIT_COMMAND_SCRIPT.read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"__future__", "os", "sys"}


# --- the dataclass code cache -------------------------------------------------------------


@pytest.fixture
def cache_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A throwaway module named like skiff's, with the code tables in tmp_path."""
    monkeypatch.setattr(codecache, "_DIR", tmp_path)
    monkeypatch.setattr(codecache, "_tables", {})
    monkeypatch.setattr(codecache, "_fresh", {})
    codecache.install()
    module = types.ModuleType("skiff.codecache_test_module")
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        del sys.modules[module.__name__]


def _define(module: types.ModuleType) -> type:
    source = (
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Point:\n"
        "    x: int\n"
        "    y: int = 2\n"
        "    tags: list[str] = dataclasses.field(default_factory=list, hash=False)\n"
    )
    exec(compile(source, module.__name__, "exec"), module.__dict__)
    point: type = module.__dict__["Point"]
    return point


def test_dataclass_code_is_compiled_once_then_reused(
    cache_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vars(dataclasses)["exec"] is codecache._exec
    first = _define(cache_module)
    fresh = codecache._fresh[cache_module.__name__]
    assert len(fresh) >= 4  # __init__, __repr__, __eq__, __hash__, __setattr__, ...
    codecache.save([cache_module.__name__])
    assert codecache.table_path(cache_module.__name__).is_file()

    # a new process: tables read from disk, nothing compiled
    monkeypatch.setattr(codecache, "_tables", {})
    compiled: list[str] = []
    real_compile = compile

    def counting_compile(source: str, *args: object, **kwargs: object) -> object:
        compiled.append(source)
        return real_compile(source, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(codecache, "compile", counting_compile, raising=False)
    second = _define(cache_module)
    assert compiled == []
    # the class behaves as dataclasses makes it
    p = second(1)
    assert p == second(1, 2, []) and p != second(1, 3)
    assert repr(p) == "Point(x=1, y=2, tags=[])"
    assert hash(p) == hash(second(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[attr-defined]
    assert second(1).tags is not second(1).tags
    assert first.__init__.__annotations__ == second.__init__.__annotations__  # type: ignore[misc]


def test_generated_code_does_not_inherit_the_cache_modules_future_flags(
    cache_module: types.ModuleType,
) -> None:
    """codecache.py has ``from __future__ import annotations``; the methods
    dataclasses generates must not (their annotations are objects)."""
    point = _define(cache_module)
    assert point.__init__.__annotations__["return"] is None  # type: ignore[misc]


def test_tables_of_another_build_or_broken_ones_are_ignored(
    cache_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _define(cache_module)
    codecache.save([cache_module.__name__])
    path = codecache.table_path(cache_module.__name__)
    for content in (b"\x00garbage", b""):
        path.write_bytes(content)
        monkeypatch.setattr(codecache, "_tables", {})
        assert _define(cache_module)(1).y == 2
    real_key = codecache._build_key
    monkeypatch.setattr(codecache, "_build_key", lambda: "another python")
    codecache.save([cache_module.__name__])
    monkeypatch.setattr(codecache, "_build_key", real_key)
    monkeypatch.setattr(codecache, "_tables", {})
    assert codecache._load(cache_module.__name__) == {}


def test_modules_outside_skiff_are_left_alone(cache_module: types.ModuleType) -> None:
    other = types.ModuleType("not_skiff_module")
    source = "import dataclasses\n@dataclasses.dataclass\nclass C:\n    a: int\n"
    exec(compile(source, "<test>", "exec", dont_inherit=True), other.__dict__)
    assert "not_skiff_module" not in codecache._tables
    assert other.__dict__["C"](1).a == 1


# --- the database ---------------------------------------------------------------------------

SCRIPT = """
CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY, v TEXT);
CREATE INDEX IF NOT EXISTS things_by_v ON things(v)
"""


def test_schema_check_takes_no_write_lock_when_everything_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    first = Database(path)
    first.ensure_schema("things", SCRIPT)
    first.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)
        second = Database(path)
        started = time.monotonic()
        second.ensure_schema("things", SCRIPT)  # must not wait for the write lock
        assert time.monotonic() - started < 0.15
        third = Database(path)
        with pytest.raises(StorageError, match="locked"):  # a real write still waits
            third.ensure_schema("other", "CREATE TABLE IF NOT EXISTS other (a INTEGER)")
        second.close()
        third.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_schema_scripts_with_other_statements_always_run(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    db.ensure_schema("things", SCRIPT)
    seeded = SCRIPT + ";\nINSERT OR IGNORE INTO things(id, v) VALUES ('seed', 'x')"
    again = Database(tmp_path / "db.sqlite")
    again.ensure_schema("seeded", seeded)
    assert again.read_one("SELECT v FROM things WHERE id='seed'") is not None
    db.close()
    again.close()


@pytest.mark.parametrize(
    ("statement", "name"),
    [
        ("CREATE TABLE IF NOT EXISTS meta (\n key TEXT)", "meta"),
        ("CREATE TABLE IF NOT EXISTS meta(key TEXT)", "meta"),
        ("CREATE INDEX IF NOT EXISTS a_by_b ON a(b)", "a_by_b"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS u ON a(b)", "u"),
        ("CREATE TABLE meta (key TEXT)", ""),
        ("INSERT OR IGNORE INTO meta VALUES ('a', 'b')", ""),
        ("ALTER TABLE meta ADD COLUMN c", ""),
    ],
)
def test_created_name(statement: str, name: str) -> None:
    assert dbmod._created_name(statement) == name


def test_threads_opening_a_new_store_at_once_all_get_in(tmp_path: Path) -> None:
    """SQLite answers "locked" at once (no busy wait) to racing WAL switches."""
    import threading

    for trial in range(15):
        path = tmp_path / f"db{trial}.sqlite"
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def open_and_create(
            db_path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                db = Database(db_path)
                db.ensure_schema("things", SCRIPT)
                db.close()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_and_create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
        assert mode == ("wal",)


def test_closing_keeps_the_wal_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = Database(path)
    db.ensure_schema("things", SCRIPT)
    with db.write() as conn:
        conn.executemany(
            "INSERT INTO things(id, v) VALUES (?, ?)", [(str(i), "v" * 100) for i in range(50)]
        )
    db.close()
    wal = path.with_name(path.name + "-wal")
    if sys.version_info[:2] in ((3, 11), (3, 12), (3, 13)):
        assert wal.is_file() and wal.stat().st_size > 0  # not checkpointed into db.sqlite
    reader = Database(path)
    assert len(reader.read("SELECT id FROM things")) == 50
    reader.close()
    # SQLite itself, without skiff, reads the same (the WAL is part of the database)
    plain = sqlite3.connect(path)
    assert plain.execute("SELECT count(*) FROM things").fetchone() == (50,)
    plain.close()


# --- waiting for processes ------------------------------------------------------------------


def test_procwait_run_returns_output_and_status() -> None:
    result = procwait.run(
        ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"],
        timeout=30,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert (result.returncode, result.stdout, result.stderr) == (4, b"out\n", b"err\n")
    fed = procwait.run(["/bin/cat"], timeout=30, input_data=b"abc", stdout=subprocess.PIPE)
    assert fed.stdout == b"abc"


def test_procwait_run_kills_at_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        procwait.run(["/bin/sleep", "30"], timeout=0.2, stdout=subprocess.DEVNULL)
    assert time.monotonic() - started < 10


def test_procwait_wait() -> None:
    with subprocess.Popen(["/bin/sleep", "30"]) as proc:
        assert procwait.wait(proc, 0.1) is None
        proc.kill()
        assert procwait.wait(proc, 10) == -9
    with subprocess.Popen(["/bin/true"]) as quick:
        assert procwait.wait(quick, 10) == 0
        assert procwait.wait(quick, 10) == 0  # reaped already: still the status
