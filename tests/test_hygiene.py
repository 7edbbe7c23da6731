"""The sizes the guide asks for, enforced: small modules, short functions.

Core modules stay under 400 lines, adapters under 250, and every function under 60
lines of code (its docstring not counted), so that each piece reads in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lazyapply"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _limit(path: Path) -> int:
    return 250 if path.parent.name == "adapters" else 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= _limit(path), (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (limit {_limit(path)}); "
        "split it by concern"
    )


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(body) > 1
    ):
        first = body[1]
    return (node.end_lineno or node.lineno) - first.lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_function_length(path: Path) -> None:
    long = [
        f"{node.name} ({_code_lines(node)} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _code_lines(node) > 60
    ]
    assert not long, f"{path.relative_to(PACKAGE.parent)}: {', '.join(long)}"
