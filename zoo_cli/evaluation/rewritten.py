"""Evaluation at another output stride: the rewrites of one loaded graph (:class:`OsRewrites`, each built once),
and :func:`guard_rewrite`, which refuses a rewrite zoo may have misread before any number is computed with it.
The rewrite itself is :mod:`zoo_cli.graph.output_stride`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from zoo_cli.constants import OUTPUT_NAME
from zoo_cli.errors import ModelError
from zoo_cli.evaluation.multiscale import GUARD_TOLERANCE, MultiScalePredictor, guard_probe
from zoo_cli.graph.crop_pattern import CropPattern, analyse
from zoo_cli.graph.graphdef import copy_graph_def, strip_colocation
from zoo_cli.graph.output_stride import rewrite_output_stride, rewrite_with_pattern
from zoo_cli.graph.tf_import import import_tf, new_session


def guard_rewrite(original: Any, rewritten: Any, pattern: CropPattern, target_os: int) -> dict[str, Any]:
    """Refuse a rewrite zoo may have misread, once per graph load.

    What it proves: the rewritten graph is statically consistent at the graph's crop and its encoder runs at
    ``target_os`` (checked by analyse in every step), and rewriting it back to the graph's own OS reproduces
    the exported graph's own ``SemanticPredictions`` on a probe image (the mapping read every stride, rate,
    pad, pool and resize it changed, and can undo it). What it cannot prove: that the graph at
    ``target_os`` is what the reference would export there; no number inside the frozen graph states that.
    That is what the tests prove on faithful reference exports of every family.
    """
    tf = import_tf()
    started = time.perf_counter()
    back = rewrite_output_stride(rewritten, pattern.encoder_stride)
    probe = guard_probe(pattern.crop)[None]
    labels = []
    for gd in (original, back):
        g = tf.Graph()
        with g.as_default():
            tf.compat.v1.import_graph_def(strip_colocation(copy_graph_def(gd)), name="")
        with new_session(graph=g) as sess:
            labels.append(sess.run(OUTPUT_NAME + ":0", {pattern.input_tensor: probe}))
    differ = float(np.mean(labels[0] != labels[1]))
    if differ > GUARD_TOLERANCE:
        raise ModelError(f"rewriting this graph to output stride {target_os} and back does not reproduce its own "
                         f"output ({differ:.0%} of pixels differ); the graph is refused at OS {target_os} (run it "
                         f"at its own OS {pattern.encoder_stride} with --output-stride {pattern.encoder_stride})")
    return {"round_trip_pixels_differ": differ, "seconds": time.perf_counter() - started}


class OsRewrites:
    """The rewrites of one loaded graph (a :class:`zoo_cli.graph.runner.FrozenGraphModel`), each built once,
    and the guarded multi-scale predictor over one of them."""

    def __init__(self, model: Any, graph_os: int | None) -> None:
        self.model = model
        self.graph_os = graph_os
        self._done: dict[int, tuple[Any, CropPattern, float] | ModelError] = {}
        self._graph_def = None

    @property
    def graph_def(self) -> Any:
        """The loaded graph's GraphDef, read back from its session graph once."""
        if self._graph_def is None:
            self._graph_def = self.model.graph.as_graph_def()
        return self._graph_def

    def get(self, os_: int) -> tuple[Any, CropPattern, float]:
        """(rewritten GraphDef, its pattern, seconds) or the ModelError saying why not."""
        if os_ not in self._done:
            pattern = getattr(self.model, "crop_pattern", None)
            started = time.perf_counter()
            try:
                if pattern is None:
                    pattern = analyse(self.graph_def)
                gd, new = rewrite_with_pattern(self.graph_def, os_, pattern)
                self._done[os_] = (gd, new, time.perf_counter() - started)
            except ModelError as exc:
                self._done[os_] = exc
        result = self._done[os_]
        if isinstance(result, ModelError):
            raise result
        return result

    def runnable(self, strides: Any) -> list[int]:
        """Of ``strides``, those this graph runs at (its own, or rewritten)."""
        out = []
        for os_ in dict.fromkeys(strides):
            if os_ == self.graph_os:
                out.append(os_)
                continue
            try:
                self.get(os_)
                out.append(os_)
            except ModelError:
                pass
        return out

    def predictor(self, settings: Any) -> Any:
        """A MultiScalePredictor over the graph rewritten to ``settings.output_stride`` (guarded)."""
        os_ = int(settings.output_stride)
        gd, _, seconds = self.get(os_)
        pattern = getattr(self.model, "crop_pattern", None) or analyse(self.graph_def)
        guard = guard_rewrite(self.graph_def, gd, pattern, os_)
        predictor = MultiScalePredictor(gd, scales=settings.scales, flip=settings.flip, crop=settings.crop)
        predictor.output_stride_rewrite = {"graph_output_stride": self.graph_os, "output_stride": os_,
                                           "rewrite_seconds": seconds, "guard": guard}
        return predictor
