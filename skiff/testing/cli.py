"""Running the ``skiff`` CLI (and its peers skopeo and podman) as a user would.

CLI tests must see what a user sees: the installed entry point started as
a subprocess, its exit code, its stdout, and its stderr. ``CliEnv`` gives
every command a private world under one temp directory, so nothing on the
host is read or changed:

- ``--root``/``--runroot`` for skiff (a temp store);
- ``HOME``, ``XDG_RUNTIME_DIR``, ``XDG_CONFIG_HOME`` and ``TMPDIR`` inside
  the directory, so the default auth file (``$XDG_RUNTIME_DIR/containers/
  auth.json``, where podman keeps it too) and ``~/.docker/config.json`` are
  the test's own;
- a permissive ``policy.json`` passed to skopeo and podman (``--policy``);
- optionally a test registry's registries.conf: ``$CONTAINERS_REGISTRIES_CONF``
  for skiff and podman, ``--registries-conf`` for skopeo (1.9 ignores the
  variable).

``skiff(...)`` checks the exit code it is told to expect; ``fails(...)``
additionally checks that a failure is reported the way skiff promises
(one ``Error: ...`` line on stderr, exit code 125, no traceback) and
returns that line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT = 120.0


def skiff_executable() -> str:
    """The ``skiff`` script installed beside the running interpreter (the venv's)."""
    beside = Path(sys.executable).parent / "skiff"
    if beside.exists():
        return str(beside)
    found = shutil.which("skiff")
    if found is None:
        raise RuntimeError("the skiff entry point is not installed (run 'make venv')")
    return found


class CommandFailed(AssertionError):
    """A command did not end as the test expected; the message has its output."""


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class CliEnv:
    """A private environment for skiff, skopeo and podman under ``base``."""

    def __init__(self, base: Path, registries_conf: Path | None = None) -> None:
        self.base = base
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.home = base / "home"
        self.runtime_dir = base / "xdg-run"
        self.tmp = base / "tmp"
        for path in (self.home, self.runtime_dir, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o700)
        self.policy = base / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = registries_conf
        self.skiff_path = skiff_executable()

    @property
    def auth_file(self) -> Path:
        """Where skiff, podman and skopeo keep credentials in this environment."""
        return self.runtime_dir / "containers" / "auth.json"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
        }
        if self.registries_conf is not None:
            env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        env.update(extra or {})
        return env

    def run(
        self,
        argv: list[str],
        *,
        expect: int | None = 0,
        input_text: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
        cwd: Path | None = None,
    ) -> Result:
        """Run ``argv`` (in ``cwd``, else the environment's directory); raise
        CommandFailed unless it exits with ``expect`` (None: any)."""
        completed = subprocess.run(
            argv,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.environ(env),
            cwd=cwd or self.base,
            timeout=timeout,
            check=False,
        )
        result = Result(argv, completed.returncode, completed.stdout, completed.stderr)
        if expect is not None and result.returncode != expect:
            raise CommandFailed(f"expected exit {expect}\n{result.describe()}")
        return result

    def skiff_argv(self, *args: str | Path) -> list[str]:
        return [
            self.skiff_path,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            *(str(a) for a in args),
        ]

    def skiff(self, *args: str | Path, expect: int | None = 0, **kwargs: Any) -> Result:
        return self.run(self.skiff_argv(*args), expect=expect, **kwargs)

    def fails(self, *args: str | Path, code: int = 125, **kwargs: Any) -> str:
        """Run skiff expecting a clean failure; return its one ``Error:`` line."""
        result = self.skiff(*args, expect=code, **kwargs)
        assert_clean_failure(result)
        return result.stderr.strip()

    def skopeo(self, *args: str | Path, expect: int | None = 0, **kwargs: Any) -> Result:
        argv = ["skopeo", "--policy", str(self.policy)]
        if self.registries_conf is not None:
            # skopeo 1.9 ignores $CONTAINERS_REGISTRIES_CONF; the flag it reads
            argv += ["--registries-conf", str(self.registries_conf)]
        argv += [str(a) for a in args]
        return self.run(argv, expect=expect, **kwargs)

    def podman(self, *args: str | Path, expect: int | None = 0, **kwargs: Any) -> Result:
        store = self.base / "podman"
        argv = [
            "podman",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--storage-driver",
            "vfs",
            *(str(a) for a in args),
        ]
        return self.run(argv, expect=expect, **kwargs)


def assert_clean_failure(result: Result) -> None:
    """A failure as skiff promises it: one ``Error: ...`` line, no traceback."""
    lines = result.stderr.splitlines()
    if (
        len(lines) != 1
        or not lines[0].startswith("Error: ")
        or "Traceback" in result.stderr
        or "internal error" in result.stderr
    ):
        raise CommandFailed(f"expected one 'Error:' line on stderr\n{result.describe()}")
