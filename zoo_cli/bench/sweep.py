"""What ``zoo bench`` benches: one checkpoint's (or ``--graph`` file's) graph, or every downloaded checkpoint
(``--all``), with option errors and dataset errors raised before any graph is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from zoo_cli.bench.accuracy import open_bench_datasets
from zoo_cli.bench.measure import bench_graph
from zoo_cli.bench.settings import BenchOptions, bench_settings, check_eval_options
from zoo_cli.bench.store import BenchResult
from zoo_cli.errors import UsageError, ZooError
from zoo_cli.registry.types import Checkpoint


@dataclass
class GraphBench:
    """Result of :func:`bench_checkpoint`: the graph file benched and one result per setting."""

    graph: Path
    results: list[BenchResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The first setting's result at the top level (as ``zoo bench --json`` prints it), plus every setting."""
        return {**self.results[0].to_json(), "graph": str(self.graph), "settings": [r.to_json() for r in self.results]}


def graph_file(ckpt: Checkpoint | None, cache: Any, graph_path: Path | str | None = None) -> Path:
    """The frozen graph :func:`bench_checkpoint` benches: ``graph_path`` if given, else ``ckpt``'s installed one
    in ``cache``."""
    if graph_path is not None:
        return Path(graph_path)
    if ckpt is None:
        raise UsageError("name a checkpoint (see 'zoo list') or pass --graph PATH")
    return Path(cache.frozen_graph_path(ckpt))


def open_datasets_first(ckpt: Checkpoint | None, options: BenchOptions) -> dict[str, Any] | None:
    """Check the eval options and open ``options.data_dir``'s splits (None without one) before any graph is
    loaded, so a bad ``--limit``/``--data-dir`` fails before the slow part."""
    check_eval_options(options)
    if options.data_dir is None:
        return None
    return open_bench_datasets(options.data_dir, ckpt, bench_settings(ckpt, options.scales, options.flip))


def bench_checkpoint(ckpt: Checkpoint | None, cache: Any, options: BenchOptions = BenchOptions(), *,
                     graph_path: Path | str | None = None, store: Path | None = None,
                     on_result: Callable[[BenchResult], None] | None = None) -> GraphBench:
    """``zoo bench NAME`` / ``--graph PATH``: bench ``graph_path`` if given, else ``ckpt``'s graph installed in
    ``cache``. With both, the graph is compared with ``ckpt``'s reported numbers; ``store`` and ``on_result`` are
    :func:`zoo_cli.bench.measure.bench_graph`'s."""
    from zoo_cli.graph.loading import load_graph_def

    path = graph_file(ckpt, cache, graph_path)
    datasets = open_datasets_first(ckpt, options)
    graph_def = load_graph_def(path)
    label = ckpt.name if ckpt else Path(path).stem
    return GraphBench(Path(path), bench_graph(graph_def, name=label, ckpt=ckpt, options=options, store=store,
                                              datasets=datasets, on_result=on_result))


@dataclass
class SweepOutcome:
    """Result of ``zoo bench --all``: results per model and the failures met on the way."""

    results: list[BenchResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"results": [r.to_json() for r in self.results], "failures": self.failures, "skipped": self.skipped}


def sweep_checkpoints(registry: Iterable[Checkpoint], cache: Any, outcome: SweepOutcome) -> Iterator[Checkpoint]:
    """The checkpoints a sweep benches: those with a frozen graph that are installed; the others it records in
    ``outcome.skipped`` (the single-machine and the Ray sweep share this)."""
    for ckpt in registry:
        if not ckpt.has_frozen_graph:
            continue
        if not cache.is_installed(ckpt.name):
            outcome.skipped[ckpt.name] = "not downloaded"
            continue
        yield ckpt


def bench_all(registry: Iterable[Checkpoint], cache: Any, options: BenchOptions = BenchOptions(), *,
              store: Path | None = None, on_model: Callable[[str], None] | None = None,
              on_result: Callable[[BenchResult], None] | None = None) -> SweepOutcome:
    """Bench every downloaded checkpoint that has a frozen graph; a failing model is recorded, not fatal."""
    from zoo_cli.graph.loading import load_graph_def

    check_eval_options(options)
    outcome = SweepOutcome()
    for ckpt in sweep_checkpoints(registry, cache, outcome):
        if on_model is not None:
            on_model(ckpt.name)
        try:
            datasets = open_datasets_first(ckpt, options)
            graph_def = load_graph_def(cache.frozen_graph_path(ckpt))
            outcome.results.extend(bench_graph(graph_def, name=ckpt.name, ckpt=ckpt, options=options, store=store,
                                               datasets=datasets, on_result=on_result))
        except (ZooError, ValueError, RuntimeError, OSError, MemoryError) as exc:
            outcome.failures[ckpt.name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types; one bad model must not stop the sweep
            from zoo_cli.graph.tf_errors import describe_tf_error

            outcome.failures[ckpt.name] = f"{type(exc).__name__}: {describe_tf_error(exc)}"
    return outcome
