"""The offline end-to-end demo behind ``zoo demo``: the real download -> eval -> bench path on a shipped model.

``zoo_cli/demo/`` ships a small trained DeepLab-format checkpoint archive (built by
``tools/build_demo_model.py``), its registry entry (``registry.yaml``, sha256 pinned, measured mIOU rows) and a
12-image val set in the PASCAL VOC layout (``voc/``). :func:`run_demo`

1. serves the archive from a ``ThreadingHTTPServer`` on ``127.0.0.1:<free port>`` and writes a copy of the demo
   registry whose URL points at it (``<out>/registry.yaml``, usable with ``zoo --registry``);
2. downloads it with :func:`zoo_cli.hub.install.install_checkpoint` (progress bar, sha256 pin, safe untar, manifest
   into ``ZOO_HOME``);
3. evaluates every registry eval row (single scale; the row's scales + flip) on the val set with
   :mod:`zoo_cli.evaluation.dataset_job` and writes label PNGs and colour overlays of the multi-scale predictions;
4. benches the graph with :func:`zoo_cli.bench.measure.bench_graph` (latency, MAdds, mIOU against the recorded rows);
5. returns a :class:`DemoResult`; ``ok`` only when every measured mIOU matches the recorded one.

TensorFlow is imported only inside :func:`run_demo` (through the model, eval and bench modules).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

from zoo_cli.atomic import write_text_atomic
from zoo_cli.errors import RegistryError
from zoo_cli.graph.tf_import import quiet_tf_logger
from zoo_cli.hub.cache import Cache
from zoo_cli.registry.catalog import Registry, load_registry
from zoo_cli.registry.scales import scales_label, setting_slug
from zoo_cli.registry.types import Checkpoint, EvalRow

DEMO_NAME = "demo_shapes"
# The shipped registry's URL host; replaced by the live server's address before anything is downloaded.
PLACEHOLDER_PREFIX = "http://127.0.0.1/zoo-demo/"
# Measured and recorded mIOU must agree to this many percentage points. The recorded value is rounded to 0.01;
# another CPU / TensorFlow build may flip the argmax of a handful of near-tie pixels (one pixel of one class is
# ~0.003 points on this val set), so exact equality would fail for reasons that are not regressions.
MIOU_TOLERANCE = 0.1


def demo_dir() -> Path:
    """The demo files shipped inside the package (archive, registry.yaml, voc/)."""
    return Path(str(resources.files("zoo_cli").joinpath("demo")))


def demo_registry_path() -> Path:
    return demo_dir() / "registry.yaml"


def demo_val_dir() -> Path:
    """Root of the shipped val set (VOC layout: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)."""
    return demo_dir() / "voc"


def demo_palette(ckpt: Checkpoint | None = None):
    """VOC colours with the demo's class names from its registry entry (background, circle, square, triangle)."""
    from zoo_cli.evaluation.classes import class_palette

    return class_palette("voc", ckpt or load_registry(demo_registry_path()).get(DEMO_NAME))


# ---------------------------------------------------------------- local server


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files from one directory, no request log on stderr (the demo prints its own progress)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="zoo-demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def local_registry(base_url: str, out_dir: Path) -> tuple[Registry, Path]:
    """Write the demo registry with its URL pointing at ``base_url`` into ``out_dir``; load and return it."""
    source = demo_registry_path()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{source} is missing; rebuild the demo with 'python tools/build_demo_model.py' "
                            "or reinstall zoo-cli") from None
    if PLACEHOLDER_PREFIX not in text:
        raise RegistryError(f"{source} has no '{PLACEHOLDER_PREFIX}' URL to point at the local server; "
                            "rebuild it with 'python tools/build_demo_model.py'")
    path = write_text_atomic(out_dir / "registry.yaml", text.replace(PLACEHOLDER_PREFIX, base_url.rstrip("/") + "/"))
    return load_registry(path), path


# ---------------------------------------------------------------- results


@dataclass
class RowCheck:
    """One recorded eval row against what this run measured."""

    step: str  # "eval" or "bench"
    setting: str
    recorded: float
    measured: float | None

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.recorded

    @property
    def ok(self) -> bool:
        return self.delta is not None and abs(self.delta) <= MIOU_TOLERANCE + 1e-9

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "setting": self.setting, "recorded_miou": self.recorded,
                "measured_miou": self.measured, "delta": self.delta, "ok": self.ok}


