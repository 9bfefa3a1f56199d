"""Small helpers for tests that run GraphDefs built by tests.support.export (import TF lazily)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


class GraphRunner:
    """One imported GraphDef in one reused Session (tensor names without the ``import/`` prefix)."""

    def __init__(self, graph_def: Any) -> None:
        t = tf()
        self.graph = t.Graph()
        with self.graph.as_default():
            t.compat.v1.import_graph_def(graph_def, name="")
        self.session = t.compat.v1.Session(graph=self.graph)

    def run(self, fetches: Any, feeds: dict[str, np.ndarray]) -> Any:
        return self.session.run(fetches, feeds)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``SemanticPredictions`` for one HxWx3 uint8 image."""
        return self.run("SemanticPredictions:0", {"ImageTensor:0": image[None]})[0]

    def close(self) -> None:
        self.session.close()


def nodes_by_op(graph_def: Any, op: str) -> list[Any]:
    return [n for n in graph_def.node if n.op == op]


def const_value(node: Any) -> np.ndarray:
    return tf().make_ndarray(node.attr["value"].tensor)


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 image with large smooth blobs plus noise (so predictions vary across the image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fy, fx, ph = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6.28)
        img[..., c] = 127.5 + 100 * np.sin(fy * yy + ph) * np.cos(fx * xx + c)
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
