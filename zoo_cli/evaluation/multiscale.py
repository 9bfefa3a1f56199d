"""Multi-scale + left-right flip inference on a frozen DeepLab graph, as the reference evaluates.

The procedure is research/deeplab ``predict_labels_multi_scale`` (which the seed's multi-scale rows mean):

1. pad the image (bottom/right) to the eval crop with the mean pixel 127.5;
2. for each scale ``s``: resize the *padded* image bilinearly (align_corners=True) to
   ``int((crop - 1) * s + 1)`` per side and run the network at that crop: the frozen graph is re-targeted
   to it (:mod:`zoo_cli.graph.retarget`), its float padded-image tensor is the scaled image, and the feature-resolution logits
   (the input of the final resize feeding ArgMax) are read;
3. like the reference's ``multi_scale_logits``, the logits are first resized to the logits size of the crop
   at ``max(1, s)`` (this only matters for s < 1), then to the crop; with flips the padded, scaled image is
   also run flipped left-right and its logits flipped back;
4. softmax, averaged over all scales and flips (a running sum that covers only the image, not the padding),
   argmax.

All four steps run inside TensorFlow in ONE ``Session.run`` per image: per eval crop the predictor builds one
subgraph (uint8 image in; Pad; per scale a ``ResizeBilinear`` with align_corners=True of the padded image,
the flip as ``Reverse``; every run's network imported with its padded-image input mapped onto that tensor;
logits resizes, softmax, a running sum, ``ArgMax``), so only the labels cross back to Python. Independent
runs overlap on TensorFlow's inter-op threads, at most ``window`` at a time (control dependencies on the
running sum), which bounds the memory to that many networks' activations and probability maps.

Every run's network is imported into one ``tf.Graph`` and one reused ``Session``; the weights are imported
once and shared by all of them. A scale whose crop cannot be built is reported in ``skipped``
(or is an error with ``strict=True``); it is never dropped silently.

Longer than ~450 lines because it is one class: the plan builder, the runtime guard and the per-image path
share the predictor's graph, session, locks and caches of re-targeted graphs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from zoo_cli.constants import MEAN_PIXEL, OUTPUT_NAME
from zoo_cli.errors import ModelError, UsageError
from zoo_cli.evaluation.resize import resize_bilinear
from zoo_cli.graph.crop_pattern import analyse, analyse_dynamic
from zoo_cli.graph.geometry import scaled_crop
from zoo_cli.graph.graphdef import copy_graph_def, is_weight, node_of, strip_colocation
from zoo_cli.graph.retarget import retarget_or_none
from zoo_cli.graph.tf_import import import_tf, new_session
from zoo_cli.registry.scales import is_single

# The share of pixels on which the guard's scale-1 run may differ from the graph's own prediction: float
# rounding can flip near-ties between two classes, a misread graph differs on most pixels.
GUARD_TOLERANCE = 0.005


def _scale_dimension_tensor(tf: Any, dim: Any, scale: float) -> Any:
    """:func:`scale_dimension` of a scalar int32 tensor (float64, truncated like ``int()``)."""
    return tf.cast(tf.cast(dim - 1, tf.float64) * scale + 1.0, tf.int32)


def guard_probe(crop: tuple[int, int]) -> np.ndarray:
    """A crop-sized uint8 probe image with structure at several scales (smooth blobs plus noise), so that a
    network with any weights predicts several classes on it."""
    rng = np.random.RandomState(20240601)
    coarse = rng.rand(6, 8, 3).astype(np.float32) * 255
    image = resize_bilinear(coarse, crop) + rng.randn(crop[0], crop[1], 3).astype(np.float32) * 12
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass
class _CropNet:
    """The network at one crop, imported as exported (fed at its own input): the single-scale path."""

    crop: tuple[int, int]
    run_logits: Any  # callable(padded float image) -> feature-resolution logits
    run_labels: Any  # callable(uint8 [1,H,W,3]) -> SemanticPredictions


@dataclass
class _Branch:
    """One network run of a plan: its scale, whether it sees the flipped image, and its tensors."""

    scale: float
    flipped: bool
    crop: tuple[int, int]
    net_input: Any  # the tensor the network reads (scaled, maybe flipped, padded image)
    logits: Any  # its feature-resolution logits


@dataclass
class _Plan:
    """The whole procedure for one eval crop as one TensorFlow subgraph: uint8 HxWx3 image in, labels out."""

    crop: tuple[int, int]
    count: int  # runs averaged
    run_labels: Any  # callable(uint8 HxWx3) -> int32 HxW
    run_sum: Any  # callable(uint8 HxWx3) -> float32 HxWxC, the sum of the probability maps
    branches: list[_Branch]
    image: Any  # the uint8 image placeholder


@dataclass(frozen=True)
class SkippedScale:
    scale: float
    crop: tuple[int, int]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "crop": list(self.crop), "reason": self.reason}


class MultiScalePredictor:
    """``image (uint8 HxWx3) -> labels (HxW int32)`` by the reference multi-scale/flip procedure.

    ``source`` is a loaded :class:`zoo_cli.graph.runner.FrozenGraphModel` (its graph and session are reused), a
    GraphDef, or a path to a frozen graph. ``crop`` is the eval crop (default: the graph's own). With
    ``scales=(1.0,)`` and no flip the re-targeted graph's own ``SemanticPredictions`` is returned (the
    exported computation at the eval crop). ``window`` is how many of the network runs TensorFlow may have in
    flight at once inside the one ``Session.run`` of an image (more overlaps idle cores, each costs one
    network's activations and one probability map of memory). Safe to call from several threads; a
    :class:`zoo_cli.evaluation.predictors.Predictor`.
    """

    def __init__(self, source: Any, *, scales: Iterable[float] = (1.0,), flip: bool = False,
                 crop: tuple[int, int] | None = None, strict: bool = True, threads: int = 0,
                 inter_threads: int = 0, window: int = 2) -> None:
        tf = import_tf()
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or any(s <= 0 for s in self.scales):
            raise UsageError("scales must be a non-empty list of positive numbers")
        self.flip = bool(flip)
        self.strict = strict
        self.window = max(1, int(window))
        self.fitted = 0  # images shrunk to fit: never (the crop is re-targeted instead)
        self.enlarged = 0  # images larger than the eval crop (run at a crop grown to cover them)
        self.output_stride_rewrite: dict[str, Any] | None = None  # set by zoo_cli.evaluation.rewritten.OsRewrites
        self._owns_session = False
        if hasattr(source, "graph") and hasattr(source, "session"):
            self.graph, self.session = source.graph, source.session
            self.graph_def = self.graph.as_graph_def()
        else:
            if isinstance(source, (str, os.PathLike)):
                from zoo_cli.graph.loading import load_graph_def

                source = load_graph_def(Path(source))
            self.graph_def = source
            self.graph = tf.Graph()
            with self.graph.as_default():
                tf.compat.v1.import_graph_def(strip_colocation(copy_graph_def(source)), name="")
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=int(threads),
                                              inter_op_parallelism_threads=int(inter_threads))
            self.session = new_session(config, graph=self.graph)
            self._owns_session = True
        self.pattern = getattr(source, "crop_pattern", None)
        self.dynamic = False
        if self.pattern is None:
            try:
                self.pattern = analyse(self.graph_def)
            except ModelError as exc:
                # No crop baked in: a graph that runs any image size as it is takes the scaled images directly.
                try:
                    self.pattern = analyse_dynamic(self.graph_def)
                except ModelError:
                    raise exc from None  # neither: the crop pattern's reason is the one that says what is missing
                self.dynamic = True
        self.graph_crop = self.pattern.crop
        self.crop = tuple(crop) if crop else self.graph_crop
        self.num_classes = self.pattern.num_classes
        self._graphs: dict[Any, Any] = {}  # (crop, scale) -> re-targeted GraphDef without weights, or why not
        self._nets: dict[tuple[int, int], _CropNet | str] = {}
        self._plans: dict[Any, _Plan] = {}
        self._lock = threading.RLock()
        self._weights = {n.name for n in self.graph_def.node if is_weight(n)}
        self.skipped: list[SkippedScale] = []
        for s in self.scales if not self.dynamic else ():
            c = scaled_crop(self.crop, s)
            gd = self._graph_at(c, s)
            if isinstance(gd, str):
                self.skipped.append(SkippedScale(s, c, gd))
        if self.skipped and (strict or len(self.skipped) == len(self.scales)):
            what = "; ".join(f"scale {k.scale:g} (crop {k.crop[0]}x{k.crop[1]}): {k.reason}" for k in self.skipped)
            raise ModelError(f"cannot run {len(self.skipped)} of {len(self.scales)} scales: {what}")
        self.used_scales = tuple(s for s in self.scales if s not in {k.scale for k in self.skipped})
        self.single = is_single(self.used_scales, self.flip)
        self.guard: dict[str, Any] | None = None
        if self.dynamic:
            if not self.single:
                self._plan(None)
                self.guard = self._guard()
        elif self.single:
            self._require(self.crop, 1.0)
        else:
            self._plan(self.crop)  # imported now rather than in the first call
            self.guard = self._guard()

    # -- the runtime guard

    def _guard(self) -> dict[str, Any]:
        """Refuse a graph whose re-targeted runs would be wrong: the scale-1, unflipped run, built as every run
        of the plan is (fed at the padded-image tensor, logits resized to the crop), must give the graph's own
        ``SemanticPredictions`` on a probe image at the graph's crop. A misread feed point (e.g. the image
        minus the mean) or a misread logits tensor shows up here, once per graph load, not as a wrong mIOU."""
        import time

        started = time.perf_counter()
        p = self.pattern
        crop = self.graph_crop or (97, 129)
        probe = guard_probe(crop)
        own = (self._own_labels if self.dynamic else self._require(crop, 1.0).run_labels)(probe[None])[0]
        padded = probe.astype(np.float32)[None]
        plan = self._plans.get(None if self.dynamic else crop)
        branch = next((b for b in plan.branches if b.scale == 1.0 and not b.flipped), None) if plan else None
        if branch is not None:  # the plan's own run at scale 1
            fed = padded if branch.net_input.shape.rank == 4 else padded[0]
            logits = self.session.run(branch.logits, {branch.net_input: fed})
        else:  # scale 1 is not among the scales, or the eval crop is another: the graph fed the same way
            logits = self._net(crop).run_logits(padded if p.padded_rank == 4 else padded[0])
        logits = np.asarray(logits)[0]
        target = logits.shape[:2] if self.dynamic else p.logits_size_at(crop, 1.0)
        if logits.shape[:2] != target:
            logits = resize_bilinear(logits, target)
        mine = np.argmax(resize_bilinear(logits, crop), axis=2)
        differ = float(np.mean(mine != own))
        if differ > GUARD_TOLERANCE:
            raise ModelError(f"re-targeting this graph does not reproduce its own output at scale 1 "
                             f"({differ:.0%} of pixels differ); multi-scale results would be wrong, so the graph "
                             "is refused (run it with --scales 1.0 --no-flip, or report the graph)")
        return {"pixels_differ": differ, "seconds": time.perf_counter() - started}

    # -- graphs

    def _graph_at(self, crop: tuple[int, int] | None, scale: float = 1.0) -> Any:
        """The network re-targeted to ``crop`` (for the multi-scale factor ``scale``) up to its logits, without
        the weights (imports map them onto the first import), or why it cannot be built (a string). ``None``: a
        graph without a baked crop."""
        crop = None if crop is None else (int(crop[0]), int(crop[1]))
        p = self.pattern
        # Only a fixed-window image pooling depends on the scale itself (its window follows the scale).
        scale = float(scale) if getattr(p, "image_pools", ()) else 1.0
        key = (crop, scale)
        with self._lock:
            if key not in self._graphs:
                tf = import_tf()
                if crop == p.crop and scale == 1.0:
                    gd, reason = self.graph_def, None
                else:
                    gd, reason = retarget_or_none(self.graph_def, crop, p, scale)
                if gd is None:
                    self._graphs[key] = reason or "re-targeting failed"
                else:
                    gd = tf.compat.v1.graph_util.extract_sub_graph(gd, [node_of(p.logits), OUTPUT_NAME])
                    keep = [n for n in gd.node if n.name not in self._weights]
                    del gd.node[:]
                    gd.node.extend(keep)
                    self._graphs[key] = strip_colocation(gd)
            return self._graphs[key]

    def _weight_map(self, graph_def: Any) -> dict[str, Any]:
        get = self.graph.get_tensor_by_name
        names = {node_of(ref) for n in graph_def.node for ref in n.input} & self._weights
        return {f"{name}:0": get(f"{name}:0") for name in names}

    def _net(self, crop: tuple[int, int]) -> _CropNet | str:
        """The network at ``crop`` as exported (uint8 image in, its own labels out; or fed at its padded
        image for the logits), imported once; or why it cannot be built."""
        return self._cached(self._nets, (int(crop[0]), int(crop[1])), self._import_net)

    def _import_net(self, crop: tuple[int, int]) -> _CropNet | str:
        tf = import_tf()
        p = self.pattern
        prefix = ""
        if crop != p.crop:
            gd = self._graph_at(crop)
            if isinstance(gd, str):
                return gd
            prefix = f"zoo_crop_{crop[0]}x{crop[1]}/"
            with self.graph.as_default():
                tf.compat.v1.import_graph_def(gd, name=prefix[:-1], input_map=self._weight_map(gd))
        get = self.graph.get_tensor_by_name
        feed, logits = get(prefix + p.padded_image), get(prefix + p.logits)
        image, labels = get(prefix + p.input_tensor), get(prefix + OUTPUT_NAME + ":0")
        make = self.session.make_callable
        return _CropNet(crop, make(logits, feed_list=[feed]), make(labels, feed_list=[image]))

    def _plan(self, crop: tuple[int, int] | None) -> _Plan:
        """The whole procedure at eval crop ``crop`` as one subgraph (built once per crop)."""
        return self._cached(self._plans, None if crop is None else (int(crop[0]), int(crop[1])), self._build_plan)

    def _cached(self, cache: dict, crop: tuple[int, int], build: Any) -> Any:
        """``cache[crop]``, built once under the lock (images may be predicted from several threads)."""
        value = cache.get(crop)
        if value is not None:
            return value
        with self._lock:
            if crop not in cache:
                cache[crop] = build(crop)
            return cache[crop]

    def _build_plan(self, crop: tuple[int, int] | None) -> _Plan:
        # Everything image-sized stays inside TensorFlow: padding, the scaled images (ResizeBilinear with
        # align_corners=True of the padded image, as the reference), the flips (Reverse), every network run
        # (each crop's network imported with its padded-image input mapped onto these tensors), the logits
        # resizes, the softmax, the running sum and the argmax. One Session.run per image; TensorFlow overlaps
        # independent runs with its inter-op threads, up to `window` at a time. A graph without a baked crop
        # (``crop`` None) gets one plan for every crop: the crop is fed with the image.
        tf = import_tf()
        tf1 = tf.compat.v1
        p = self.pattern
        dynamic = crop is None
        scope = "zoo_multiscale_dynamic" if dynamic else f"zoo_multiscale_{crop[0]}x{crop[1]}"
        branches: list[_Branch] = []
        with self.graph.as_default():
            with tf1.name_scope(scope):
                image = tf1.placeholder(tf.uint8, [None, None, 3], name="image")
                shape = tf.shape(image)
                h, w = shape[0], shape[1]
                if dynamic:
                    crop_in = tf1.placeholder(tf.int32, [2], name="crop")
                    ch, cw = crop_in[0], crop_in[1]
                else:
                    crop_in = None
                    ch, cw = crop
                # The reference pads x - 127.5 with zeros and adds 127.5 back: for uint8 pixels exactly the
                # values of padding with 127.5.
                padded = tf.pad(tf.cast(image, tf.float32), [[0, ch - h], [0, cw - w], [0, 0]],
                                constant_values=MEAN_PIXEL)
                padded = tf.reshape(padded, tf.stack([1, ch, cw, 3]) if dynamic else [1, ch, cw, 3])
                # The top-left h x w of the align_corners resize of the logits to the eval crop, computed
                # directly (CropAndResize samples box[0] + i * (box[2] - box[0]) / (h - 1) in units of
                # (size - 1)): no crop-sized intermediate, which matters at Cityscapes size.
                ratio = [tf.cast(tf.cast(d - 1, tf.float64) / tf.cast(tf.maximum(1, c - 1), tf.float64), tf.float32)
                         for d, c in ((h, ch), (w, cw))]
                box = tf.stack([0.0, 0.0, ratio[0], ratio[1]])[None]
                size = tf.stack([h, w])
            acc = None
            sums: list[Any] = []
            for s in self.used_scales:
                if dynamic:
                    c, gd, target = None, self._graph_at(None), None
                else:
                    c = scaled_crop(crop, s)
                    gd = self._graph_at(c, s)
                    if isinstance(gd, str):
                        raise ModelError(f"scale {s:g} needs crop {c[0]}x{c[1]}, which cannot be built: {gd}")
                    target = p.logits_size_at(crop, max(1.0, s))
                weights = self._weight_map(gd)
                scaled = None
                for flipped in (False, True) if self.flip else (False,):
                    k = len(branches)
                    # A run starts once the sum has taken the run `window` places before it: at most `window`
                    # networks' activations and probability maps are alive at once, not all of them.
                    gate = [sums[k - self.window].op] if k >= self.window else []
                    with tf1.name_scope(f"{scope}/run{k}"), tf.control_dependencies(gate):
                        if flipped:
                            x = tf.reverse(scaled, [2])
                        elif s == 1.0:
                            x = scaled = tf.identity(padded)
                        else:
                            new_size = ([_scale_dimension_tensor(tf, ch, s), _scale_dimension_tensor(tf, cw, s)]
                                        if dynamic else list(c))
                            x = scaled = tf.raw_ops.ResizeBilinear(images=padded, size=new_size, align_corners=True)
                    if dynamic:
                        # The graph reads its float image; its uint8 input only lends shapes, if anything.
                        net_in = x if p.float_rank == 4 else x[0]
                        feeds = {p.float_input: net_in, p.input_tensor: tf.zeros(tf.shape(x), tf.uint8)}
                    else:
                        net_in = x if p.padded_rank == 4 else x[0]
                        feeds = {p.padded_image: net_in}
                    [logits] = tf1.import_graph_def(gd, name=f"{scope}_net{k}", return_elements=[p.logits],
                                                    input_map={**weights, **feeds})
                    with tf1.name_scope(f"{scope}/run{k}/"):
                        y = tf.reverse(logits, [2]) if flipped else logits
                        if target is not None and y.shape[1:3].as_list() != list(target):
                            # s < 1: to the logits size at scale 1 first, as multi_scale_logits does
                            y = tf.raw_ops.ResizeBilinear(images=y, size=list(target), align_corners=True)
                        y = tf.image.crop_and_resize(y, box, [0], size)
                        prob = tf.nn.softmax(y)[0]
                        acc = prob if acc is None else acc + prob
                    sums.append(acc)
                    branches.append(_Branch(s, flipped, c, net_in, logits))
            with tf1.name_scope(f"{scope}/"):
                labels = tf.argmax(acc, axis=2, output_type=tf.int32)
        make = self.session.make_callable
        feeds = [image, crop_in] if dynamic else [image]
        return _Plan(crop, len(branches), make(labels, feed_list=feeds), make(acc, feed_list=feeds),
                     branches, image)

    # -- prediction

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.predict(image)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Labels (HxW int32) of one uint8 HxWx3 image."""
        image, crop = self._check(image)
        if self.single:
            run = self._own_labels if self.dynamic else self._require(crop, 1.0).run_labels
            return self._call(run, image[None], crop)[0].astype(np.int32, copy=False)
        if self.dynamic:
            return self._call(self._plan(None).run_labels, image, crop, np.asarray(crop, np.int32))
        return self._call(self._plan(crop).run_labels, image, crop)

    def predict_probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (HxWxC float32) averaged over scales and flips, at the image's size."""
        image, crop = self._check(image)
        if self.dynamic:
            plan = self._plan(None)
            total = self._call(plan.run_sum, image, crop, np.asarray(crop, np.int32))
        else:
            plan = self._plan(crop)
            total = self._call(plan.run_sum, image, crop)
        return np.divide(total, np.float32(plan.count), dtype=np.float32)

    def _own_labels(self, batch: np.ndarray) -> np.ndarray:
        """The graph's own SemanticPredictions (a graph without a crop runs any size as it is)."""
        get = self.graph.get_tensor_by_name
        return self.session.run(get(OUTPUT_NAME + ":0"), {get(self.pattern.input_tensor): batch})

    def _check(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ModelError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} of shape {image.shape}")
        h, w = image.shape[:2]
        crop = self.crop
        if crop is None:  # a graph without a baked crop and no eval crop: the image is its own crop
            return image, (h, w)
        if h > crop[0] or w > crop[1]:
            # The reference would fail; run at a crop grown to cover the image instead (and count it).
            crop = (max(h, crop[0]), max(w, crop[1]))
            with self._lock:
                self.enlarged += 1
        return image, crop

    def _require(self, crop: tuple[int, int], scale: float) -> _CropNet:
        net = self._net(crop)
        if isinstance(net, str):
            raise ModelError(f"scale {scale:g} needs crop {crop[0]}x{crop[1]}, which cannot be built: {net}")
        return net

    def _call(self, fn: Any, batch: np.ndarray, crop: tuple[int, int], *more: np.ndarray) -> np.ndarray:
        tf = import_tf()
        try:
            return fn(batch, *more)
        except tf.errors.OpError as exc:
            from zoo_cli.graph.tf_errors import tf_model_error

            raise tf_model_error(exc, f"the graph re-targeted to {crop[0]}x{crop[1]} failed") from None
    # -- description

    def describe(self) -> dict[str, Any]:
        """What this predictor does, for eval output."""
        return {
            "scales": list(self.scales),
            "scales_used": list(self.used_scales),
            "skipped_scales": [k.to_json() for k in self.skipped],
            "flip": self.flip,
            "eval_crop": list(self.crop) if self.crop else None,
            "graph_crop": list(self.graph_crop) if self.graph_crop else None,
            "retargeted": not self.dynamic and (self.crop != self.graph_crop
                                                or any(s != 1.0 for s in self.used_scales)),
            "dynamic_graph": self.dynamic,
            "logits_stride": None if self.dynamic else list(self.pattern.logits_stride),
            "enlarged_images": self.enlarged,
            "guard": self.guard,
        }

    def close(self) -> None:
        """Close the session it opened for a GraphDef or a path (a loaded model's session stays open)."""
        if self._owns_session and self.session is not None:
            self.session.close()
            self.session = None
