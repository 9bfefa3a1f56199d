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
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from zoo_cli.constants import MEAN_PIXEL, OUTPUT_NAME
from zoo_cli.errors import ModelError, UsageError
from zoo_cli.graph.crop_pattern import analyse, analyse_dynamic
from zoo_cli.graph.geometry import scaled_crop
from zoo_cli.graph.graphdef import copy_graph_def, is_weight, node_of, strip_colocation
from zoo_cli.graph.retarget import retarget_or_none
from zoo_cli.graph.tf_import import import_tf, new_session

MAX_SCALES = 16  # the seed's longest list has 6; more only multiplies the run time
MAX_SCALE = 4.0  # scale 4 of a 1025x2049 Cityscapes crop is already a 4097x8193 network input
MAX_SIDE = 1_000_000  # pixels a side of --crop / --input-size; the memory check refuses far smaller ones


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``--scales`` text -> a sorted tuple of floats: a list ``"0.5,0.75,1"`` or a range ``"0.5:0.25:1.75"`` /
    ``"[0.5:0.25:1.75]"`` (the seed's notation; start:step:end, end inclusive); brackets are optional for
    both forms. The one parser and validator ``zoo eval`` and ``zoo bench`` share.

    Each scale must be finite and in (0, 4], at most 16 of them, each given once (a repeat is refused rather
    than silently merged: it is most likely a typo, and both commands then agree). Bad input is a
    UsageError raised before anything is loaded; a range is counted before its values are built.
    """
    if text is None:
        return None
    shown = text if isinstance(text, str) else ",".join(str(v) for v in text)
    if not isinstance(text, str):
        try:
            values = [float(v) for v in text]
        except (TypeError, ValueError):
            raise UsageError(f"--scales {shown!r}: scales must be numbers") from None
    else:
        s = text.strip()
        if s.startswith("[") and s.endswith("]"):
            s = s[1:-1].strip()
        try:
            if "[" in s or "]" in s:
                raise ValueError
            if ":" in s:
                start, step, end = (float(p) for p in s.split(":"))
                _check_finite(shown, (start, step, end))
                if step <= 0 or end < start:
                    raise ValueError
                # floor with a tolerance: 0.5:0.25:1.75 includes 1.75 despite float rounding, never overshoots
                count = int((end - start) / step + 1e-9) + 1
                if count > MAX_SCALES:  # before building: 1:1e-9:2 would be a billion scales
                    raise UsageError(f"--scales {text!r} gives {count:,} scales; at most {MAX_SCALES} are allowed "
                                     "(the seed uses 0.5:0.25:1.75, six scales)")
                values = [round(start + i * step, 6) for i in range(count)]
            else:
                values = [float(p) for p in s.split(",") if p.strip()]
        except ValueError:
            raise UsageError(f"--scales {text!r} is not a list like 0.5,0.75,1.0 or a range start:step:end like "
                             "0.5:0.25:1.75") from None
    if not values:
        raise UsageError(f"--scales {shown!r}: give at least one scale, e.g. 1 or 0.5,0.75,1.0")
    _check_finite(shown, values)
    bad = [v for v in values if not 0 < v <= MAX_SCALE]
    if bad:
        raise UsageError(f"--scales {shown!r}: {bad[0]:g} is out of range; each scale must be above 0 and at most "
                         f"{MAX_SCALE:g}")
    if len(values) > MAX_SCALES:
        raise UsageError(f"--scales {shown!r} lists {len(values)} scales; at most {MAX_SCALES} are allowed")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"--scales {shown!r} gives scale {repeated[0]:g} more than once; list each scale once"
                         + (" (the range's step is too small to give distinct scales)" if ":" in shown else ""))
    return tuple(sorted(values))


def _check_finite(shown: str, values: Iterable[float]) -> None:
    for v in values:
        if not math.isfinite(v):
            raise UsageError(f"--scales {shown!r}: {v} is not a finite number; use scales like 0.5,0.75,1.0")


def parse_crop(text: str | Sequence[int] | None, option: str = "--crop") -> tuple[int, int] | None:
    """``"513,513"`` / ``"513x513"`` / ``"513"`` -> (H, W): the one parser of ``zoo eval --crop`` and
    ``zoo bench --input-size`` (both accept both spellings). Each side must be 1..MAX_SIDE; whether the
    tensors of a crop fit in memory is :func:`zoo_cli.memory.check_crop_memory`'s question."""
    if text is None:
        return None
    if not isinstance(text, str):
        h, w = (int(v) for v in text)
        values = [h, w]
    else:
        m = re.fullmatch(r"\s*\[?\s*(\d+)\s*(?:[xX,*]\s*(\d+))?\s*\]?\s*", text)
        values = [int(m.group(1)), int(m.group(2) or m.group(1))] if m else []
    if len(values) != 2 or min(values) < 1:
        raise UsageError(f"{option} {text!r} is not H,W or HxW with positive integers (e.g. 513,513 or 1025x2049)")
    if max(values) > MAX_SIDE:
        raise UsageError(f"{option} {text!r}: {max(values)} pixels is above the {MAX_SIDE} a side this tool "
                         "accepts; use a smaller size")
    return values[0], values[1]


# ------------------------------------------------------------------------------------------- numpy


def _axis_weights(n_in: int, n_out: int, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of the first ``keep`` of ``n_out`` align_corners=True samples."""
    if n_out > 1:
        # float32 like TensorFlow's ResizeBilinear (scale = (in - 1) / (out - 1), in = out * scale).
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
        pos = np.arange(keep, dtype=np.float32) * scale
    else:
        pos = np.zeros(keep, np.float32)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], keep: tuple[int, int] | None = None,
                    chunk: int = 128) -> np.ndarray:
    """Bilinear resize with align_corners=True of an HxWxC float32 array to ``size`` = (H', W') (numpy, the
    same values as TensorFlow's; the predictor resizes in-graph, the benchmark prepares its inputs with this);
    with ``keep`` = (h, w) only the top-left h x w of the result is computed. Works in blocks of ``chunk``
    output rows, so the only large allocation is the result (a 2049x4097x3 image is 100 MB)."""
    x = np.asarray(x, np.float32)
    kh, kw = keep or size
    if x.shape[:2] == tuple(size):
        return x[:kh, :kw]
    y0, y1, wy = _axis_weights(x.shape[0], size[0], kh)
    x0, x1, wx = _axis_weights(x.shape[1], size[1], kw)
    wx = wx[None, :, None] if x.ndim == 3 else wx[None, :]
    out = np.empty((kh, kw) + x.shape[2:], np.float32)
    for start in range(0, kh, chunk):
        stop = min(kh, start + chunk)
        top, bottom = x[y0[start:stop]], x[y1[start:stop]]
        top = top[:, x0] + (top[:, x1] - top[:, x0]) * wx  # along x first, as TensorFlow does
        bottom = bottom[:, x0] + (bottom[:, x1] - bottom[:, x0]) * wx
        w = wy[start:stop, None, None] if x.ndim == 3 else wy[start:stop, None]
        out[start:stop] = top + (bottom - top) * w
    return out


# ------------------------------------------------------------------------------------------- runner


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
    network's activations and one probability map of memory). Safe to call from several threads.
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
        self.single = self.used_scales == (1.0,) and not self.flip
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
        if self._owns_session and self.session is not None:
            self.session.close()
            self.session = None


# ------------------------------------------------------------------------------------------- eval settings


@dataclass
class EvalSettings:
    """What ``zoo eval`` runs: scales, flip and eval crop, and the registry row they come from."""

    scales: tuple[float, ...]
    flip: bool
    crop: tuple[int, int] | None
    row_index: int | None  # 1-based index into the checkpoint's eval rows
    row: Any | None
    graph_output_stride: int | None
    notes: list[str]
    source: str = ""  # where the settings come from, e.g. "eval row 2" or "the graph as exported"
    output_stride: int | None = None  # the OS the run uses (the graph is rewritten when not its own)

    def describe(self) -> str:
        """One line, e.g. ``scale 1, no flip, crop 513x513 (the graph as exported)``."""
        text = (f"{'scales' if len(self.scales) > 1 else 'scale'} {','.join(f'{s:g}' for s in self.scales)}, "
                f"{'flip' if self.flip else 'no flip'}")
        if self.crop:
            text += f", crop {self.crop[0]}x{self.crop[1]}"
        return f"{text} ({self.source})" if self.source else text

    def to_json(self) -> dict[str, Any]:
        return {
            "scales": list(self.scales), "flip": self.flip, "eval_crop": list(self.crop) if self.crop else None,
            "source": self.source,
            "row": self.row_index, "row_conditions": self.row.describe() if self.row is not None else None,
            "row_output_stride": self.row.output_stride if self.row is not None else None,
            "graph_output_stride": self.graph_output_stride,
            "output_stride": self.output_stride or self.graph_output_stride,
            "os_differs": bool(self.row is not None and (self.output_stride or self.graph_output_stride) is not None
                               and self.row.output_stride != (self.output_stride or self.graph_output_stride)),
            "notes": list(self.notes),
        }


def choose_settings(ckpt: Any | None, *, graph_output_stride: int | None, graph_crop: tuple[int, int] | None,
                    scales: Sequence[float] | None = None, flip: bool | None = None,
                    crop: tuple[int, int] | None = None, row: int | None = None,
                    as_exported: bool = False, output_stride: int | None = None,
                    runnable_os: Sequence[int] | None = None) -> EvalSettings:
    """Defaults from the checkpoint's eval row the graph can reproduce (its output stride), overridden by
    explicit ``scales`` / ``flip`` / ``crop``; ``row`` (1-based) picks another row.

    ``as_exported`` (``zoo eval --images``): unless ``row`` is given, the defaults are the graph as exported
    (scale 1, no flip, the graph's own crop; what the reference vis.py runs), not an eval row's.

    ``runnable_os``: the output strides the graph can be rewritten to (zoo_cli.graph.output_stride); the default row
    is then the first row at any of them, and the run's ``output_stride`` is the row's. ``output_stride``
    (``--output-stride``) overrides it, and the default row is then the first row at that OS. Without it only rows at the graph's own OS are default candidates.
    """
    rows = tuple(getattr(ckpt, "evals", ()) or ())
    notes: list[str] = []
    chosen = None
    index = None
    if row is not None:
        if not rows:
            raise UsageError("--row needs a registry checkpoint with reported eval rows (see 'zoo info NAME')")
        if not 1 <= row <= len(rows):
            listing = "; ".join(f"{i}: {r.describe()}" for i, r in enumerate(rows, 1))
            raise UsageError(f"--row {row} does not exist; the checkpoint's rows are {listing}")
        index, chosen = row, rows[row - 1]
    elif rows and not as_exported:
        can_run = {output_stride} if output_stride else (set(runnable_os) if runnable_os else {graph_output_stride})
        for i, r in enumerate(rows, 1):
            if graph_output_stride is not None and r.output_stride in can_run:
                index, chosen = i, r
                break
        if chosen is None:
            notes.append(f"no reported row is at the graph's output stride {graph_output_stride}; running single "
                         "scale without flip (pick a row with --row N)")
    if output_stride is not None:
        run_os = int(output_stride)
    elif chosen is not None and (runnable_os is not None or row is not None):
        run_os = chosen.output_stride  # the graph is rewritten to the row's OS (or refused)
    else:
        run_os = graph_output_stride
    if chosen is not None and run_os is not None and chosen.output_stride != run_os:
        notes.append(f"row {index} was measured at OS {chosen.output_stride} but this run is at OS "
                     f"{run_os}: the measured and reported numbers are not comparable")
    use_scales = tuple(scales) if scales else (tuple(chosen.scales) if chosen is not None else (1.0,))
    use_flip = bool(flip) if flip is not None else (bool(chosen.flip) if chosen is not None else False)
    registry_crop = getattr(ckpt, "eval_crop", None) if (chosen is not None or not as_exported) else None
    use_crop = tuple(crop) if crop else (tuple(registry_crop) if registry_crop else graph_crop)
    if chosen is not None:
        source = f"eval row {index}"
    elif as_exported:
        source = "the graph as exported"
    else:
        source = "no eval row at the graph's output stride" if rows else "no reported eval rows"
    given = [opt for opt, value in (("--scales", scales), ("--flip", flip is not None), ("--crop", crop),
                                    ("--output-stride", output_stride)) if value]
    if given:
        source += f", {'/'.join(given)} given"
    return EvalSettings(use_scales, use_flip, use_crop, index, chosen, graph_output_stride, notes, source,
                        run_os)
