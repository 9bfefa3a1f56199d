"""``zoo bench --all --ray``: the sweep of :func:`zoo_cli.bench.sweep.bench_all` as one Ray task per checkpoint x
setting, on one actor per node that reserves all the node's CPUs, so a latency is never measured beside another
task."""

from __future__ import annotations

import dataclasses
import socket
from collections import deque
from pathlib import Path
from typing import Any, Callable

from zoo_cli.bench.measure import bench_graph
from zoo_cli.bench.settings import BenchOptions, bench_settings, check_eval_options
from zoo_cli.bench.store import BenchResult, save_result
from zoo_cli.bench.sweep import SweepOutcome, open_datasets_first, sweep_checkpoints
from zoo_cli.cluster.delivery import GraphSource, check_visible, graph_source, node_graph, renamed_error
from zoo_cli.cluster.runtime import RETRIES, driver_omp_threads, driver_threads_env, node_cpus, ray_cluster, ray_get
from zoo_cli.errors import ClusterError, ZooError


class BenchNode:
    """One Ray actor per node holding all of its CPUs: bench tasks on a node run one at a time."""

    def __init__(self, cpus: int, omp_num_threads: str | None) -> None:
        self.cpus = cpus
        driver_threads_env(omp_num_threads)  # before TensorFlow: latency as the single process measures it

    def bench(self, source: GraphSource, ckpt: Any, options: BenchOptions,
              datasets: dict[str, Any] | None) -> list[BenchResult]:
        """:func:`zoo_cli.bench.measure.bench_graph` of the one setting ``options`` names, on the eval splits the
        driver opened (``datasets``); results carry how they were isolated."""
        import ray

        from zoo_cli.graph.loading import load_graph_def

        host = socket.gethostname()
        for ds in (datasets or {}).values():
            check_visible([ds.root], ds.root, host)
        path, cleanup = node_graph(source, get_object=ray.get)
        try:
            graph_def = load_graph_def(path)
        except ZooError as exc:
            raise renamed_error(exc, path, source.path) from None
        finally:
            cleanup()
        results = bench_graph(graph_def, name=ckpt.name, ckpt=ckpt, options=options, datasets=datasets)
        for result in results:
            result.conditions["ray"] = {
                "node": host, "node_id": ray.get_runtime_context().get_node_id(), "cpus_reserved": self.cpus,
                "isolation": "one bench task per node at a time (all of its CPUs reserved)"}
        return results


def bench_all_ray(registry: Any, cache: Any, options: BenchOptions = BenchOptions(), *, address: str | None = None,
                  mirror: str | None = None, offline: bool = False, on_model: Callable[[str], None] | None = None,
                  on_result: Callable[[BenchResult], None] | None = None, store: Path | None = None) -> SweepOutcome:
    """``zoo bench --all --ray``: :func:`zoo_cli.bench.sweep.bench_all` with one Ray task per checkpoint x setting.

    Each node runs one task at a time on an actor that reserves all its CPUs; results are stored by the driver
    under ``store`` (where ``zoo report`` reads them) as they arrive. Workers show no progress bar. A failing
    checkpoint is recorded in the outcome, not fatal.
    """
    check_eval_options(options)
    outcome = SweepOutcome()
    tasks: deque[tuple[Any, GraphSource, Any, dict[str, Any] | None]] = deque()
    with ray_cluster(address) as ray:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for ckpt in sweep_checkpoints(registry, cache, outcome):
            try:
                datasets = open_datasets_first(ckpt, options)
                source = graph_source(ray, ckpt, cache, mirror=mirror, offline=offline)
                settings = bench_settings(ckpt, options.scales, options.flip)
            except ZooError as exc:
                outcome.failures[ckpt.name] = str(exc)
                continue
            tasks.extend((ckpt, source, setting, datasets) for setting in settings)
        nodes = node_cpus(ray)
        if not nodes:
            raise ClusterError("the Ray cluster has no node with CPUs; start one with 'ray start --head'")
        node_cls = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(BenchNode)
        omp = driver_omp_threads()
        actors = [node_cls.options(num_cpus=cpus,
                                   scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
                                   ).remote(cpus, omp) for node_id, _host, cpus in nodes]
        order = {id(t[2]): i for i, t in enumerate(tasks)}
        inflight: dict[Any, tuple[Any, Any, Any]] = {}
        found: list[tuple[int, Any]] = []

        def submit(actor: Any) -> None:
            while tasks:
                ckpt, source, setting, datasets = tasks.popleft()
                if ckpt.name in outcome.failures:
                    continue  # an earlier setting of this checkpoint failed: the graph itself is the problem
                if on_model is not None:
                    on_model(f"{ckpt.name} ({setting.describe()})")
                one = dataclasses.replace(options, scales=setting.scales, flip=setting.flip, progress=False)
                ref = actor.bench.remote(source, ckpt, one, datasets)
                inflight[ref] = (actor, ckpt, setting)
                return

        try:
            for actor in actors:
                submit(actor)
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    actor, ckpt, setting = inflight.pop(ref)
                    try:
                        results = ray_get(ray, ref, f"benching {ckpt.name} ({setting.describe()})")
                    except ZooError as exc:
                        outcome.failures.setdefault(ckpt.name, str(exc).strip().splitlines()[0])
                        results = []
                    for result in results:
                        if store is not None and result.measured:
                            save_result(result, store)
                        found.append((order[id(setting)], result))
                        if on_result is not None:
                            on_result(result)
                    submit(actor)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    outcome.results = [r for _, r in sorted(found, key=lambda item: item[0])]
    return outcome
