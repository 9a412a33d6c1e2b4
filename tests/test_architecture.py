"""The package's shape: no import cycles, modules and functions of a readable length, private
names kept private, and every subpackage shipped by the install."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gantrans"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Still over the limits: name -> lines today. These lists may only shrink: a new long module or
# function, or a listed one grown longer, fails; one brought under the limit must leave the list.
LONG_MODULES: dict[str, int] = {}
LONG_FUNCTIONS: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement, at any depth (functions, methods, branches), except those under
    `if TYPE_CHECKING:`, which never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that module `name` (at `path`) imports: `from P import m`
    counts as importing P.m when m is a module, else as importing P."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
            continue
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            if f"{target}.{alias.name}" in known:
                out.add(f"{target}.{alias.name}")
            elif target in known:
                out.add(target)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "gantrans"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import x\n")
    (pkg / "a.py").write_text("def f():\n    from gantrans.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import gantrans.a\nx = 1\n")
    known = {"gantrans", "gantrans.a", "gantrans.sub", "gantrans.sub.b"}
    assert imported("gantrans.a", pkg / "a.py", known) == {"gantrans.sub.b"}  # in a function
    assert imported("gantrans.sub", pkg / "sub" / "__init__.py", known) == {"gantrans.sub.b"}
    assert imported("gantrans.sub.b", pkg / "sub" / "b.py", known) == {"gantrans.a"}
    graph = {"gantrans.a": {"gantrans.sub.b"}, "gantrans.sub.b": {"gantrans.a"}}
    assert find_cycle(graph) == ["gantrans.a", "gantrans.sub.b", "gantrans.a"]
    assert find_cycle({"gantrans.a": {"gantrans.sub.b"}, "gantrans.sub.b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def over_the_limit(lengths: dict[str, int], limit: int, listed: dict[str, int]) -> list[str]:
    """What breaks the limit anew (unlisted, or longer than listed), and listed names that no
    longer break it."""
    new = [f"{k}: {n} lines" for k, n in lengths.items() if n > max(limit, listed.get(k, 0))]
    stale = [f"{k} is within the limit now: remove it from the list" for k in listed
             if lengths.get(k, 0) <= limit]  # fmt: skip
    return new + stale


def test_no_module_over_the_limit():
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()
    }
    problems = over_the_limit(lengths, MAX_MODULE_LINES, LONG_MODULES)
    assert not problems, f"modules over {MAX_MODULE_LINES} lines: {problems}"


def function_lengths() -> dict[str, int]:
    """'module:Class.function' -> its lines (decorators and docstring included)."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                out[f"{prefix}{child.name}"] = child.end_lineno - start + 1
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    for name, path in modules().items():
        walk(ast.parse(path.read_text(encoding="utf-8")), f"{name}:")
    return out


def test_no_function_over_the_limit():
    problems = over_the_limit(function_lengths(), MAX_FUNCTION_LINES, LONG_FUNCTIONS)
    assert not problems, f"functions over {MAX_FUNCTION_LINES} lines: {problems}"


def test_no_private_name_imported_across_modules():
    mods = modules()
    found = []
    for name, path in mods.items():
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name} imports {alias.name} from {node.module}")
    assert not found, "private names imported across modules: " + "; ".join(found)


def test_every_subpackage_is_installed():
    """setuptools' package list is written by hand: a subpackage missing from it is missing
    from an installed (non-editable) gantrans."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"missing from pyproject.toml's packages: {packages - listed}"
