"""Build the SystemContext from the global flags every command shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from skiff.config import DEFAULT_RUN_ROOT, DEFAULT_STORAGE_ROOT, SystemContext


def system_context(args: argparse.Namespace) -> SystemContext:
    kwargs: dict[str, object] = {
        "storage_root": getattr(args, "root", None) or DEFAULT_STORAGE_ROOT,
        "run_root": getattr(args, "runroot", None) or DEFAULT_RUN_ROOT,
        "storage_driver": getattr(args, "storage_driver", None),
        "registries_conf": getattr(args, "registries_conf", None),
        "policy_path": getattr(args, "policy", None),
        "insecure_policy": bool(getattr(args, "insecure_policy", False)),
        "registries_d": getattr(args, "registries_d", None),
    }
    tmpdir = getattr(args, "tmpdir", None)
    if tmpdir:
        kwargs["tmp_dir"] = Path(tmpdir)
    return SystemContext(**kwargs)  # type: ignore[arg-type]
