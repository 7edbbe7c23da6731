"""What a code block of the README or the docs imports (their tests skip a block
whose libraries are not installed)."""

from __future__ import annotations

import ast


def top_level_imports(source: str) -> set[str]:
    """The top-level package of every absolute import in ``source``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names
