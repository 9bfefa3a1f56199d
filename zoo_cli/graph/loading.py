"""Reading a frozen graph file: ``load_graph_def`` parses it (refusing special files and training
checkpoints with the fix), ``import_graph`` imports it into a ``tf.Graph``; both fail as a ModelError that
says how to replace a bad file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zoo_cli.errors import ModelError, special_file_kind
from zoo_cli.graph.tf_import import import_tf


def _fix_hint(path: Path | str) -> str:
    """How to replace a bad graph file: re-download it when it sits in a zoo install, else (a ``--graph`` of
    the user's) pass a real frozen graph; 'zoo download' cannot repair a file it did not install."""
    from zoo_cli.constants import META_DIR
    from zoo_cli.hub.cache import MANIFEST

    try:
        for parent in list(Path(path).resolve().parents)[:3]:
            if (parent / META_DIR / MANIFEST).is_file():
                return f"re-download it with 'zoo download {parent.name} --force'"
    except OSError:
        pass
    return "pass a frozen_inference_graph.pb (a DeepLab export_model.py frozen graph)"


_CHECKPOINT_FILE = re.compile(r"(\.ckpt(-\d+)?(\.index|\.meta|\.data-\d+-of-\d+)?|\.index|\.meta|"
                              r"\.data-\d+-of-\d+)$")


def load_graph_def(path: Path | str) -> Any:
    """Parse a frozen ``GraphDef`` file; an unreadable or non-GraphDef file is a ModelError."""
    path = Path(path)
    kind = special_file_kind(path)
    if kind is not None:  # reading a FIFO blocks, /dev/zero never ends
        raise ModelError(f"{path} is {kind}, not a regular file; pass a frozen_inference_graph.pb")
    if _CHECKPOINT_FILE.search(path.name):
        raise ModelError(f"{path} is a TensorFlow training checkpoint file (model.ckpt.*), not a frozen graph; "
                         "pass the frozen_inference_graph.pb from the same archive")
    tf = import_tf()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"frozen graph {path} does not exist; download the model or check --graph") from None
    except OSError as exc:
        raise ModelError(f"cannot read frozen graph {path}: {exc}") from None
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, which is not exported under one stable name
        raise ModelError(f"{path} is not a frozen TensorFlow GraphDef (.pb) ({exc}); {_fix_hint(path)}") from None
    if not graph_def.node:
        raise ModelError(f"{path} holds an empty graph; {_fix_hint(path)}")
    return graph_def


def import_graph(graph_def: Any, source: str) -> Any:
    """A ``tf.Graph`` holding ``graph_def``; a graph TensorFlow cannot import is a ModelError naming ``source``."""
    tf = import_tf()
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fix = f" ({_fix_hint(source)})" if Path(source).is_file() else ""  # source may be "<GraphDef>"
        raise ModelError(f"cannot import the graph {source}: {first}; it may need a newer TensorFlow or be "
                         f"damaged{fix}") from None
    return graph
