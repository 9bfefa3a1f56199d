"""The package layout says how data flows (registry -> hub -> graph -> evaluation -> bench -> cluster -> cli),
and keeps saying it: no module imports from a later layer, and no module grows past ~450 lines unless its
docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "zoo_cli"
# Shared foundations first; each subpackage may import only from its own layer and earlier ones.
LAYERS = {
    "constants": 0, "errors": 0, "units": 0, "urls": 1, "config": 1, "atomic": 1,
    "registry": 2, "hub": 3, "graph": 4, "evaluation": 5, "bench": 6, "cluster": 7, "demo_run": 8,
    "cli": 9, "api": 9, "__main__": 10, "__init__": 0,
}
MAX_LINES = 450


def _layer(dotted: str) -> int:
    return LAYERS[dotted.split(".")[1]]


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "demo" not in p.relative_to(PACKAGE).parts[:-1]]


def test_no_module_imports_from_a_later_layer():
    wrong = []
    for path in _modules():
        own = "zoo_cli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if own == "zoo_cli.api":
            continue  # the facade names every layer (and imports them only when a name is used)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zoo_cli."):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("zoo_cli.")]
            else:
                continue
            wrong += [f"{own}:{node.lineno} imports {t}" for t in targets if _layer(t) > _layer(own)]
    assert not wrong, "\n".join(wrong)


def test_every_layer_is_known():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS"


def test_long_modules_say_why():
    long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "lines" not in doc:
                long.append(f"{path.relative_to(PACKAGE)}: {lines} lines and no reason in its docstring")
    assert not long, "\n".join(long)
