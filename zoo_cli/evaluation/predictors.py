"""Predictors: what turns one image into labels, and how a run gets the graph, the predictor and its threads.

:class:`SingleScale` runs the graph as exported; :func:`make_predictor` picks it or the multi-scale / flip /
eval-crop :class:`zoo_cli.evaluation.multiscale.MultiScalePredictor`. :func:`settings_and_predictor` chooses a
run's :class:`zoo_cli.evaluation.settings.EvalSettings` on a loaded graph (rewriting its output stride when the
settings ask) and builds the predictor; :func:`resolve_graph` is the graph file a run loads and
:func:`plan_parallelism` how many images run at once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from zoo_cli.errors import UsageError, special_file_kind
from zoo_cli.evaluation.settings import EvalOptions, EvalSettings, choose_settings
from zoo_cli.registry.scales import is_single

if TYPE_CHECKING:
    from zoo_cli.graph.runner import FrozenGraphModel
    from zoo_cli.hub.cache import Cache
    from zoo_cli.registry.types import Checkpoint


class Predictor(Protocol):
    """What turns one image into labels, and what it reports into a result.

    ``predictor(image)``: uint8 HxWx3 in, integer HxW class ids at the image's size out; safe to call from
    several threads at once (a dataset run predicts ``jobs`` images concurrently). :class:`SingleScale` and
    :class:`zoo_cli.evaluation.multiscale.MultiScalePredictor` implement it.
    """

    scales: tuple[float, ...]  # the scales whose probabilities are averaged ((1.0,): the graph as exported)
    flip: bool  # whether the left-right flipped image is averaged too
    fitted: int  # images so far that were shrunk to fit the graph's crop (and their labels scaled back)
    enlarged: int  # images so far that were larger than the eval crop and ran at a crop grown to cover them
    output_stride_rewrite: dict[str, Any] | None  # how the graph was rewritten to another output stride, if so

    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any] | None:
        """What it runs, for a result's ``multiscale`` entry; None for the graph as exported."""
        ...

    def close(self) -> None:
        """Release the sessions it owns (never the model it was given)."""
        ...


class SingleScale:
    """The graph as exported: one scale, no flip; counts images shrunk to fit the crop."""

    scales: tuple[float, ...] = (1.0,)
    flip = False
    enlarged = 0  # the graph's own crop is never grown: a larger image is shrunk to fit (``fitted``)
    output_stride_rewrite = None

    def __init__(self, model: FrozenGraphModel) -> None:
        self.model = model
        self.fitted = 0
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        prediction = self.model.predict_full(image)
        if prediction.fitted:
            with self._lock:
                self.fitted += 1
        return prediction.labels

    def describe(self) -> None:
        """Nothing beyond ``scales`` / ``flip`` / ``fitted``: the graph runs as exported."""
        return None

    def close(self) -> None:
        """Nothing to release: the model's session belongs to whoever loaded the model."""


LARGE_CROP_PIXELS = 600_000  # above ~513x1025: one image at a time (Cityscapes 1025x2049 graphs need GBs each)


