"""The library's layers import downward only, as their folder names say: every import of every module (at its top or
inside a function), read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "affectkit"
# A part of the package may import its own layer and the layers below it.
LAYERS = {
    "config": 0, "errors": 0, "progress": 0, "runs": 0, "atomic": 0, "readlog": 0, "lazy": 0, "imaging": 0,
    "models": 1,
    "data": 2,
    "evaluation": 3,
    "training": 4, "inference": 4,
    "pipeline": 5, "multimodal": 5, "temporal": 5,
    "api": 6, "__init__": 6, "serving": 6,
    "cli": 7,
    "__main__": 8,  # python -m affectkit: runs the command line
}


def _part(path: Path) -> str:
    """The top-level part of the package a module belongs to: ``training`` for training/trainer.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports() -> list[tuple[Path, str]]:
    """(module file, imported affectkit part) for every import of the package by its own modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [(path, name.split(".")[1]) for name in names if name.startswith("affectkit.")]
    return found


IMPORTS = _imports()


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(path) for path in PACKAGE.rglob("*.py")} | {target for _, target in IMPORTS}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_go_downward():
    upward = [f"{path.relative_to(PACKAGE)} imports affectkit.{target}" for path, target in IMPORTS
              if LAYERS[target] > LAYERS[_part(path)]]
    assert not upward


def test_only_the_command_line_imports_it_and_only_it_and_the_api_import_the_server():
    assert not [p for p, t in IMPORTS if t == "cli" and _part(p) not in {"cli", "__main__"}]
    assert {_part(p) for p, t in IMPORTS if t == "serving"} <= {"cli", "api", "serving"}


def test_the_library_never_prints_or_parses_a_command_line():
    """Its output goes through the reporter (affectkit.progress), whose console only the command line uses; typer
    belongs to the command line too."""
    for path in PACKAGE.rglob("*.py"):
        if _part(path) in ("cli", "progress"):
            continue
        tree = ast.parse(path.read_text())
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        from_progress = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                         and n.module == "affectkit.progress" for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "print" not in calls and "console" not in from_progress, path
        assert "typer" not in modules, path
