"""The package's layers hold: import-linter's contracts (pyproject.toml) are kept, no module of
`twolayer` is in an import circle, and no module or function outgrows its job."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twolayer"


def test_the_layer_contracts_are_kept():
    linter = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(linter).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([linter, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def imports_of(path: Path) -> set[str]:
    """The twolayer modules a file imports, at any depth of its body."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("twolayer"):
            for alias in node.names:  # `from twolayer.cli import run` imports the module twolayer.cli.run
                child = f"{node.module}.{alias.name}"
                found.add(child if (ROOT / (child.replace(".", "/") + ".py")).is_file() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("twolayer"))
    found.discard(module)
    return found


def test_no_module_is_in_an_import_circle():
    graph = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): imports_of(p)
             for p in PACKAGE.rglob("*.py")}
    # a package's __init__ is imported with each of its modules: edges to it are no circle of ours
    graph = {m: {i for i in deps if i in graph and not (graph.get(i) is not None and m.startswith(i + "."))}
             for m, deps in graph.items()}
    circles = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                circles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_modules_and_functions_stay_small():
    """No module over 350 lines and no function over 60 (issue 29's bounds)."""
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 350:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "\n".join(sorted(too_long))


def test_the_harness_writes_the_record_the_schema_declares_and_the_reader_requires():
    """One declaration of a benchmark's record (`twolayer.schema`): the harness writes exactly its
    fields, and every field the results reader requires is among them."""
    from types import SimpleNamespace

    from twolayer.cases import plan_cases
    from twolayer.measure.harness import record
    from twolayer.schema import CASE_FIELDS, REQUIRED_EXTRA_INFO

    (case,) = plan_cases("numpy_manual", "cpu", "forward")
    benchmark = SimpleNamespace(extra_info={}, group=None)
    record(benchmark, variant=case.variant, phase=case.phase, device=case.device, dtype=case.dtype, case=case)
    assert tuple(benchmark.extra_info) == CASE_FIELDS
    assert set(REQUIRED_EXTRA_INFO) <= set(CASE_FIELDS)
    assert benchmark.extra_info["variant"] == "numpy_manual" and benchmark.extra_info["flops"] > 0
