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
    shared = {"errors", "io", "folders", "userfiles"}  # the shared modules may use each other
    for name in ("errors.py", "io.py", "folders.py", "userfiles.py", "__init__.py"):
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


MODEL_NAMES = {"A2E", "A2B2E", "A2M2E", "aA2E", "aA2B2E", "a2e", "a2b2e", "a2m2e", "classifier"}
"""The registered model types and head kinds (robustmer.models.types)."""
NAME_EXCEPTIONS = {
    ("attacks/spec.py", "classifier"),  # the older spelling of the task "classification"
}


def test_no_module_outside_models_switches_on_a_model_kind() -> None:
    """Model types are objects of one registry (models/types.py): no module outside models/
    names one in its code (a comparison, a table, a default), so adding a type is one class and
    one register call."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        if rel.startswith("models/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and node.value in MODEL_NAMES
                    and (rel, node.value) not in NAME_EXCEPTIONS):
                bad.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not bad, f"model type or kind names outside models/: {bad}"


NAMES_FROM_DATA = {
    "EMOTIONS": {"__init__.py", "data/soundtracks.py", "data/synth/concepts.py",
                 "data/synth/dataset.py", "study/cpjku.py", "train/checkpoint.py",
                 "report/html.py"},
    "CONCEPTS": {"__init__.py", "data/soundtracks.py", "data/midlevel.py",
                 "data/synth/concepts.py", "data/synth/dataset.py"},
}
"""Where the paper's names may appear: the readers and writer of its layouts (Soundtracks,
Mid-level, the embedded dataset in their format), the import of its published logs, and the
fallbacks for runs and stores recorded before names came from the data."""


def test_target_names_come_from_the_data() -> None:
    """``EMOTIONS`` / ``CONCEPTS`` are the Soundtracks / Mid-level readers' defaults, not names
    the pipeline assumes."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.id if isinstance(node, ast.Name) else (
                node.attr if isinstance(node, ast.Attribute) else None)
            if name in NAMES_FROM_DATA and rel not in NAMES_FROM_DATA[name]:
                bad.append(f"{rel}:{node.lineno} {name}")
    assert not bad, f"paper names used outside their readers: {bad}"
