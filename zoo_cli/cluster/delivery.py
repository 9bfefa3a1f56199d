"""What a Ray worker needs from the driver: the frozen graph, verified, and the dataset at the driver's path.

A worker runs the graph its node's cache holds when it hashes to the driver's; otherwise it installs it through
the normal verified path, pinned to the driver's archive sha256. ``--graph`` bytes travel through the object
store. Datasets are read at the driver's path (a shared file system).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from zoo_cli.errors import CacheError, ChecksumError, DatasetError, ZooError


@dataclass(frozen=True)
class GraphSource:
    """How a worker gets the frozen graph: ``ckpt`` installed verified in the node's cache at ``home``
    (hashing to ``graph_sha256``; installed pinned to ``archive_sha256`` when absent), or the bytes of a
    ``--graph`` file in the object store (``data``, an ObjectRef; ``path`` is the driver's file)."""

    path: str
    graph_sha256: str
    ckpt: Any = None
    archive_sha256: str | None = None
    home: str | None = None
    mirror: str | None = None
    offline: bool = False
    data: Any = None


def graph_source(ray: Any, ckpt: Any | None, cache: Any, graph_path: Path | str | None = None, *,
                 mirror: str | None = None, offline: bool = False) -> GraphSource:
    """The driver's side: the bytes of ``graph_path`` (``--graph``) put in the object store, else what a worker
    needs to get and verify ``ckpt``'s install (the driver's manifest hashes, ``cache``'s home, the mirror and
    offline settings)."""
    from zoo_cli.constants import FROZEN_GRAPH
    from zoo_cli.hub.content import sha256_file

    if graph_path is not None:
        graph_path = Path(graph_path)
        data = graph_path.read_bytes()
        return GraphSource(path=str(graph_path), graph_sha256=hashlib.sha256(data).hexdigest(),
                           data=ray.put(data))
    graph_path = Path(cache.frozen_graph_path(ckpt))
    manifest = cache.manifest(ckpt.name) or {}
    files = manifest.get("files")
    entry = files.get(FROZEN_GRAPH) if isinstance(files, dict) else None
    sha = entry.get("sha256") if isinstance(entry, dict) and entry.get("sha256") else None
    return GraphSource(path=str(graph_path), graph_sha256=sha or sha256_file(graph_path).hexdigest(), ckpt=ckpt,
                       archive_sha256=manifest.get("sha256"), home=str(cache.home), mirror=mirror,
                       offline=offline)


def node_graph(source: GraphSource, *,
               get_object: Callable[[Any], bytes] | None = None) -> tuple[Path, Callable[[], None]]:
    """The worker's side: a path to the verified graph on this node and a cleanup to call once it is loaded.

    A node whose cache holds the checkpoint with the driver's graph hash runs it; a node without it installs
    it through :func:`zoo_cli.hub.install.install_checkpoint` pinned to the driver's archive sha256, so nothing
    unverified is ever installed. A node holding a *different* install is an error, not overwritten.
    """
    from zoo_cli.constants import FROZEN_GRAPH
    from zoo_cli.hub.cache import Cache
    from zoo_cli.hub.content import sha256_file
    from zoo_cli.hub.install import install_checkpoint

    host = socket.gethostname()
    if source.ckpt is None:
        data = get_object(source.data) if get_object is not None else source.data
        tmp = tempfile.mkdtemp(prefix="zoo-graph-")
        path = Path(tmp) / Path(source.path).name
        path.write_bytes(data)
        return path, lambda: shutil.rmtree(tmp, ignore_errors=True)
    ckpt, cache = source.ckpt, Cache(Path(source.home))
    path = cache.model_dir(ckpt.name) / FROZEN_GRAPH
    if cache.is_installed(ckpt.name) and path.is_file():
        if sha256_file(path).hexdigest() == source.graph_sha256:
            return path, lambda: None
        raise CacheError(f"'{ckpt.name}' on Ray node {host} ({path}) is not the driver's install (its "
                         f"{FROZEN_GRAPH} hashes differently); run 'zoo download {ckpt.name} --force' on that node")
    if not source.archive_sha256:
        raise CacheError(f"the driver's install of '{ckpt.name}' records no archive sha256 to verify node {host}'s "
                         f"download against; run 'zoo download {ckpt.name} --force' on the driver")
    pinned = dataclasses.replace(ckpt, sha256=source.archive_sha256)
    install_checkpoint(pinned, cache, mirror=source.mirror, offline=source.offline, progress=False)
    if sha256_file(path).hexdigest() != source.graph_sha256:
        raise ChecksumError(f"'{ckpt.name}' installed on Ray node {host} verifies against the archive sha256 but "
                            f"its {FROZEN_GRAPH} differs from the driver's; run 'zoo download {ckpt.name} --force' "
                            "on the driver and on that node")
    return path, lambda: None


def renamed_error(exc: ZooError, tmp: Path, original: str) -> ZooError:
    """``exc`` with the worker's temporary copy of a ``--graph`` file named as the user's path."""
    text = str(exc)
    return type(exc)(text.replace(str(tmp), original)) if str(tmp) in text else exc


def check_visible(paths: Sequence[Path], root: Path, host: str) -> None:
    for path in paths:
        if not Path(path).exists():
            raise DatasetError(f"{path} is not visible on Ray node {host}; workers read the dataset at the driver's "
                               f"path, so mount it at {root} on every node (a shared file system, see docs/scale.md)")