@dataclass
class DemoResult:
    """What ``zoo demo`` did and where its outputs went."""

    name: str
    out_dir: Path
    registry_path: Path
    url: str
    model_dir: Path | None = None
    download: dict[str, Any] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    overlays_dir: Path | None = None
    overlays: list[Path] = field(default_factory=list)
    bench: list[Any] = field(default_factory=list)  # zoo_cli.bench.store.BenchResult
    checks: list[RowCheck] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "name": self.name, "out": str(self.out_dir), "registry": str(self.registry_path),
            "url": self.url, "model_dir": str(self.model_dir) if self.model_dir else None,
            "download": self.download, "eval": self.evals,
            "overlays_dir": str(self.overlays_dir) if self.overlays_dir else None,
            "overlays": [str(p) for p in self.overlays],
            "bench": [r.to_json() for r in self.bench],
            "checks": [c.to_json() for c in self.checks], "tolerance_miou": MIOU_TOLERANCE,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def predictor_for(model: Any, scales: tuple[float, ...], flip: bool) -> Any:
    """The predictor ``zoo eval`` uses for these scales/flip (``predictors.make_predictor``); strict: a scale
    whose crop cannot be built is an error, never silently dropped from the average."""
    from zoo_cli.evaluation.predictors import make_predictor

    return make_predictor(model, scales=tuple(scales), flip=flip, strict=True)


def _setting(row: EvalRow) -> str:
    return f"{scales_label(row.scales)}{' + flip' if row.flip else ''}"


# ---------------------------------------------------------------- the demo


def run_demo(cache: Cache, out_dir: Path | None = None, *, progress: bool | None = None, bench_runs: int = 5,
             bench_warmup: int = 1, threads: int = 0, log: Callable[[str], None] | None = None) -> DemoResult:
    """Serve, download, evaluate and bench the shipped demo model; see the module docstring.

    ``out_dir`` (default ``<cache>/results/demo``) receives the registry copy, eval metrics
    (``eval/<setting>/``) and overlays (``overlays/``);
    the model is installed into ``cache`` and bench results are stored under the cache like ``zoo bench``'s.
    ``log`` receives one line per step (the CLI prints them; None = silent).
    """
    # TensorFlow is imported (quietly) by zoo_cli.graph.tf_import through the model, eval and bench modules.
    with quiet_tf_logger():
        out_dir = Path(out_dir) if out_dir is not None else cache.results_dir / "demo"
        return _run(cache, out_dir, progress, bench_runs, bench_warmup, threads, log or (lambda _msg: None))