def plan_parallelism(jobs: int | None, threads: int, crop: tuple[int, int] | None,
                     cpus: int | None = None) -> tuple[int, int]:
    """(jobs, intra-op threads) for a dataset run; ``jobs=None`` means choose automatically.

    Measured on a 2-CPU machine (docs/eval.md): TensorFlow's intra-op parallelism barely speeds up one
    DeepLab image, while two images at once with one thread each nearly double throughput. So by default two
    images run at once, each session thread pool getting its share of the CPUs, unless the crop is large
    (memory) or there is a single CPU. ``threads`` > 0 is always respected.
    """
    cpus = cpus or os.cpu_count() or 1
    if jobs is None:
        large = crop is not None and crop[0] * crop[1] > LARGE_CROP_PIXELS
        jobs = 1 if cpus < 2 or large else 2
    jobs = max(1, int(jobs))
    if threads <= 0 and jobs > 1:
        threads = max(1, cpus // jobs)
    return jobs, threads


def make_predictor(model: FrozenGraphModel, *, scales: Sequence[float] | None = None, flip: bool = False,
                   crop: Sequence[int] | None = None, strict: bool = False) -> Predictor:
    """The predictor for ``scales``, ``flip`` and ``crop`` (the eval crop, H x W; None: the graph's own).

    The graph as exported (:class:`SingleScale`) when that is what is asked (one scale 1.0, no flip, the
    graph's own crop); otherwise :class:`zoo_cli.evaluation.multiscale.MultiScalePredictor`, which re-targets the graph
    to every scaled crop (also at scale 1 when the eval crop is not the graph's) and averages probabilities.
    """
    scales = tuple(scales or (1.0,))
    flip = bool(flip)
    crop = tuple(crop) if crop else None
    # A graph without a baked crop runs any image as it is: an eval crop changes nothing at one scale.
    if is_single(scales, flip) and (crop is None or model.crop_size is None
                                          or crop == tuple(model.crop_size)):
        return SingleScale(model)
    from zoo_cli.evaluation.multiscale import MultiScalePredictor

    return MultiScalePredictor(model, scales=scales, flip=flip, crop=crop, strict=bool(strict))


def resolve_graph(ckpt: Checkpoint | None, cache: Cache, graph_path: Path | str | None = None) -> Path:
    """The frozen graph to run: ``graph_path`` when given (it must exist), else ``ckpt``'s installed one in
    ``cache``. UsageError when neither is given or the file is missing; CacheError (with the fixing command)
    when ``ckpt`` is not installed.
    """
    if graph_path is None:
        if ckpt is None:
            raise UsageError("name a checkpoint (see 'zoo list') or pass --graph PATH")
        return cache.frozen_graph_path(ckpt)
    if special_file_kind(graph_path):
        raise UsageError(f"--graph {graph_path} is {special_file_kind(graph_path)}, not a regular file; pass a "
                         "frozen_inference_graph.pb")
    if not Path(graph_path).is_file():
        raise UsageError(f"--graph {graph_path} does not exist")
    return Path(graph_path)


def check_graph_memory(model: FrozenGraphModel, settings: EvalSettings) -> None:
    """UsageError when the eval crop's tensors (estimated from the loaded graph's largest float tensor per
    pixel, its classes, the scales and flip) cannot fit in the memory available; before any re-targeting."""
    from zoo_cli.graph.memory import check_crop_memory, floats_per_pixel

    crop = tuple(settings.crop) if settings.crop else None
    if crop is None:
        return
    classes = int(model.num_classes or 1)
    per_pixel = floats_per_pixel(model.graph, model.crop_size) or float(classes)
    check_crop_memory(crop, per_pixel=per_pixel, num_classes=classes, scales=settings.scales,
                      flip=settings.flip)


def settings_and_predictor(model: FrozenGraphModel, ckpt: Checkpoint | None, options: EvalOptions, *,
                           as_exported: bool) -> tuple[EvalSettings, Predictor]:
    """The settings ``options`` ask of the loaded ``model`` (:func:`zoo_cli.evaluation.settings.choose_settings`;
    ``as_exported``: ``--images``' defaults) and the predictor that runs them: over the graph rewritten to the
    settings' output stride when it is not the graph's own (zoo_cli.graph.output_stride), else
    :func:`make_predictor`'s. UsageError when the eval crop cannot fit in memory."""
    from zoo_cli.evaluation.rewritten import OsRewrites

    info = model.info
    graph_os = info.encoder_output_stride or info.output_stride
    rewrites = OsRewrites(model, graph_os)
    rows = ckpt.evals if ckpt is not None else ()
    runnable = rewrites.runnable([r.output_stride for r in rows]) if rows and not as_exported \
        and options.row is None and options.output_stride is None else None
    settings = choose_settings(ckpt, options, graph_output_stride=graph_os, graph_crop=model.crop_size,
                               as_exported=as_exported, runnable_os=runnable)
    check_graph_memory(model, settings)
    if settings.output_stride and graph_os and settings.output_stride != graph_os:
        return settings, rewrites.predictor(settings)  # refuses in one line when the OS cannot be mapped
    predictor = make_predictor(model, scales=settings.scales, flip=settings.flip, crop=settings.crop)
    return settings, predictor
