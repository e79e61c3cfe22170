"""skiff's packages import downwards only (ARCHITECTURE.md, "Layers").

Every ``import skiff.X`` in the package, module level or inside a function,
is checked against the layer order; the known exception is listed
with the reason it stands, so that a new upward import fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import skiff

LAYERS = [
    "cli",
    "cri",
    "system",
    "build",
    "runtime",
    "libimage",
    "signature",
    "image",
    "storage",
    "oci",
]
"""Top to bottom. Packages not named here (errors, config, gotemplate,
libc, codecache) are leaves that import none of these layers."""

ALLOWED_UPWARD = {
    ("image", "signature"): "the copy engine checks policy.json (ARCHITECTURE: copy checks policy)",
}
LEAVES_MAY_IMPORT: dict[str, set[str]] = {"testing": set(LAYERS), "__main__": {"cli"}}


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name.startswith("skiff.")]


def test_imports_point_downwards() -> None:
    root = Path(skiff.__file__).parent
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward: list[str] = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for module in _imports(path):
            target = module.split(".")[1]
            if target not in rank or target == package:
                continue
            if package in rank:
                ok = rank[target] > rank[package] or (package, target) in ALLOWED_UPWARD
            else:
                ok = target in LEAVES_MAY_IMPORT.get(package, set())
            if not ok:
                upward.append(f"{path.relative_to(root.parent)}: {package} imports {module}")
    assert upward == []


def test_the_allowed_exceptions_still_exist() -> None:
    """An exception nobody needs any more is removed from the list."""
    root = Path(skiff.__file__).parent
    for package, target in ALLOWED_UPWARD:
        modules = [m for p in (root / package).rglob("*.py") for m in _imports(p)]
        assert any(m.split(".")[1] == target for m in modules), (package, target)
