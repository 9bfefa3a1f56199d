"""zoo_cli.api is the public face: every name resolves where its table says, importing it stays light, and the
Python examples of README.md and docs/*.md import only names that exist."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo_cli import api

REPO = Path(__file__).resolve().parents[1]
DOC_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_public_name_is_defined_in_the_module_its_table_names():
    assert api.__all__, "the facade exports nothing"
    for name, module in api._EXPORTS.items():
        obj = getattr(api, name)
        assert getattr(obj, "__module__", module) == module, f"{name} is defined in {obj.__module__}, not {module}"
        assert getattr(importlib.import_module(module), name) is obj


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018


def test_importing_the_facade_and_reading_names_does_not_import_tensorflow():
    code = ("import sys; import zoo_cli.api as api\n"
            "for name in api.__all__: getattr(api, name)\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_python_examples_in_the_docs_import_names_that_exist(page):
    problems = []
    for line, block in _python_blocks(page):
        tree = ast.parse(block, filename=f"{page.name}:{line}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zoo_cli"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            problems.append(f"{page.name}:{line + node.lineno - 1}: {node.module} has no {alias.name}")
    assert not problems, "\n".join(problems)


def test_the_readme_from_python_section_uses_the_facade():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    section = section[:section.index("\n## ")]
    imports = re.findall(r"^from (zoo_cli[\w.]*) import", section, re.M)
    assert imports and set(imports) == {"zoo_cli.api"}
