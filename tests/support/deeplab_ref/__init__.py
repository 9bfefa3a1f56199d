"""Faithful reference-export fixtures: frozen graphs built op by op like research/deeplab's export_model.py
for every architecture family of the zoo, with deterministic random weights.

    from tests.support.deeplab_ref import ExportConfig, export_graph, FAMILIES, FULL_WIDTH
    graph_def = export_graph(ExportConfig("mobilenet_v2", depth_multiplier=0.5, output_stride=16))

``FAMILIES`` maps a zoo family to a small test config; ``FULL_WIDTH`` maps a seed row to
``(config, input size (H, W), seed Multiply-Adds in billions or None, seed row)``. Both are collected from
every backbone module of the package that can be imported (mobilenet_v2, xception, mobilenet_v3).

Exports are built without variables (:class:`FrozenVariables` makes each one the Const + '/read' Identity
that freezing leaves) and memoised per process; every module uses the one batch norm of ``layers``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .export import ExportConfig, FrozenVariables, build_export_graph, export_graph, frozen_weights, variable_value

_BACKBONE_MODULES = ("mobilenet_v2", "xception", "mobilenet_v3")


def _collect(attribute: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in _BACKBONE_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # a module that exists but is broken must fail loudly
            continue
        merged.update(getattr(module, attribute, {}))
    return merged


FAMILIES: dict[str, ExportConfig] = _collect("FAMILIES")
FULL_WIDTH: dict[str, tuple[ExportConfig, tuple[int, int], float | None, str]] = _collect("FULL_WIDTH")

__all__ = ["ExportConfig", "FAMILIES", "FULL_WIDTH", "FrozenVariables", "build_export_graph", "export_graph",
           "frozen_weights", "variable_value"]
