"""Imports flow one way (docs/ARCHITECTURE.md): a model never imports training or data, attacks
work on any nn.Module, the report reads only the results store, nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "robustmer"

FORBIDDEN: dict[str, set[str]] = {
    "audio": {"features", "data", "models", "train", "attacks", "explain", "evaluate", "study",
              "report", "cli"},
    "features": {"data", "models", "train", "attacks", "explain", "evaluate", "study", "report",
                 "cli"},
    "data": {"models", "train", "attacks", "explain", "evaluate", "study", "report", "cli"},
    "models": {"data", "train", "attacks", "explain", "evaluate", "study", "report", "cli"},
    "attacks": {"data", "train", "study", "report", "cli"},
    "explain": {"data", "train", "study", "report", "cli"},
    "evaluate": {"data", "train", "study", "report", "cli"},
    "train": {"data", "attacks", "study", "report", "cli"},
    "report": {"data", "train", "attacks", "study", "cli"},
    "study": {"cli"},
}


def _imported_stages(path: Path) -> set[str]:
    stages = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "robustmer" and len(parts) > 1:
                stages.add(parts[1])
    return stages


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_stage_imports_flow_downwards(stage: str) -> None:
    bad = {}
    for path in sorted((PKG / stage).rglob("*.py")):
        hits = _imported_stages(path) & FORBIDDEN[stage]
        if hits:
            bad[str(path.relative_to(PKG))] = sorted(hits)
    assert not bad, f"{stage}/ imports stages above it: {bad}"


def test_shared_modules_import_no_stage() -> None:
    shared = {"errors", "io", "folders"}  # the shared modules may use each other
    for name in ("errors.py", "io.py", "folders.py", "__init__.py"):
        assert not _imported_stages(PKG / name) - shared, name


def _is_pytest_mark(decorator: ast.expr) -> bool:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return isinstance(node, ast.Name) and [node.id, *reversed(parts)][:2] == ["pytest", "mark"]


def test_pytest_marks_sit_on_tests() -> None:
    """A mark (``slow``, ``realdata``, ``skipif``...) on a helper does nothing: the test that
    calls the helper runs unmarked (``-m "not slow"`` ran a slow test that way)."""
    tests = Path(__file__).resolve().parent
    bad = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not node.name.startswith("test")
                    and any(_is_pytest_mark(d) for d in node.decorator_list)):
                bad.append(f"{path.name}:{node.lineno} {node.name}")
    assert not bad, f"pytest marks on functions that are not tests: {bad}"
