"""``zoo eval NAME --data-dir DIR``: mIOU and pixel accuracy of a checkpoint on a dataset split.

:func:`evaluate_checkpoint` is the whole job (the command only prints what it returns). Underneath,
:func:`load_eval_runner` loads the graph and its predictor (as every Ray worker does too), and
:func:`evaluate_dataset` overlaps decoding of the next images with model time (a loader thread), optionally
runs ``jobs`` predictions at once and accumulates one confusion matrix over the split. Sharding
(``shard=(K, N)``: every N-th image from K, :func:`select`) saves matrices that merge into exactly the
unsharded result (:func:`zoo_cli.evaluation.results.merge_results`).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from zoo_cli.errors import DatasetError, ModelError, UsageError
from zoo_cli.evaluation.classes import check_graph_classes, scored_ignore_label
from zoo_cli.evaluation.datasets import Dataset, Sample, open_eval_dataset
from zoo_cli.evaluation.metrics import ConfusionMatrix, LabelRangeError
from zoo_cli.evaluation.predictors import Predictor, plan_parallelism, resolve_graph, settings_and_predictor
from zoo_cli.evaluation.results import EvalResult, build_eval_result, predictor_facts, save_result
from zoo_cli.evaluation.settings import (
    EvalOptions,
    EvalSettings,
    check_run_options,
    default_results_dir,
    progress_disable,
)

if TYPE_CHECKING:
    from zoo_cli.graph.runner import FrozenGraphModel
    from zoo_cli.hub.cache import Cache
    from zoo_cli.registry.types import Checkpoint


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
    bar = tqdm(total=len(samples), unit="img", disable=progress_disable(progress), desc=f"eval {dataset.kind}",
               dynamic_ncols=True)

    def work(loaded: Future) -> tuple[np.ndarray, np.ndarray]:
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
            pending.append((sample, runner.submit(work, loaded)))

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


@dataclass
class EvalRunner:
    """A loaded graph ready to score a split: the model, the settings it runs, the predictor, the matrix size.

    What :func:`load_eval_runner` builds; the single-process run and every Ray worker build it the same way.
    """

    model: FrozenGraphModel
    settings: EvalSettings
    predictor: Predictor
    num_classes: int
    ignore_label: int  # the label id left out of the scores (scored_ignore_label)

    def close(self) -> None:
        """Release the predictor's and the model's sessions."""
        self.predictor.close()
        self.model.close()


def load_eval_runner(graph_path: Path | str, ckpt: Checkpoint | None, dataset: Dataset,
                     options: EvalOptions = EvalOptions()) -> EvalRunner:
    """Load ``graph_path`` and build the predictor ``zoo eval --data-dir`` runs on ``dataset`` (imports TensorFlow).

    The graph's class count is checked before any re-targeting; an ADE20K dataset opened without a long side
    takes the graph's crop. Of the ``options``, the threads and the settings (scales, flip, crop, row, output
    stride) apply here.
    """
    from zoo_cli.graph.runner import FrozenGraphModel  # imports TensorFlow

    model = FrozenGraphModel(graph_path, intra_op_threads=options.threads, inter_op_threads=options.inter_threads)
    try:
        # Before the predictor: a multi-scale one re-targets the graph, which a wrong graph should not reach.
        num_classes = check_graph_classes(dataset.kind, ckpt, model.num_classes)
        settings, predictor = settings_and_predictor(model, ckpt, options, as_exported=False)
    except BaseException:
        model.close()
        raise
    if dataset.kind == "ade20k" and dataset.long_side is None:
        dataset.long_side = max(model.crop_size) if model.crop_size else None  # a bare graph: its own crop
    return EvalRunner(model, settings, predictor, num_classes, scored_ignore_label(dataset, ckpt))


def evaluate_checkpoint(ckpt: Checkpoint | None, data_dir: Path | str, cache: Cache,
                        options: EvalOptions = EvalOptions(), *, graph_path: Path | str | None = None,
                        out_dir: Path | str | None = None, save: bool = True) -> EvalResult:
    """``zoo eval NAME --data-dir DIR``: mIOU / pixel accuracy of a checkpoint on a dataset split.

    Runs ``graph_path`` if given, else ``ckpt``'s graph installed in ``cache``. The dataset is opened (and
    checked) before the model loads. Scales/flip/crop default to the checkpoint's first eval row at the
    graph's output stride (the options' ``row``, 1-based, picks another; their ``scales`` / ``flip`` /
    ``crop`` override); ``jobs=None`` / ``threads=0`` are chosen by :func:`plan_parallelism`. The result
    carries the registry's reported rows (``extra["reported"]``, with ``matches_run`` and
    ``os_differs_from_graph``) and the settings used; with ``save`` it is written to ``out_dir`` (default
    :func:`default_results_dir` under the cache's ``results/``). Imports TensorFlow.
    """
    options = check_run_options(ckpt, options)
    limit, shard = options.limit, options.shard
    graph_path = resolve_graph(ckpt, cache, graph_path)
    # Before the model: a wrong data_dir fails at once, not after TensorFlow has loaded.
    ds = open_eval_dataset(data_dir, ckpt, kind=options.dataset, split=options.split)
    if not select(ds.samples, limit=limit, shard=shard):
        raise DatasetError(no_images_message(ds, limit, shard))
    jobs, threads = plan_parallelism(options.jobs, options.threads, ckpt.eval_crop if ckpt is not None else None)
    runner = load_eval_runner(graph_path, ckpt, ds, replace(options, jobs=jobs, threads=threads))
    try:
        matrix, n, seconds = evaluate_dataset(ds, runner.predictor, limit=limit, shard=shard, jobs=jobs,
                                              progress=options.progress, num_classes=runner.num_classes,
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
            out_dir = default_results_dir(cache.results_dir, ckpt, graph_path, ds.kind, ds.split, shard,
                                          setting=result.extra["setting"])
        save_result(result, matrix, out_dir)
    return result
