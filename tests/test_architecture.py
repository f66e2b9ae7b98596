"""The house rules of cfsx/ (docs/architecture.md): packages along the data flow with no import running upward, no
import circles, modules that can be read in one sitting and functions that fit on a screen; and of benchmarks/: no
file over 800 lines, and the code the scripts share in benchmarks/harness.py alone. Each rule names the offenders, so
that a change that breaks one says where."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cfsx"
# The data flow, bottom up: a module may import from its own package and from those before it.
LAYERS = ("errors", "config", "physics", "io", "simulation", "correction", "learning", "interpretation", "app")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80  # outside the Typer commands, which only parse, call and print


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The cfsx modules a file imports, at module level or inside functions ('from cfsx.a import b' counts as
    cfsx.a.b where that is a module, else as cfsx.a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cfsx":
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "cfsx")
    return {name for name in found if name in known}


def layer(module: str) -> int | None:
    """The module's place in LAYERS; None for the package's own __init__ and __main__ (the API's face)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__main__":
        return None
    return LAYERS.index(parts[1])


def upward(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        for target in targets:
            if layer(module) is not None and layer(target) is not None and layer(target) > layer(module):
                found.append(f"{module} -> {target}")
    return sorted(found)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def long_modules(root: Path = PACKAGE) -> list[str]:
    return sorted(f"{name} ({lines} lines)" for name, path in modules(root).items()
                  if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES)  # fmt: skip


def long_functions(root: Path = PACKAGE) -> list[str]:
    found = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                command = any("command" in ast.unparse(decorator) for decorator in node.decorator_list)
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not command:
                    found.append(f"{name}.{node.name} ({length} lines)")
    return sorted(found)


def test_every_module_belongs_to_a_layer():
    strays = [name for name in modules() if name.count(".") >= 1 and name.split(".")[1] not in (*LAYERS, "__main__")]
    assert strays == [], f"modules outside the layers of docs/architecture.md: {strays}"


def test_no_import_runs_upward():
    assert upward(import_graph()) == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_modules_can_be_read_in_one_sitting():
    assert long_modules() == []


def test_functions_fit_on_a_screen():
    assert long_functions() == []


@pytest.fixture
def planted(tmp_path):
    """A copy of the rules' subject with one violation of each kind planted."""
    root = tmp_path / "cfsx"
    (root / "physics").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "__init__.py").write_text("")
    (root / "physics" / "__init__.py").write_text("")
    (root / "app" / "__init__.py").write_text("")
    (root / "physics" / "a.py").write_text("from cfsx.app import b\nfrom cfsx.physics import c\n")
    (root / "app" / "b.py").write_text("x = 1\n")
    body = "\n".join(f"    y{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (root / "physics" / "c.py").write_text(f"def long():\n{body}\n" + "z = 0\n" * MAX_MODULE_LINES +
                                          "def f():\n    from cfsx.physics import a\n")  # fmt: skip
    return root


def test_the_rules_name_planted_offenders(planted):
    graph = import_graph(planted)
    assert upward(graph) == ["cfsx.physics.a -> cfsx.app.b"]
    assert circles(graph) == [["cfsx.physics.a", "cfsx.physics.c"]]
    assert long_modules(planted) == [f"cfsx.physics.c ({MAX_FUNCTION_LINES + MAX_MODULE_LINES + 3} lines)"]
    assert long_functions(planted) == [f"cfsx.physics.c.long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_a_model_file_written_before_the_move_still_loads_and_predicts_the_same():
    """tests/data/layout-v1-hybrid.keras was trained (1 epoch, 24 samples of 16 x 16) and saved by the flat layout of
    cfsx/ (its config names the layers' module cfsx.models); its predictions were saved beside it."""
    from cfsx.learning.models import load_model, predict

    data = Path(__file__).parent / "data"
    model, card = load_model(data / "layout-v1-hybrid.keras")
    expected = np.load(data / "layout-v1-hybrid.npz")
    assert card.architecture == "hybrid" and card.cfs == 2
    np.testing.assert_allclose(predict(model, expected["images"]), expected["outputs"], rtol=1e-5, atol=1e-6)


# benchmarks/ ---------------------------------------------------------------------------------------------------------

BENCHMARKS = PACKAGE.parent / "benchmarks"
MAX_BENCHMARK_LINES = 800


def benchmark_files(root: Path = BENCHMARKS) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def long_benchmark_files(root: Path = BENCHMARKS) -> list[str]:
    return sorted(f"{path.relative_to(root)} ({lines} lines)" for path in benchmark_files(root)
                  if (lines := path.read_bytes().count(b"\n")) > MAX_BENCHMARK_LINES)  # fmt: skip


def defined_names(tree: ast.Module) -> set[str]:
    """The functions and classes a module defines anywhere, and the names it assigns at its top level."""
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name))
    return names


def harness_copies(root: Path = BENCHMARKS) -> list[str]:
    """'FILE: NAME' for every public name of harness.py that another benchmark module defines again."""
    shared = {name for name in defined_names(ast.parse((root / "harness.py").read_text())) if not name.startswith("_")}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name != "harness.py":
            copies = defined_names(ast.parse(path.read_text())) & shared
            found += [f"{path.relative_to(root)}: {name}" for name in sorted(copies)]
    return found


def test_no_benchmark_file_is_over_800_lines():
    assert long_benchmark_files() == []


def test_the_shared_benchmark_code_is_defined_in_harness_alone():
    shared = defined_names(ast.parse((BENCHMARKS / "harness.py").read_text()))
    moved = {
        "replace_block", "markdown_table", "machine_line", "best_of", "run_logged", "run_cfsx", "echo_cfsx",
        "spawn_pool", "correction_config", "file_sha256", "fmt", "pyplot", "SEED_STUDY_TARGETS", "ROOT",
    }  # fmt: skip
    assert moved <= shared
    assert harness_copies() == []
    assert not (BENCHMARKS / "report.py").exists()  # its helpers are in harness.py


def test_the_benchmark_rules_name_planted_offenders(tmp_path):
    (tmp_path / "harness.py").write_text("ROOT = 1\n\n\ndef fmt(value):\n    return str(value)\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "long.py").write_text("x = 1\n" * (MAX_BENCHMARK_LINES + 1))
    (tmp_path / "script.py").write_text("ROOT = 2\n\n\ndef main():\n    def fmt(value):\n        return value\n")
    assert long_benchmark_files(tmp_path) == [f"tools/long.py ({MAX_BENCHMARK_LINES + 1} lines)"]
    assert harness_copies(tmp_path) == ["script.py: ROOT", "script.py: fmt"]
