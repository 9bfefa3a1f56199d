"""``zoo eval NAME --images PATH... --out DIR``: label PNGs and colour overlays of image files.

:func:`predict_checkpoint_images` is the whole job (the command only prints what it returns);
:func:`evaluate_images` the loop over any predictor, with decoding one image ahead. An output never replaces
an input (:func:`output_stems`), a label PNG is never written without its overlay (:func:`write_prediction`),
and Ctrl-C lists the pairs written (:class:`PredictionInterrupted`).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from zoo_cli.atomic import atomic_paths
from zoo_cli.constants import DATASETS
from zoo_cli.errors import DatasetError, ModelError, UsageError, special_file_kind
from zoo_cli.evaluation.classes import check_graph_classes, class_palette
from zoo_cli.evaluation.datasets import load_image
from zoo_cli.evaluation.palettes import GENERIC, Palette, generic_palette
from zoo_cli.evaluation.predictors import Predictor, resolve_graph, settings_and_predictor
from zoo_cli.evaluation.settings import EvalOptions, EvalSettings, check_run_options, progress_disable

if TYPE_CHECKING:
    from zoo_cli.hub.cache import Cache
    from zoo_cli.registry.types import Checkpoint

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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
    bar = tqdm(total=len(files), unit="img", disable=progress_disable(progress), desc="predict")
    try:
        for (path, stem), image in _prefetch(jobs, lambda job: _load_or_error(job[0])):
            if isinstance(image, DatasetError):
                if failures is None:
                    raise image
                failures.append(ImageFailure(path, str(image)))
                bar.update(1)
                continue
            before = predictor.fitted, predictor.enlarged
            labels = np.asarray(predictor(image))
            fitted, enlarged = predictor.fitted != before[0], predictor.enlarged != before[1]
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


@dataclass
class ImagePredictions:
    """What :func:`predict_checkpoint_images` wrote: one :class:`ImageResult` per image, and how it ran."""

    out_dir: Path
    palette: Palette
    settings: EvalSettings
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
                "eval_settings": self.settings.to_json(),
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


def predict_checkpoint_images(ckpt: Checkpoint | None, images: Sequence[Path | str], out_dir: Path | str,
                              cache: Cache, options: EvalOptions = EvalOptions(), *,
                              graph_path: Path | str | None = None, alpha: float = 0.5) -> ImagePredictions:
    """``zoo eval NAME --images ...``: label PNGs and overlays of ``images`` (files or directories) in ``out_dir``.

    Runs ``graph_path`` if given, else ``ckpt``'s graph installed in ``cache``. The defaults are the graph as
    exported (scale 1, no flip, its own crop); the options' ``row`` (1-based) takes scales/flip from the
    checkpoint's eval row, and their ``scales`` / ``flip`` / ``crop`` override; their ``dataset`` picks the
    palette (default: the checkpoint's); split, limit and shard do not apply. ``alpha`` is the weight of the
    class colours in the overlays. An image that cannot be decoded is skipped and listed in ``.failed`` (the
    others still run; ``.failure_error()`` is what the CLI reports with exit 7); an output never replaces an
    input (:func:`output_stems`). Imports TensorFlow.
    """
    options = check_run_options(ckpt, options)
    graph_path = resolve_graph(ckpt, cache, graph_path)
    check_out_dir(images, out_dir)  # before TensorFlow starts
    collect_images(images)  # a missing path or an empty directory fails here too
    from zoo_cli.graph.runner import FrozenGraphModel  # imports TensorFlow

    with FrozenGraphModel(graph_path, intra_op_threads=options.threads,
                          inter_op_threads=options.inter_threads) as model:
        kind = options.dataset or (ckpt.dataset if ckpt is not None and ckpt.dataset in DATASETS else None)
        if kind is not None:  # before the predictor: a multi-scale one re-targets the graph first
            check_graph_classes(kind, ckpt, model.num_classes)
        settings, predictor = settings_and_predictor(model, ckpt, options, as_exported=True)
        palette = class_palette(kind, ckpt, model.num_classes)
        notes = []
        if palette.dataset == GENERIC and palette.class_names == generic_palette(palette.num_classes).class_names:
            notes.append(f"the graph predicts {palette.num_classes} classes, which is no known dataset's count "
                         "(VOC 21, Cityscapes 19, ADE20K 151), so they are named class 0..class "
                         f"{palette.num_classes - 1} with generic colours; pass --dataset, or name a registry "
                         "entry that lists class_names")
        failed: list[ImageFailure] = []
        try:
            results = evaluate_images(images, predictor, palette, out_dir, alpha=alpha, progress=options.progress,
                                      failures=failed)
        except PredictionInterrupted as stop:
            stop.predictions = ImagePredictions(Path(out_dir), palette, settings, model.crop_size, stop.written,
                                                failed, notes)
            raise
        return ImagePredictions(Path(out_dir), palette, settings, model.crop_size, results, failed, notes)


