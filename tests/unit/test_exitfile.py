"""Exit files: reading, and waiting on them with inotify, pidfds and polling."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from skiff.errors import ContainerError
from skiff.runtime.exitfile import (
    DirectoryWatch,
    read_exit_code,
    read_exit_record,
    remove_exit_file,
    wait_exit,
)


def write_like_conmon(directory: Path, name: str, text: str) -> None:
    """glib's g_file_set_contents: a temporary beside the file, renamed over it."""
    tmp = directory / f"{name}.AB12CD"
    tmp.write_text(text)
    os.replace(tmp, directory / name)


def test_read_exit_code(tmp_path: Path) -> None:
    assert read_exit_code(tmp_path, "c1") is None
    write_like_conmon(tmp_path, "c1", "137")
    assert read_exit_code(tmp_path, "c1") == 137
    record = read_exit_record(tmp_path, "c1")
    assert record is not None
    assert abs(record.finished_at.timestamp() - time.time()) < 5
    remove_exit_file(tmp_path, "c1")
    remove_exit_file(tmp_path, "c1")  # already gone: fine
    assert read_exit_code(tmp_path, "c1") is None


def test_garbage_exit_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "c1").write_text("not a number")
    with pytest.raises(ContainerError, match="not an exit code"):
        read_exit_code(tmp_path, "c1")


@pytest.mark.parametrize("bad", ["", "..", "a/b"])
def test_invalid_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ContainerError):
        read_exit_code(tmp_path, bad)


def test_wait_exit_wakes_on_the_rename(tmp_path: Path) -> None:
    ready = threading.Event()

    def writer() -> None:
        ready.wait(5)
        write_like_conmon(tmp_path, "other", "1")  # another container's: ignored
        write_like_conmon(tmp_path, "c1", "7")

    thread = threading.Thread(target=writer)
    thread.start()
    ready.set()
    assert wait_exit(tmp_path, "c1", 5) == 7
    thread.join()


def test_wait_exit_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    assert wait_exit(tmp_path, "c1", 0.1) is None
    assert 0.1 <= time.monotonic() - started < 1


def test_wait_exit_returns_an_existing_file_at_once(tmp_path: Path) -> None:
    write_like_conmon(tmp_path, "c1", "0")
    assert wait_exit(tmp_path, "c1", 0) == 0


def test_wait_exit_without_inotify_polls(tmp_path: Path) -> None:
    """A directory that does not exist yet cannot be watched: polling takes over."""
    missing = tmp_path / "exits"

    def writer() -> None:
        missing.mkdir()
        write_like_conmon(missing, "c1", "3")

    timer = threading.Timer(0.05, writer)
    timer.start()
    assert wait_exit(missing, "c1", 5) == 3
    timer.join()


def test_wait_exit_fails_fast_when_the_monitor_is_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    threading.Timer(0.05, proc.kill).start()
    started = time.monotonic()
    with pytest.raises(ContainerError, match="exited without writing"):
        wait_exit(tmp_path, "c1", 10, conmon_pid=proc.pid)
    assert time.monotonic() - started < 3
    proc.wait()


def test_wait_exit_prefers_the_file_of_an_exited_monitor(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    write_like_conmon(tmp_path, "c1", "5")
    assert wait_exit(tmp_path, "c1", 1, conmon_pid=proc.pid) == 5


def test_directory_watch_reports_names(tmp_path: Path) -> None:
    with DirectoryWatch(tmp_path) as watch:
        assert watch.read() == []
        write_like_conmon(tmp_path, "c1", "0")
        assert watch.wait(2)
        names = {name for _mask, name in watch.read()}
    assert "c1" in names


def test_directory_watch_of_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        DirectoryWatch(tmp_path / "missing")
