"""Environment variables: ``--env``, ``--env-file``, and the merge with the image.

``--env KEY=VALUE`` sets; ``--env KEY`` copies KEY from the caller's
environment (and is dropped when the caller has none); ``--env 'PREFIX*'``
copies every caller variable whose name starts with PREFIX (podman's glob,
only a trailing ``*``). Env files hold one such entry per line, ``#``
comments and blank lines skipped, values taken literally (no quotes or
expansion, as podman and Docker read them).

The container's environment, in order (later wins, first position kept):
``PATH`` (the default unless the image sets one), ``TERM=xterm``,
``container=skiff``, the image's ``Env``, the user's entries, then
``HOSTNAME`` and ``HOME`` unless already set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from skiff.errors import UsageError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINER_ENV = ("container", "skiff")


def _check_name(name: str, where: str) -> None:
    if not name or any(c.isspace() or c == "\0" for c in name) or "=" in name:
        raise UsageError(f"invalid environment variable {name!r} in {where}")


def parse_env(
    entries: Iterable[str], caller_env: Mapping[str, str], *, where: str = "--env"
) -> dict[str, str]:
    """Entries as ``--env`` takes them → ordered name → value."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep:
            _check_name(name, where)
            if "\0" in value:
                raise UsageError(f"invalid value for {name} in {where}: contains a NUL byte")
            out[name] = value
        elif name.endswith("*"):
            prefix = name[:-1]
            if "*" in prefix:
                raise UsageError(
                    f"invalid environment pattern {name!r} in {where}",
                    "only a trailing * is supported",
                )
            for key, val in caller_env.items():
                if key.startswith(prefix):
                    out[key] = val
        else:
            _check_name(name, where)
            if name in caller_env:
                out[name] = caller_env[name]
    return out


def read_env_file(path: Path, caller_env: Mapping[str, str]) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"env file {path} is not UTF-8 text") from exc
    entries = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        entries.append(line)
    return parse_env(entries, caller_env, where=f"env file {path}")


def _image_env(entries: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        if name:
            out[name] = value
    return out


def merge_env(
    image_env: Sequence[str],
    user_env: Mapping[str, str],
    *,
    hostname: str,
    home: str,
) -> list[str]:
    """The process's ``env`` list (see the module docstring for the order)."""
    env: dict[str, str] = {
        "PATH": DEFAULT_PATH,
        "TERM": "xterm",
        CONTAINER_ENV[0]: CONTAINER_ENV[1],
    }
    env.update(_image_env(image_env))
    env.update(user_env)
    env.setdefault("HOSTNAME", hostname)
    env.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in env.items()]
