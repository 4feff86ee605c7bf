"""Imports sit at the top of a module, where a reader sees its dependencies; an import inside a
function says why it is there (a package that takes seconds to load, an optional format reader,
a Ray-worker-only module), in a comment on its line, on the line above, or in the module's
`# Imported where used:` line that names it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shg_io", "shg_model", "dataprep", "pipelines")
WHERE_USED = re.compile(r"^# Imported where used: (.+)$")


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _function_imports(tree: ast.Module):
    """(import node) for every import statement inside a function or method, at any depth."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [("." * node.level) + (node.module or "")]
    return [alias.name for alias in node.names]


def _named_in(declared: str, module: str) -> bool:
    """Whether `declared` (the text of a `# Imported where used:` line) names `module` or one
    of its parent packages as a word."""
    parts = module.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    words = set(re.findall(r"[A-Za-z_][\w.]*", declared))
    return bool(prefixes & words)


def _where_used(lines: list[str]) -> list[str]:
    """The text of each `# Imported where used:` comment, its continuation lines included."""
    texts = []
    for i, line in enumerate(lines):
        if m := WHERE_USED.match(line):
            text = [m.group(1)]
            for more in lines[i + 1:]:
                if not more.startswith("#"):
                    break
                text.append(more.lstrip("# "))
            texts.append(" ".join(text))
    return texts


def unexplained_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`path:line: statement` for each function-level import that gives no reason."""
    text = path.read_text()
    lines = text.splitlines()
    declared = " ".join(_where_used(lines))
    problems = []
    for node in _function_imports(ast.parse(text)):
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if "#" in first or "#" in last or above.startswith("#"):
            continue
        if all(_named_in(declared, module) for module in _imported(node)):
            continue
        problems.append(f"{path.relative_to(root)}:{node.lineno}: {first.strip()}")
    return problems


def test_every_function_level_import_says_why():
    problems = [p for path in _sources() for p in unexplained_imports(path)]
    assert not problems, (
        "imports inside functions with no reason given; move them to the top of the module, or "
        "say why in a comment (or the module's '# Imported where used:' line):\n" + "\n".join(problems))


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    import json\n    return json\n", ["m.py:2: import json"]),
    ("def f():\n    import json  # a reason\n    return json\n", []),
    ("def f():\n    # a reason\n    import json\n    return json\n", []),
    ("# Imported where used: json (a reason)\ndef f():\n    import json\n    return json\n", []),
    ("# Imported where used: mlflow (a reason)\ndef f():\n    from mlflow.entities import Metric\n", []),
    ("# Imported where used: mlflow, (a reason\n# that goes on) and torch\ndef f():\n    import torch\n", []),
    ("# Imported where used: mlflow (a reason)\ndef f():\n    import json, mlflow\n", ["m.py:3: import json, mlflow"]),
    ("# Imported where used: pipelines.tracking.model_io (a reason)\n"
     "def f():\n    from pipelines.tracking.uris import x\n", ["m.py:3: from pipelines.tracking.uris import x"]),
    ("import json\n\nclass A:\n    def f(self):\n        import os\n", ["m.py:5: import os"]),
])
def test_the_rule_itself(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert unexplained_imports(path, tmp_path) == expected
