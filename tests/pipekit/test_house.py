"""The house rules a successor relies on, checked on the source itself: no function over 80
lines, and the platform package imports no system (each system builds on pipekit, never the
other way)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
SYSTEMS = ("voxelflex", "esm2pairs", "rheidae", "belka")
MAX_FUNCTION_LINES = 80


def _trees(package: str = "") -> list[tuple[str, ast.Module]]:
    """(path under src/, its syntax tree) of every module of `package` (all: "")."""
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources under {SRC / package}"
    return [(str(f.relative_to(SRC)), ast.parse(f.read_text(), str(f))) for f in files]


def _long_functions(trees: list[tuple[str, ast.Module]]) -> list[str]:
    return [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_is_over_80_lines() -> None:
    long = _long_functions(_trees())
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_platform_imports_no_system() -> None:
    found = {
        f"{path}: {name}"
        for path, tree in _trees("pipekit")
        for name in _imported(tree)
        if name.split(".")[0] in SYSTEMS
    }
    assert found == set()


def test_the_checks_see_what_they_look_for() -> None:
    # each check on a case it must catch, so that a silent pass (nothing parsed, a node type
    # missed) would show
    def function(lines: int) -> str:
        return "\n".join(["async def f():", *["    x = 1"] * (lines - 2), "    return x"])

    assert _long_functions([("made.py", ast.parse(function(80)))]) == []
    assert _long_functions([("made.py", ast.parse(function(81)))]) == ["made.py:1 f (81 lines)"]
    assert _imported(ast.parse("from voxelflex.data import packed\nimport belka.cli")) == {
        "voxelflex.data",
        "belka.cli",
    }
