"""The house rules a successor relies on, checked on the source itself: no function over 80
lines, the platform package imports no system (each system builds on pipekit, never the
other way), and no circle among the modules' top-level imports."""

from __future__ import annotations

import ast
from pathlib import Path

from lab_pipelines import PIPELINES

SRC = Path(__file__).resolve().parents[2] / "src"
SYSTEMS = tuple(PIPELINES)  # the project's systems, as its pipeline registry lists them
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


def _module_name(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(name: str, is_package: bool, tree: ast.Module) -> set[str]:
    """Modules `name` imports when it is first imported: its top-level statements, not a
    function's imports nor an `if TYPE_CHECKING:` block; relative imports resolved; a name
    taken from a package counts as its submodule where there is one (checked by the caller)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if is_package else -1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return found


def _circles(trees: list[tuple[str, ast.Module]]) -> list[list[str]]:
    """Groups of modules that import one another in a circle (strongly connected)."""
    names = {_module_name(path): (path, tree) for path, tree in trees}
    graph = {
        name: sorted(
            (_top_level_imports(name, path.endswith("__init__.py"), tree) & names.keys()) - {name}
        )
        for name, (path, tree) in names.items()
    }
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(group) > 1:
                circles.append(sorted(group))

    for v in graph:
        if v not in order:
            visit(v)
    return circles


def test_no_import_circle() -> None:
    assert _circles(_trees()) == []


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
    # a circle through a relative import and a name taken from a package; a function's
    # import and a TYPE_CHECKING block make none
    made = {
        "sys/data/__init__.py": "",
        "sys/data/a.py": "from . import b\n",
        "sys/data/b.py": "from sys.data.c import f\n",
        "sys/data/c.py": "from ..data import a\nif TYPE_CHECKING:\n    from sys import d\n",
        "sys/d.py": "def g():\n    from sys.data import a\n",
        "sys/__init__.py": "",
    }
    trees = [(path, ast.parse(text)) for path, text in made.items()]
    assert _circles(trees) == [["sys.data.a", "sys.data.b", "sys.data.c"]]