def _run(cache: Cache, out_dir: Path, progress: bool | None, bench_runs: int, bench_warmup: int, threads: int,
         say: Callable[[str], None]) -> DemoResult:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with serve_directory(demo_dir()) as base_url:
        registry, registry_path = local_registry(base_url, out_dir)
        ckpt = registry.get(DEMO_NAME)
        result = DemoResult(name=ckpt.name, out_dir=out_dir, registry_path=registry_path, url=ckpt.url)
        say(f"[1/3] download {ckpt.name} from {ckpt.url} (local server) into {cache.home}")
        result.model_dir, result.download = _download(ckpt, cache, progress)
        timings["download"] = time.perf_counter() - start
    say(f"      {result.download['status']}: {result.download['size']} bytes, sha256 "
        f"{result.download['sha256'][:16]}... ({result.download['sha256_check']}) → {result.model_dir}")

    t = time.perf_counter()
    say(f"[2/3] eval on the shipped val set ({demo_val_dir()}): " + "; ".join(_setting(r) for r in ckpt.evals))
    _evaluate(ckpt, cache, out_dir, result, progress, threads, say)
    timings["eval"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[3/3] bench: latency ({bench_runs} runs), Multiply-Adds, mIOU against the recorded rows")
    _bench(ckpt, cache, result, bench_runs, bench_warmup, threads, progress)
    timings["bench"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    result.seconds = timings
    return result


def _download(ckpt: Checkpoint, cache: Cache, progress: bool | None) -> tuple[Path, dict[str, Any]]:
    from zoo_cli.hub.install import install_checkpoint
    from zoo_cli.hub.session import make_session

    # force: the demo always walks the whole transfer -> verify -> untar path, even after an earlier run;
    # mirror/offline are fixed because the archive is on our own 127.0.0.1 server, never on the network,
    # and the session ignores HTTP(S)_PROXY: a proxy cannot reach the loopback server of this process.
    session = make_session()
    session.trust_env = False
    try:
        installed = install_checkpoint(ckpt, cache, force=True, mirror=None, offline=False, progress=progress,
                                       session=session)
    finally:
        session.close()
    return installed.path, installed.to_json()


def _evaluate(ckpt: Checkpoint, cache: Cache, out_dir: Path, result: DemoResult, progress: bool | None,
              threads: int, say: Callable[[str], None]) -> None:
    from zoo_cli.evaluation.classes import check_graph_classes
    from zoo_cli.evaluation.dataset_job import evaluate_dataset
    from zoo_cli.evaluation.datasets import open_eval_dataset
    from zoo_cli.evaluation.image_job import evaluate_images
    from zoo_cli.evaluation.results import EvalResult, save_result
    from zoo_cli.graph.runner import FrozenGraphModel

    palette = demo_palette(ckpt)
    dataset = open_eval_dataset(demo_val_dir(), ckpt)
    graph_path = cache.frozen_graph_path(ckpt)
    predictors: dict[tuple[tuple[float, ...], bool], Any] = {}
    with FrozenGraphModel(graph_path, intra_op_threads=threads) as model:
        num_classes = check_graph_classes(dataset.kind, ckpt, model.num_classes)
        for row in ckpt.evals:
            if (row.scales, row.flip) not in predictors:
                predictors[(row.scales, row.flip)] = predictor_for(model, row.scales, row.flip)
            predictor = predictors[(row.scales, row.flip)]
            matrix, n, seconds = evaluate_dataset(dataset, predictor, progress=progress, num_classes=num_classes)
            summary = matrix.summary(palette.class_names)
            eval_result = EvalResult(summary=summary, num_images=n, dataset="voc", split=row.split,
                                     num_classes=matrix.num_classes,
                                     ignore_label=dataset.ignore_label, scales=row.scales, flip=row.flip,
                                     checkpoint=ckpt.name, graph=str(graph_path), seconds=seconds)
            eval_result.extra["recorded_miou"] = row.miou
            save_result(eval_result, matrix, out_dir / "eval" / setting_slug(row.scales, row.flip))
            check = RowCheck("eval", _setting(row), row.miou, round(summary.miou, 2))
            result.checks.append(check)
            result.evals.append({"setting": _setting(row), "scales": list(row.scales), "flip": row.flip,
                                 "miou": summary.miou, "pixel_accuracy": summary.pixel_accuracy,
                                 "recorded_miou": row.miou, "recorded_pixel_accuracy": row.pixel_accuracy,
                                 "per_class_iou": {k: v for k, v in summary.per_class_iou.items() if v is not None},
                                 "images": n, "seconds": round(seconds, 3),
                                 "metrics": str(eval_result.metrics_path), "ok": check.ok})
            say(f"      {_setting(row)}: mIOU {summary.miou:.2f}% (recorded {row.miou:.2f}%) on {n} images "
                f"in {seconds:.1f} s {'✓' if check.ok else '✗'}")
        # Overlays of the richest setting (most scales, with flip), as 'zoo eval --images' writes them.
        row = max(ckpt.evals, key=lambda r: (len(r.scales), r.flip))
        predictor = predictors[(row.scales, row.flip)]
        result.overlays_dir = out_dir / "overlays"
        images = [s.image_path for s in dataset.samples]
        written = evaluate_images(images, predictor, palette, result.overlays_dir, progress=progress)
        result.overlays = [r.overlay_png for r in written]
        say(f"      {len(written)} label PNGs + overlays ({_setting(row)}) → {result.overlays_dir}")


def _bench(ckpt: Checkpoint, cache: Cache, result: DemoResult, runs: int, warmup: int, threads: int,
           progress: bool | None) -> None:
    from zoo_cli.bench.measure import bench_graph
    from zoo_cli.bench.settings import BenchOptions
    from zoo_cli.bench.store import results_dir
    from zoo_cli.graph.loading import load_graph_def

    graph_def = load_graph_def(cache.frozen_graph_path(ckpt))
    options = BenchOptions(runs=runs, warmup=warmup, threads=threads, data_dir=demo_val_dir(), progress=progress)
    result.bench = bench_graph(graph_def, name=ckpt.name, ckpt=ckpt, options=options, store=results_dir(cache))
    for bench_result in result.bench:
        for row in bench_result.setting.rows:
            measured = bench_result.measured.get("miou") if bench_result.measured else None
            result.checks.append(RowCheck("bench", _setting(row), row.miou,
                                          None if measured is None else round(measured, 2)))
