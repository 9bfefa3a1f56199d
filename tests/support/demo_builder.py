"""tools/build_demo_model.py imported as a module (it is a script, not part of the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build_demo_model.py"


def load_builder(module_name: str) -> Iterator[ModuleType]:
    """Yield the build script as module ``module_name``; unregister it afterwards (use as a fixture body)."""
    spec = importlib.util.spec_from_file_location(module_name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        sys.modules.pop(module_name, None)
