"""Image and dataset evaluation on top of the frozen-graph runner.

The per-image prediction is a pluggable *predictor*: any callable ``image (uint8 HxWx3) -> labels (HxW)``,
optionally with attributes ``scales`` (tuple of floats) and ``flip`` (bool) describing what it does, and
``fitted`` (count of images shrunk to fit the graph's crop). :class:`SingleScale` is the default; a
multi-scale / flip predictor averages ``model.predict_full(image, scores=True).scores`` instead.

Dataset evaluation overlaps decoding of the next images with model time (a loader thread), optionally runs
``jobs`` predictions at once, accumulates one confusion matrix over the split, and supports sharding
(``shard=(K, N)``: every N-th image from K) whose saved matrices merge into exactly the unsharded result.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from zoo_cli.atomic import atomic_paths, write_json_atomic
from zoo_cli.constants import DATASETS
from zoo_cli.errors import DatasetError, ModelError, UsageError, special_file_kind
from zoo_cli.evaluation.datasets import Dataset, Sample, load_image
from zoo_cli.evaluation.metrics import ConfusionMatrix, LabelRangeError, MetricSummary, merge_matrices
from zoo_cli.evaluation.palettes import GENERIC, Palette, generic_palette
from zoo_cli.evaluation.settings import check_run_options, default_results_dir, parse_shard, setting_slug

Predictor = Callable[[np.ndarray], np.ndarray]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CONFUSION_FILE = "confusion.npy"
METRICS_FILE = "metrics.json"


class SingleScale:
    """The graph as exported: one scale, no flip; counts images shrunk to fit the crop."""

    scales: tuple[float, ...] = (1.0,)
    flip = False

    def __init__(self, model: Any) -> None:
        self.model = model
        self.fitted = 0
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        prediction = self.model.predict_full(image)
        if prediction.fitted:
            with self._lock:
                self.fitted += 1
        return prediction.labels


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


def make_predictor(model: Any, **options: Any) -> Predictor:
    """The predictor for the evaluation options: ``scales``, ``flip``, ``crop`` (eval crop, H x W).

    The graph as exported (:class:`SingleScale`) when that is what is asked (one scale 1.0, no flip, the
    graph's own crop); otherwise :class:`zoo_cli.evaluation.multiscale.MultiScalePredictor`, which re-targets the graph
    to every scaled crop (also at scale 1 when the eval crop is not the graph's) and averages probabilities.
    """
    scales = tuple(options.get("scales") or (1.0,))
    flip = bool(options.get("flip"))
    crop = tuple(options["crop"]) if options.get("crop") else None
    # A graph without a baked crop runs any image as it is: an eval crop changes nothing at one scale.
    if scales == (1.0,) and not flip and (crop is None or model.crop_size is None
                                          or crop == tuple(model.crop_size)):
        return SingleScale(model)
    from zoo_cli.evaluation.multiscale import MultiScalePredictor

    return MultiScalePredictor(model, scales=scales, flip=flip, crop=crop, strict=bool(options.get("strict")))


# ------------------------------------------------------------------------------------------- classes


def checkpoint_classes(ckpt: Any | None, dataset: str | None) -> int | None:
    """Classes to score on ``dataset``: the registry's ``num_classes`` when the checkpoint was trained on that
    dataset's layout (the demo: 4 classes in the VOC layout), else the dataset's own count."""
    if ckpt is not None and getattr(ckpt, "num_classes", None) and getattr(ckpt, "dataset", None) == dataset:
        return int(ckpt.num_classes)
    return DATASETS[dataset].num_classes if dataset in DATASETS else None


def open_eval_dataset(data_dir: Path | str, ckpt: Any | None = None, *, kind: str | None = None,
                      split: str = "val", graph_crop: tuple[int, int] | None = None) -> Dataset:
    """The ``split`` of ``data_dir`` prepared the way the reference evaluates ``ckpt``.

    The layout is ``kind``, else the checkpoint's dataset, else detected. ADE20K images are resized so their
    longer side is the model's input size (registry ``input_size``, else ``eval_crop``, else ``graph_crop``).
    Opening lists and checks every file, so a bad ``--data-dir`` fails before a model is loaded.
    """
    from zoo_cli.evaluation.datasets import open_dataset

    if kind is None and ckpt is not None and ckpt.dataset != "imagenet":
        kind = ckpt.dataset
    dataset = open_dataset(data_dir, kind, split)
    if dataset.kind == "ade20k":
        size = (ckpt.input_size or ckpt.eval_crop) if ckpt is not None else None
        size = size or graph_crop
        dataset.long_side = max(size) if size else None
    return dataset


def check_graph_classes(kind: str, ckpt: Any | None, graph_classes: int | None) -> int:
    """The classes ``ckpt`` must predict on dataset ``kind`` (:func:`checkpoint_classes`); UsageError when the
    graph predicts another count. Called right after the model loads, before any graph is re-targeted."""
    num_classes = checkpoint_classes(ckpt, kind) or DATASETS[kind].num_classes
    if graph_classes is not None and graph_classes != num_classes:
        if ckpt is not None and ckpt.num_classes == num_classes:
            raise UsageError(f"the graph predicts {graph_classes} classes but the registry entry {ckpt.name} "
                             f"says num_classes {ckpt.num_classes}; fix the registry entry or pass the right --graph")
        raise UsageError(f"the graph predicts {graph_classes} classes but {kind} has "
                         f"{DATASETS[kind].num_classes}; pass the --dataset the checkpoint was trained on")
    return num_classes


def scored_ignore_label(dataset: Dataset, ckpt: Any | None) -> int:
    """The label id left out of the scores: the registry's ``ignore_label`` when the checkpoint was trained on
    this dataset's layout (it says how its label files mark unlabelled pixels), else the layout's own
    (255 VOC/Cityscapes, 0 ADE20K)."""
    if ckpt is not None and getattr(ckpt, "ignore_label", None) is not None and \
            getattr(ckpt, "dataset", None) == dataset.kind:
        return int(ckpt.ignore_label)
    return dataset.ignore_label


def scored_classes(dataset: Dataset, ckpt: Any | None, graph_classes: int | None) -> int:
    """Size of the confusion matrix for ``ckpt`` on ``dataset``; UsageError when the graph cannot fit it."""
    return check_graph_classes(dataset.kind, ckpt, graph_classes)


def class_palette(dataset: str | None, ckpt: Any | None = None, num_classes: int | None = None) -> Palette:
    """Colours of the dataset (or guessed from ``num_classes``: :func:`zoo_cli.evaluation.palettes.palette_for_classes`,
    ``class 0..N-1`` for counts no dataset has) with the checkpoint's ``class_names`` when the registry sets
    them (e.g. the demo's background/circle/square/triangle), else the dataset's names."""
    from zoo_cli.evaluation.palettes import get_palette, palette_for_classes

    base = get_palette(dataset) if dataset else palette_for_classes(num_classes or 21)
    names = getattr(ckpt, "class_names", None) if ckpt is not None else None
    if not names or (dataset and getattr(ckpt, "dataset", None) != dataset):
        return base
    return Palette(base.dataset, tuple(names), base.colors, base.ignore_label)


# ------------------------------------------------------------------------------------------- images


def collect_images(paths: Iterable[Path | str]) -> list[Path]:
    """Image files named directly or found (non-recursively, sorted) in the given directories."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DatasetError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif special_file_kind(path):
            raise DatasetError(f"{path} is {special_file_kind(path)}, not a regular file; pass image files or "
                               "directories to --images")
        else:
            raise DatasetError(f"{path} does not exist; pass image files or directories to --images")
    return out


def check_out_dir(paths: Iterable[Path | str], out_dir: Path | str) -> None:
    """UsageError when ``out_dir`` is one of the directories in ``paths``: its label PNGs and overlays would be
    read back as inputs by the next run over that directory (which grows every run). A folder inside it is
    fine: directories are read non-recursively."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for item in paths:
        path = Path(item)
        if path.is_dir() and os.path.samefile(path, out_dir):
            raise UsageError(f"--out {out_dir} is also an --images directory, so the next run would predict on "
                             f"this run's outputs; pass a separate --out (e.g. --out {path / 'predictions'})")


@dataclass
class ImageResult:
    """Where one image's outputs went."""

    image: Path
    labels_png: Path
    overlay_png: Path
    size: tuple[int, int]
    classes: dict[str, int]  # class name -> pixel count, most frequent first
    fitted: bool = False  # shrunk to fit the graph's crop (the plain runner)
    enlarged: bool = False  # ran at a crop grown to cover it (the multi-scale/flip/--crop runner)

    def to_json(self) -> dict[str, Any]:
        return {"image": str(self.image), "labels": str(self.labels_png), "overlay": str(self.overlay_png),
                "height": self.size[0], "width": self.size[1], "classes": self.classes,
                "shrunk_to_fit": self.fitted, "crop_enlarged": self.enlarged}


def write_prediction(image: np.ndarray, labels: np.ndarray, palette: Palette, out_dir: Path, stem: str,
                     alpha: float = 0.5) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (palette-indexed, pixel value = class id) and ``<stem>_overlay.png``, as a pair.

    Both are encoded to hidden temporaries first, then renamed into place; an error or Ctrl-C before the
    second rename removes the pair (the new file and any older partner under the other name), so ``out_dir``
    never holds a label PNG without its overlay (or the reverse) and never a half-written file.
    """
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        raise ModelError(f"predicted class ids {labels.min()}..{labels.max()} do not fit an 8-bit label PNG")
    label_img = Image.fromarray(labels.astype(np.uint8), mode="P")
    label_img.putpalette(palette.png_palette())
    labels_png = out_dir / f"{stem}.png"
    overlay_png = out_dir / f"{stem}_overlay.png"
    with atomic_paths((labels_png, overlay_png), suffix=".png") as (tmp_labels, tmp_overlay):
        label_img.save(tmp_labels, format="PNG")
        Image.fromarray(palette.overlay(image, labels, alpha)).save(tmp_overlay, format="PNG")
    return labels_png, overlay_png


def output_stems(files: Sequence[Path], out_dir: Path | str) -> list[str]:
    """The output stem of each input: ``<stem>`` for ``<stem>.png`` + ``<stem>_overlay.png`` in ``out_dir``.

    Every input path counts as taken, so an output never replaces an input (``--images gray.png --out .``
    writes ``gray-2.png``), and two inputs never share an output (``a/x.jpg``, ``b/x.jpg`` → ``x``, ``x-2``).
    Other files already in ``out_dir`` (e.g. a previous run's outputs) are replaced.
    """
    out_dir = Path(out_dir)
    taken: set[str] = set()
    inodes: set[tuple[int, int]] = set()
    for path in files:
        taken.add(os.path.normcase(str(Path(path).resolve())))
        try:
            st = os.stat(path)
            inodes.add((st.st_dev, st.st_ino))  # the same file under another name (hard link, case)
        except OSError:
            pass

    def is_taken(candidate: Path) -> bool:
        if os.path.normcase(str(candidate.resolve())) in taken:
            return True
        try:
            st = os.stat(candidate)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in inodes

    stems = []
    for path in files:
        stem, n = Path(path).stem, 1
        while True:
            names = (out_dir / f"{stem}.png", out_dir / f"{stem}_overlay.png")
            if not any(is_taken(name) for name in names):
                break
            n += 1
            stem = f"{Path(path).stem}-{n}"
        taken.update(os.path.normcase(str(name.resolve())) for name in names)
        stems.append(stem)
    return stems


@dataclass(frozen=True)
class ImageFailure:
    """An input image that could not be decoded (and was skipped)."""

    image: Path
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"image": str(self.image), "error": self.error}


def _load_or_error(path: Path) -> np.ndarray | DatasetError:
    try:
        return load_image(path, dataset_file=False)
    except DatasetError as exc:
        return exc


class PredictionInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate_images`: carries the images whose label/overlay pairs were written (the
    unfinished image's pair is not: :func:`write_prediction` writes pairs whole or not at all)."""

    def __init__(self, written: list[ImageResult], failed: list[ImageFailure], total: int) -> None:
        super().__init__(f"interrupted after {len(written)} of {total} images")
        self.written = written
        self.failed = failed
        self.total = total
        self.predictions: ImagePredictions | None = None  # set by predict_checkpoint_images


def evaluate_images(paths: Sequence[Path | str], predictor: Predictor, palette: Palette, out_dir: Path | str,
                    *, alpha: float = 0.5, progress: bool | None = None,
                    failures: list[ImageFailure] | None = None) -> list[ImageResult]:
    """Predict each image and write its label PNG and colour overlay into ``out_dir`` (names: :func:`output_stems`).

    An image that cannot be decoded raises its DatasetError, unless a ``failures`` list is given: then it is
    skipped, recorded there, and the remaining images still run. A progress bar counts images on stderr
    (``progress`` None: only on a terminal). Ctrl-C raises :class:`PredictionInterrupted` listing the pairs
    written so far.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    check_out_dir(paths, out_dir)
    files = collect_images(paths)
    jobs = list(zip(files, output_stems(files, out_dir)))  # a list: the same file may be given twice
    results = []
    bar = tqdm(total=len(files), unit="img", disable=_disable(progress), desc="predict")
    try:
        for (path, stem), image in _prefetch(jobs, lambda job: _load_or_error(job[0])):
            if isinstance(image, DatasetError):
                if failures is None:
                    raise image
                failures.append(ImageFailure(path, str(image)))
                bar.update(1)
                continue
            before = getattr(predictor, "fitted", 0), getattr(predictor, "enlarged", 0)
            labels = np.asarray(predictor(image))
            fitted = getattr(predictor, "fitted", 0) != before[0]
            enlarged = getattr(predictor, "enlarged", 0) != before[1]
            labels_png, overlay_png = write_prediction(image, labels, palette, out_dir, stem, alpha)
            ids, counts = np.unique(labels, return_counts=True)
            order = np.argsort(-counts)
            classes = {palette.name_of(int(ids[i])): int(counts[i]) for i in order}
            results.append(ImageResult(path, labels_png, overlay_png, image.shape[:2], classes, fitted, enlarged))
            bar.update(1)
    except KeyboardInterrupt:
        raise PredictionInterrupted(results, failures if failures is not None else [], len(files)) from None
    finally:
        bar.close()
    return results


def _disable(progress: bool | None) -> bool | None:
    # None lets tqdm decide: shown on a terminal, hidden when stderr is redirected.
    return None if progress is None else not progress


def _prefetch(items: Sequence[Any], load: Callable[[Any], Any], depth: int = 2) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, load(item))`` in order while the next ``depth`` items load in a background thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-load") as pool:
        pending: deque[tuple[Any, Future]] = deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(load, item)))
            if len(pending) > depth:
                break
        while pending:
            item, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield item, fut.result()


# ------------------------------------------------------------------------------------------- datasets


@dataclass
class EvalResult:
    """The outcome of one dataset evaluation (or of merging shards)."""

    summary: MetricSummary
    num_images: int
    dataset: str
    split: str
    num_classes: int
    ignore_label: int
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    checkpoint: str | None = None
    graph: str | None = None
    shard: tuple[int, int] | None = None
    seconds: float = 0.0
    fitted: int = 0
    confusion_path: Path | None = None
    metrics_path: Path | None = None
    graph_info: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "miou": self.summary.miou,
            "pixel_accuracy": self.summary.pixel_accuracy,
            "per_class_iou": self.summary.per_class_iou,
            "num_images": self.num_images,
            "scales": list(self.scales),
            "flip": self.flip,
            "checkpoint": self.checkpoint,
            "graph": self.graph,
            "dataset": self.dataset,
            "split": self.split,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "pixels": self.summary.pixels,
            "shard": list(self.shard) if self.shard else None,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
            "shrunk_to_fit": self.fitted,
            "confusion_matrix": str(self.confusion_path) if self.confusion_path else None,
            **self.extra,
        }


def select(samples: Sequence[Sample], *, limit: int | None = None,
           shard: tuple[int, int] | None = None) -> list[Sample]:
    """The samples an evaluation covers: the first ``limit`` of the split, then every N-th from K."""
    chosen = list(samples)
    if limit is not None:
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        chosen = chosen[:limit]
    if shard is not None:
        k, n = shard
        chosen = chosen[k::n]
    return chosen


def no_images_message(dataset: Dataset, limit: int | None, shard: tuple[int, int] | None) -> str:
    """Why a run has no images: an empty split, or the --limit/--shard that selected none (only those given)."""
    if not dataset.samples:
        return f"{dataset.root} has no {dataset.kind} {dataset.split} images; check --data-dir and --split"
    given = ([f"--limit {limit}"] if limit is not None else []) + \
        ([f"--shard {shard[0]}/{shard[1]}"] if shard is not None else [])
    pool = min(len(dataset.samples), limit) if limit is not None else len(dataset.samples)
    return (f"{' and '.join(given) or 'the selection'} {'select' if len(given) > 1 else 'selects'} none of the "
            f"{len(dataset.samples)} {dataset.kind} {dataset.split} images in {dataset.root}; a shard K must be "
            f"below the {pool} images it splits")


def evaluate_dataset(dataset: Dataset, predictor: Predictor, *, limit: int | None = None,
                     shard: tuple[int, int] | None = None, jobs: int = 1, progress: bool | None = None,
                     on_image: Callable[[int, ConfusionMatrix], None] | None = None,
                     num_classes: int | None = None,
                     ignore_label: int | None = None) -> tuple[ConfusionMatrix, int, float]:
    """Run ``predictor`` over a split and accumulate the confusion matrix.

    Returns (matrix, images evaluated, seconds). Decoding runs ahead in a loader thread; ``jobs`` > 1 runs
    that many predictions concurrently (Session.run is thread-safe and releases the GIL). ``num_classes``
    sizes the matrix when the checkpoint uses fewer classes than the dataset layout (default: the dataset's);
    ``ignore_label`` is the label id left unscored (default: the dataset's, see :func:`scored_ignore_label`).
    """
    from tqdm import tqdm

    samples = select(dataset.samples, limit=limit, shard=shard)
    matrix = ConfusionMatrix(num_classes or dataset.num_classes,
                             dataset.ignore_label if ignore_label is None else ignore_label)
    jobs = max(1, int(jobs))
    start = time.perf_counter()
    bar = tqdm(total=len(samples), unit="img", disable=_disable(progress), desc=f"eval {dataset.kind}",
               dynamic_ncols=True)

    def work(sample: Sample, loaded: Future) -> tuple[np.ndarray, np.ndarray]:
        image, label = loaded.result()
        return label, np.asarray(predictor(image))

    done = 0
    pending: deque[tuple[Sample, Future]] = deque()
    loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="zoo-load")
    runner = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo-run")
    it = iter(samples)

    def submit_next() -> None:
        sample = next(it, None)
        if sample is not None:
            loaded = loader.submit(dataset.load, sample)
            pending.append((sample, runner.submit(work, sample, loaded)))

    try:
        for _ in range(jobs + 2):  # images decoded ahead while the model runs
            submit_next()
        while pending:
            sample, fut = pending.popleft()
            label, pred = fut.result()
            submit_next()
            if pred.shape != label.shape:
                raise ModelError(f"prediction for {sample.image_path.name} is {pred.shape}, its label "
                                 f"{label.shape}; the predictor must return labels at the image's size")
            try:
                matrix.update(label, pred)
            except LabelRangeError as exc:
                if "predicted" in str(exc):
                    raise ModelError(f"{sample.image_path.name}: {exc}; check --dataset") from None
                raise DatasetError(f"{sample.label_path}: {exc}; is this the right --dataset?") from None
            done += 1
            bar.update(1)
            if done == len(samples) or done % 5 == 0 or done < 5:
                bar.set_postfix_str(f"mIOU {matrix.mean_iou() * 100:.2f}%", refresh=False)
            if on_image is not None:
                on_image(done, matrix)
    finally:
        # On an error or Ctrl-C, drop the queued images instead of running them before exiting.
        for _, fut in pending:
            fut.cancel()
        runner.shutdown(wait=True, cancel_futures=True)
        loader.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return matrix, done, time.perf_counter() - start


def save_result(result: EvalResult, matrix: ConfusionMatrix, out_dir: Path | str) -> EvalResult:
    """Write ``confusion.npy`` and ``metrics.json`` into ``out_dir`` (atomically) and record the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.confusion_path = matrix.save(out_dir / CONFUSION_FILE)
    result.metrics_path = out_dir / METRICS_FILE
    data = result.to_json()
    data["metrics_file_version"] = 1
    write_json_atomic(result.metrics_path, data)
    return result


def merge_results(paths: Sequence[Path | str], class_names: Sequence[str] | None = None
                  ) -> tuple[EvalResult, ConfusionMatrix, list[str]]:
    """Sum shard confusion matrices into one result; returns it, the summed matrix and warnings.

    ``paths`` are ``confusion.npy`` files or the directories holding them; the ``metrics.json`` beside each
    supplies image counts, dataset, scales and class names when present.
    """
    from zoo_cli.evaluation.palettes import get_palette

    warnings: list[str] = []
    matrices: list[ConfusionMatrix] = []
    metas: list[dict[str, Any]] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            path = path / CONFUSION_FILE
        meta_path = path.with_name(METRICS_FILE)
        meta: dict[str, Any] = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                warnings.append(f"{meta_path} is unreadable; its image count is unknown")
        else:
            warnings.append(f"no {METRICS_FILE} beside {path}; its image count is unknown")
        matrices.append(ConfusionMatrix.load(path, meta.get("ignore_label")))
        metas.append(meta)
    total = merge_matrices(matrices)
    for key in ("checkpoint", "dataset", "split", "scales", "flip"):
        values = {json.dumps(m.get(key)) for m in metas if key in m}
        if len(values) > 1:
            raise UsageError(f"the shards disagree on {key} ({', '.join(sorted(values))}); merge only shards of "
                             "one evaluation")
    shards = [tuple(m["shard"]) for m in metas if m.get("shard")]
    if shards:
        counts = {n for _, n in shards}
        if len(counts) > 1:
            raise UsageError(f"the shards were cut with different N ({sorted(counts)}); merge one run's shards")
        n = counts.pop()
        seen = [k for k, _ in shards]
        dupes = sorted({k for k in seen if seen.count(k) > 1})
        missing = sorted(set(range(n)) - set(seen))
        if dupes:
            raise UsageError(f"shard(s) {', '.join(f'{k}/{n}' for k in dupes)} given twice; each pixel would count twice")
        if missing:
            warnings.append(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing; the result covers part of the split")
    first = next((m for m in metas if m), {})
    dataset = first.get("dataset") or "unknown"
    names = class_names
    if names is None and isinstance(first.get("per_class_iou"), dict) and len(first["per_class_iou"]) == total.num_classes:
        names = list(first["per_class_iou"])
    if names is None and dataset in ("voc", "cityscapes", "ade20k"):
        names = get_palette(dataset).class_names
    result = EvalResult(
        summary=total.summary(names),
        num_images=sum(int(m.get("num_images", 0)) for m in metas),
        dataset=dataset,
        split=first.get("split") or "unknown",
        num_classes=total.num_classes,
        ignore_label=first.get("ignore_label", total.ignore_label if total.ignore_label is not None else -1),
        scales=tuple(first.get("scales") or (1.0,)),
        flip=bool(first.get("flip", False)),
        checkpoint=first.get("checkpoint"),
        graph=first.get("graph"),
        seconds=sum(float(m.get("seconds", 0.0)) for m in metas),
        fitted=sum(int(m.get("shrunk_to_fit", 0)) for m in metas),
    )
    result.extra["merged_from"] = [str(Path(p)) for p in paths]
    return result, total, warnings


def reported_rows(ckpt: Any, scales: Sequence[float], flip: bool, crop: Sequence[int] | None = None,
                  reference_crop: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The registry's reported results for a checkpoint, each with ``matches_run`` (scales, flip AND eval crop
    equal the run's) and ``crop_differs`` (scales/flip match but the run's ``crop`` is not the rows'
    ``reference_crop``: the registry's eval crop, else the graph's). ``crop=None`` compares scales/flip only."""
    rows = []
    reported_on = getattr(ckpt, "reported_on", None)  # None: the seed's numbers
    crop_differs = crop is not None and reference_crop is not None and tuple(crop) != tuple(reference_crop)
    for row in getattr(ckpt, "evals", ()):
        # Order does not matter: the scales' probabilities are averaged.
        same = sorted(row.scales) == sorted(float(s) for s in scales) and row.flip == flip
        rows.append({**row.to_json(), "conditions": row.describe() + f", {row.split}",
                     "matches_run": same and not crop_differs, "crop_differs": same and crop_differs,
                     "reported_on": reported_on})
    return rows


# ------------------------------------------------------------------------------------------- one call per job
# What ``zoo eval`` does, as functions: the command only parses options and prints what these return.


def _env_cache(cache: Any | None) -> Any:
    """``cache``, else the cache ZOO_HOME names (what ``zoo`` itself would use)."""
    if cache is not None:
        return cache
    from zoo_cli.config import Settings
    from zoo_cli.hub.cache import Cache

    return Cache(Settings.from_env().home)


def resolve_graph(ckpt: Any | None, cache: Any | None = None, graph_path: Path | str | None = None) -> Path:
    """The frozen graph to run: ``graph_path`` when given (it must exist), else ``ckpt``'s installed one.

    ``cache`` defaults to the one ZOO_HOME names. UsageError when neither is given or the file is missing;
    CacheError (with the fixing command) when ``ckpt`` is not installed.
    """
    if graph_path is None:
        if ckpt is None:
            raise UsageError("name a checkpoint (see 'zoo list') or pass --graph PATH")
        return _env_cache(cache).frozen_graph_path(ckpt)
    if special_file_kind(graph_path):
        raise UsageError(f"--graph {graph_path} is {special_file_kind(graph_path)}, not a regular file; pass a "
                         "frozen_inference_graph.pb")
    if not Path(graph_path).is_file():
        raise UsageError(f"--graph {graph_path} does not exist")
    return Path(graph_path)


def check_graph_memory(model: Any, settings: Any) -> None:
    """UsageError when the eval crop's tensors (estimated from the loaded graph's largest float tensor per
    pixel, its classes, the scales and flip) cannot fit in the memory available; before any re-targeting."""
    from zoo_cli.limits import check_crop_memory, floats_per_pixel

    crop = tuple(settings.crop) if settings.crop else None
    if crop is None:
        return
    classes = int(model.num_classes or 1)
    per_pixel = floats_per_pixel(model.graph, model.crop_size) or float(classes)
    check_crop_memory(crop, per_pixel=per_pixel, num_classes=classes, scales=settings.scales,
                      flip=settings.flip)


def _settings_and_predictor(model: Any, ckpt: Any | None, scales: str | Sequence[float] | None,
                            flip: bool | None, crop: str | Sequence[int] | None, row: int | None,
                            as_exported: bool, output_stride: int | None = None) -> tuple[Any, Predictor]:
    from zoo_cli.evaluation.settings import choose_settings, parse_crop, parse_scales
    from zoo_cli.graph.output_stride import OsRewrites

    info = model.info
    graph_os = info.encoder_output_stride or info.output_stride
    rewrites = OsRewrites(model, graph_os)
    rows = tuple(getattr(ckpt, "evals", ()) or ())
    runnable = rewrites.runnable([r.output_stride for r in rows]) if rows and not as_exported and row is None \
        and output_stride is None else None
    settings = choose_settings(ckpt, graph_output_stride=graph_os, graph_crop=model.crop_size,
                               scales=parse_scales(scales), flip=flip, crop=parse_crop(crop), row=row,
                               as_exported=as_exported, output_stride=output_stride, runnable_os=runnable)
    check_graph_memory(model, settings)
    if settings.output_stride and graph_os and settings.output_stride != graph_os:
        return settings, rewrites.predictor(settings)  # refuses in one line when the OS cannot be mapped
    predictor = make_predictor(model, scales=settings.scales, flip=settings.flip, crop=settings.crop)
    return settings, predictor


@dataclass
class ImagePredictions:
    """What :func:`predict_checkpoint_images` wrote: one :class:`ImageResult` per image, and how it ran."""

    out_dir: Path
    palette: Palette
    settings: Any  # zoo_cli.evaluation.multiscale.EvalSettings
    graph_crop: tuple[int, int] | None  # the crop of the graph as exported (images above it are shrunk)
    images: list[ImageResult] = field(default_factory=list)
    failed: list[ImageFailure] = field(default_factory=list)  # inputs that could not be decoded (skipped)
    notes: list[str] = field(default_factory=list)

    @property
    def enlarged(self) -> int:
        """Images larger than the eval crop that ran at a crop grown to cover them (multi-scale runner)."""
        return sum(r.enlarged for r in self.images)

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "palette": self.palette.dataset,
                "class_names": list(self.palette.class_names),
                "eval_settings": self.settings.to_json() if self.settings is not None else None,
                "enlarged_images": self.enlarged,
                "images": [r.to_json() for r in self.images],
                "failed": [f.to_json() for f in self.failed], "notes": list(self.notes)}

    def failure_error(self) -> DatasetError | None:
        """The error to report when some inputs could not be decoded (None when all were written)."""
        if not self.failed:
            return None
        total = len(self.failed) + len(self.images)
        return DatasetError(f"{len(self.failed)} of {total} images failed (first: {self.failed[0].error}); "
                            f"the other {len(self.images)} were written to {self.out_dir}")


def predict_checkpoint_images(ckpt: Any | None, images: Sequence[Path | str], out_dir: Path | str, *,
                              graph_path: Path | str | None = None, cache: Any | None = None,
                              dataset: str | None = None, threads: int = 0, inter_threads: int = 0,
                              scales: str | Sequence[float] | None = None, flip: bool | None = None,
                              crop: str | Sequence[int] | None = None, row: int | None = None,
                              alpha: float = 0.5, progress: bool | None = None,
                              output_stride: int | None = None) -> ImagePredictions:
    """``zoo eval NAME --images ...``: label PNGs and overlays of ``images`` (files or directories) in ``out_dir``.

    Runs ``graph_path`` if given, else ``ckpt``'s installed graph (``cache`` defaults to ZOO_HOME's). The
    defaults are the graph as exported (scale 1, no flip, its own crop); ``row`` (1-based) takes scales/flip
    from the checkpoint's eval row, and ``scales`` / ``flip`` / ``crop`` override (text as on the command line
    or numbers). ``dataset`` picks the palette (default: the checkpoint's). An image that cannot be decoded
    is skipped and listed in ``.failed`` (the others still run; ``.failure_error()`` is what the CLI reports
    with exit 7); an output never replaces an input (:func:`output_stems`). Imports TensorFlow.
    """
    scales, crop = check_run_options(ckpt, scales, crop, flip, threads=threads, inter_threads=inter_threads)
    graph_path = resolve_graph(ckpt, cache, graph_path)
    check_out_dir(images, out_dir)  # before TensorFlow starts
    collect_images(images)  # a missing path or an empty directory fails here too
    from zoo_cli.graph.model import FrozenGraphModel  # imports TensorFlow

    with FrozenGraphModel(graph_path, intra_op_threads=threads, inter_op_threads=inter_threads) as model:
        kind = dataset or (ckpt.dataset if ckpt is not None and ckpt.dataset != "imagenet" else None)
        if kind is not None:  # before the predictor: a multi-scale one re-targets the graph first
            check_graph_classes(kind, ckpt, model.num_classes)
        settings, predictor = _settings_and_predictor(model, ckpt, scales, flip, crop, row, as_exported=True,
                                                      output_stride=output_stride)
        palette = class_palette(kind, ckpt, model.num_classes)
        notes = []
        if palette.dataset == GENERIC and palette.class_names == generic_palette(palette.num_classes).class_names:
            notes.append(f"the graph predicts {palette.num_classes} classes, which is no known dataset's count "
                         "(VOC 21, Cityscapes 19, ADE20K 151), so they are named class 0..class "
                         f"{palette.num_classes - 1} with generic colours; pass --dataset, or name a registry "
                         "entry that lists class_names")
        failed: list[ImageFailure] = []
        try:
            results = evaluate_images(images, predictor, palette, out_dir, alpha=alpha, progress=progress,
                                      failures=failed)
        except PredictionInterrupted as stop:
            stop.predictions = ImagePredictions(Path(out_dir), palette, settings, model.crop_size, stop.written,
                                                failed, notes)
            raise
        return ImagePredictions(Path(out_dir), palette, settings, model.crop_size, results, failed, notes)


@dataclass
class EvalRunner:
    """A loaded graph ready to score a split: the model, the settings it runs, the predictor, the matrix size.

    What :func:`load_eval_runner` builds; the single-process run and every Ray worker build it the same way.
    """

    model: Any  # zoo_cli.graph.model.FrozenGraphModel
    settings: Any  # zoo_cli.evaluation.multiscale.EvalSettings
    predictor: Predictor
    num_classes: int
    ignore_label: int  # the label id left out of the scores (scored_ignore_label)

    def close(self) -> None:
        """Release the predictor's and the model's sessions."""
        if hasattr(self.predictor, "close"):
            self.predictor.close()
        self.model.close()


def load_eval_runner(graph_path: Path | str, ckpt: Any | None, dataset: Dataset, *, threads: int = 0,
                     inter_threads: int = 0, scales: str | Sequence[float] | None = None,
                     flip: bool | None = None, crop: str | Sequence[int] | None = None,
                     row: int | None = None, output_stride: int | None = None) -> EvalRunner:
    """Load ``graph_path`` and build the predictor ``zoo eval --data-dir`` runs on ``dataset`` (imports TensorFlow).

    The graph's class count is checked before any re-targeting; an ADE20K dataset opened without a long side
    takes the graph's crop. Options as :func:`evaluate_checkpoint`'s.
    """
    from zoo_cli.graph.model import FrozenGraphModel  # imports TensorFlow

    model = FrozenGraphModel(graph_path, intra_op_threads=threads, inter_op_threads=inter_threads)
    try:
        # Before the predictor: a multi-scale one re-targets the graph, which a wrong graph should not reach.
        num_classes = scored_classes(dataset, ckpt, model.num_classes)
        settings, predictor = _settings_and_predictor(model, ckpt, scales, flip, crop, row, as_exported=False,
                                                      output_stride=output_stride)
    except BaseException:
        model.close()
        raise
    if dataset.kind == "ade20k" and dataset.long_side is None:
        dataset.long_side = max(model.crop_size) if model.crop_size else None  # a bare graph: its own crop
    return EvalRunner(model, settings, predictor, num_classes, scored_ignore_label(dataset, ckpt))


def predictor_facts(predictor: Predictor) -> dict[str, Any]:
    """What a predictor reports into a result: scales/flip run, images shrunk to fit, its ``describe()``."""
    return {"scales": tuple(getattr(predictor, "scales", (1.0,))), "flip": bool(getattr(predictor, "flip", False)),
            "fitted": int(getattr(predictor, "fitted", 0)),
            "multiscale": predictor.describe() if hasattr(predictor, "describe") else None,
            "output_stride_rewrite": getattr(predictor, "output_stride_rewrite", None)}


def build_eval_result(matrix: ConfusionMatrix, num_images: int, seconds: float, *, dataset: Dataset,
                      ckpt: Any | None, graph_path: Path | str, shard: tuple[int, int] | None, num_classes: int,
                      info: Any, settings: Any, facts: dict[str, Any], ignore_label: int | None = None) -> EvalResult:
    """The :class:`EvalResult` of a scored split: metrics, the run's settings, the registry's reported rows.

    ``info`` is the graph's GraphInfo, ``facts`` :func:`predictor_facts` (summed over workers by a
    distributed run), so a single-process and a distributed run of the same images give the same result.
    """
    palette = class_palette(dataset.kind, ckpt)
    scales_run, flip_run = tuple(facts["scales"]), bool(facts["flip"])
    result = EvalResult(
        summary=matrix.summary(palette.class_names), num_images=num_images, dataset=dataset.kind,
        split=dataset.split, num_classes=num_classes,
        ignore_label=dataset.ignore_label if ignore_label is None else ignore_label, scales=scales_run,
        flip=flip_run, checkpoint=ckpt.name if ckpt else None, graph=str(graph_path), shard=shard,
        seconds=seconds, fitted=int(facts["fitted"]), graph_info=info.to_json())
    result.extra["graph_output_stride"] = info.encoder_output_stride or info.output_stride
    result.extra["long_side"] = dataset.long_side
    reference_crop = (ckpt.eval_crop if ckpt is not None and ckpt.eval_crop else None) or info.crop_size
    result.extra["reported"] = (reported_rows(ckpt, scales_run, flip_run, settings.crop, reference_crop)
                                if ckpt else [])
    result.extra["eval_settings"] = settings.to_json()
    run_os = settings.output_stride or settings.graph_output_stride
    for rep_row in result.extra["reported"]:
        rep_row["eval_crop"] = list(ckpt.eval_crop) if ckpt is not None and ckpt.eval_crop else None
        rep_row["os_differs_from_graph"] = run_os is not None and rep_row["output_stride"] != run_os
    if facts.get("multiscale") is not None:
        result.extra["multiscale"] = facts["multiscale"]
    if facts.get("output_stride_rewrite"):
        result.extra["output_stride_rewrite"] = facts["output_stride_rewrite"]
    result.extra["setting"] = run_setting(ckpt, info, settings, facts)
    return result


def run_setting(ckpt: Any | None, info: Any, settings: Any, facts: dict[str, Any]) -> str:
    """The :func:`setting_slug` naming a run's results folder (as :func:`build_eval_result` records it)."""
    reference_crop = (ckpt.eval_crop if ckpt is not None and ckpt.eval_crop else None) or info.crop_size
    return setting_slug(tuple(facts["scales"]), bool(facts["flip"]), settings.crop, reference_crop,
                        settings.output_stride, settings.graph_output_stride)


def evaluate_checkpoint(ckpt: Any | None, data_dir: Path | str, *, graph_path: Path | str | None = None,
                        cache: Any | None = None, dataset: str | None = None, split: str = "val",
                        limit: int | None = None, shard: tuple[int, int] | str | None = None,
                        out_dir: Path | str | None = None, save: bool = True, threads: int = 0,
                        inter_threads: int = 0, jobs: int | None = None,
                        scales: str | Sequence[float] | None = None, flip: bool | None = None,
                        crop: str | Sequence[int] | None = None, row: int | None = None,
                        progress: bool | None = None, output_stride: int | None = None) -> EvalResult:
    """``zoo eval NAME --data-dir DIR``: mIOU / pixel accuracy of a checkpoint on a dataset split.

    Runs ``graph_path`` if given, else ``ckpt``'s installed graph (``cache`` defaults to ZOO_HOME's). The
    dataset is opened (and checked) before the model loads. Scales/flip/crop default to the checkpoint's
    first eval row at the graph's output stride (``row``, 1-based, picks another; ``scales`` / ``flip`` /
    ``crop`` override, as text or numbers); ``jobs=None`` / ``threads=0`` are chosen by
    :func:`plan_parallelism`. ``shard`` is (K, N) or ``"K/N"``. The result carries the registry's reported
    rows (``extra["reported"]``, with ``matches_run`` and ``os_differs_from_graph``) and the settings used;
    with ``save`` it is written to ``out_dir`` (default :func:`default_results_dir` under the cache's
    ``results/``). Imports TensorFlow.
    """
    if isinstance(shard, str):
        shard = parse_shard(shard)
    scales, crop = check_run_options(ckpt, scales, crop, flip, threads=threads, inter_threads=inter_threads,
                                     jobs=jobs, split=split)
    graph_path = resolve_graph(ckpt, cache, graph_path)
    # Before the model: a wrong data_dir fails at once, not after TensorFlow has loaded.
    ds = open_eval_dataset(data_dir, ckpt, kind=dataset, split=split)
    if not select(ds.samples, limit=limit, shard=shard):
        raise DatasetError(no_images_message(ds, limit, shard))
    jobs, threads = plan_parallelism(jobs, threads, ckpt.eval_crop if ckpt is not None else None)
    runner = load_eval_runner(graph_path, ckpt, ds, threads=threads, inter_threads=inter_threads, scales=scales,
                              flip=flip, crop=crop, row=row, output_stride=output_stride)
    try:
        matrix, n, seconds = evaluate_dataset(ds, runner.predictor, limit=limit, shard=shard, jobs=jobs,
                                              progress=progress, num_classes=runner.num_classes,
                                              ignore_label=runner.ignore_label)
        if n == 0:
            raise DatasetError(no_images_message(ds, limit, shard))
        result = build_eval_result(matrix, n, seconds, dataset=ds, ckpt=ckpt, graph_path=graph_path, shard=shard,
                                   num_classes=runner.num_classes, ignore_label=runner.ignore_label,
                                   info=runner.model.info,
                                   settings=runner.settings, facts=predictor_facts(runner.predictor))
    finally:
        runner.close()
    if save:
        if out_dir is None:
            out_dir = default_results_dir(_env_cache(cache).results_dir, ckpt, graph_path, ds.kind, ds.split, shard,
                                          setting=result.extra["setting"])
        save_result(result, matrix, out_dir)
    return result
