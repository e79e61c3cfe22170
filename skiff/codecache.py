"""The methods ``@dataclass`` generates, compiled once and kept like bytecode.

Why: ``dataclasses`` writes every class's ``__init__``, ``__repr__``,
``__eq__``, ... as Python source and compiles it with ``exec`` when the
class is defined, in every process, every time. skiff starts for every
command, and ``skiff run`` defines ~50 dataclasses on its way: compiling
their ~250 methods was a quarter of its CPU time (~25 ms, measured with
callgrind and ``-X importtime``). A ``.pyc`` cannot hold that code, because
it does not exist until the decorator runs.

``install()`` (called first thing by ``skiff.cli.main``) gives the
``dataclasses`` module an ``exec`` of its own — a module global shadows the
builtin there — that looks the source text up in a table of code objects
compiled earlier, and compiles (as ``exec`` would: ``"<string>"``, no
inherited ``__future__`` flags) only what is not in it. Everything else
about the class is left to ``dataclasses``; a table entry is used only for
exactly the source text it was compiled from.

The tables sit beside skiff's bytecode, one per module that defines
dataclasses: ``skiff/__pycache__/dataclasses.MODULE.CACHE_TAG.marshal``,
loaded with ``marshal`` when the module's first dataclass is defined.
Like ``.pyc`` files they are written when a process compiled something new
and may write bytecode (not with ``PYTHONDONTWRITEBYTECODE`` or ``-B``), or
by ``python -m skiff.codecache`` (``make compile``), which imports every
skiff module once. A table of another Python build (``sys.version``) or
``-O`` level is ignored, an unreadable one too: the cost is the compile,
never an error. The tables are trusted as ``.pyc`` files are: they live in
the package's own ``__pycache__``.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import marshal
import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any

_FORMAT = 1
_PREFIX = "skiff."
_DIR = Path(__file__).resolve().parent / "__pycache__"

_tables: dict[str, dict[str, CodeType]] = {}
"""module name → source text → code, as loaded (or compiled here)."""
_fresh: dict[str, dict[str, CodeType]] = {}
"""What this process compiled that its tables did not have."""
_state = {"installed": False}


def _build_key() -> str:
    """Code objects are only valid for the interpreter build (and -O level) that made them."""
    return f"{sys.version} -O{sys.flags.optimize}"


def table_path(module: str) -> Path:
    return _DIR / f"dataclasses.{module}.{sys.implementation.cache_tag}.marshal"


def _load(module: str) -> dict[str, CodeType]:
    table = _tables.get(module)
    if table is not None:
        return table
    table = {}
    with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
        data = marshal.loads(table_path(module).read_bytes())  # noqa: S302 - our own, like a .pyc
        if (
            isinstance(data, tuple)
            and len(data) == 3
            and data[0] == _FORMAT
            and data[1] == _build_key()
            and isinstance(data[2], dict)
        ):
            table = {k: v for k, v in data[2].items() if type(k) is str and type(v) is CodeType}
    _tables[module] = table
    return table


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    """``exec`` for the dataclasses module: a known source runs its kept code."""
    module = globals.get("__name__") if type(globals) is dict else None
    if type(source) is str and type(module) is str and module.startswith(_PREFIX):
        table = _load(module)
        code = table.get(source)
        if code is None:
            code = compile(source, "<string>", "exec", dont_inherit=True)
            table[source] = code
            _fresh.setdefault(module, {})[source] = code
        source = code
    builtins.exec(source, globals, locals)  # noqa: S102 - dataclasses' own generated code


def install() -> None:
    """Put ``_exec`` into the dataclasses module (once per process)."""
    if _state["installed"]:
        return
    import dataclasses

    if "exec" in vars(dataclasses):  # someone else's: leave it
        return
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    _state["installed"] = True
    atexit.register(_save_fresh)


def _save_fresh() -> None:
    if not sys.dont_write_bytecode:
        save(list(_fresh))


def save(modules: list[str]) -> None:
    """Write the tables of ``modules`` (what was on disk, plus this
    process's), each atomically; a table that cannot be written is skipped."""
    for module in modules:
        table = dict(_load(module))
        path = table_path(module)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            path.parent.mkdir(exist_ok=True)
            tmp.write_bytes(marshal.dumps((_FORMAT, _build_key(), table)))
            tmp.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            continue
        _fresh.pop(module, None)


def build() -> int:
    """Import every skiff module and write the tables of all of them."""
    import importlib
    import pkgutil

    import skiff

    install()
    failed = 0
    for info in pkgutil.walk_packages(skiff.__path__, _PREFIX):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # a module that cannot be imported here: no table for it
            print(f"skiff.codecache: {info.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
    save(sorted(_tables))
    return 1 if failed else 0


if __name__ == "__main__":
    from skiff.codecache import build as build_tables  # the module the CLI uses, not __main__

    sys.exit(build_tables())
