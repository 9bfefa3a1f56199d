"""Small zoo-like checkpoint archives (and hostile ones) built in memory for the fetch tests.

A zoo archive is a ``.tar.gz`` with one top folder holding ``frozen_inference_graph.pb`` (a tiny real
GraphDef: uint8 ``ImageTensor`` [1,H,W,3] → 1x1 conv → ArgMax → int32 ``SemanticPredictions``),
``model.ckpt.index`` and ``model.ckpt.data-00000-of-00001``.
"""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
from typing import Iterable

import yaml

TOP = "deeplabv3_mnv2_pascal_train_aug"
FULL_CONTENTS = ["frozen_inference_graph.pb", "model.ckpt.index", "model.ckpt.data-*"]
CKPT_CONTENTS = ["model.ckpt.index", "model.ckpt.data-*"]
MTIME = 1_538_352_000  # 2018-10-01, like the zoo's archives


@functools.lru_cache(maxsize=1)
def frozen_graph_bytes(num_classes: int = 21) -> bytes:
    """A serialized frozen GraphDef with the zoo's input/output tensors (TensorFlow imported here only)."""
    import numpy as np

    from zoo_cli.graph.tf_import import import_tf  # the project's quiet, single TensorFlow import point

    tf = import_tf()

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        x = tf.cast(image, tf.float32) / 127.5 - 1.0
        weights = np.random.default_rng(0).normal(size=(1, 1, 3, num_classes)).astype(np.float32)
        logits = tf.nn.conv2d(x, tf.constant(weights), strides=1, padding="SAME")
        tf.argmax(logits, axis=3, output_type=tf.int32, name="SemanticPredictions")
    return graph.as_graph_def().SerializeToString()


def _tar_gz(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.mtime = info.mtime or MTIME
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def checkpoint_files(*, frozen_graph: bool = True, data_size: int = 8192, seed: int = 0,
                     ckpt_prefix: str = "model.ckpt") -> dict[str, bytes]:
    """The files of one checkpoint (name → bytes); the data file is ``data_size`` pseudo-random bytes."""
    rng = __import__("random").Random(seed)
    files = {}
    if frozen_graph:
        files["frozen_inference_graph.pb"] = frozen_graph_bytes()
    files[f"{ckpt_prefix}.index"] = b"zoo-test-index\x00" + bytes(rng.getrandbits(8) for _ in range(64))
    files[f"{ckpt_prefix}.data-00000-of-00001"] = rng.randbytes(data_size)
    return files


def zoo_archive(top: str | None = TOP, files: dict[str, bytes] | None = None, **kwargs) -> bytes:
    """A zoo-like ``.tar.gz``: ``top/`` holding ``files`` (default ``checkpoint_files(**kwargs)``)."""
    files = checkpoint_files(**kwargs) if files is None else files
    members = [_dir(top + "/")] if top else []
    members += [_file(f"{top}/{name}" if top else name, data) for name, data in files.items()]
    return _tar_gz(members)


HOSTILE_KINDS = ("dotdot", "absolute", "symlink_escape", "symlink_absolute", "hardlink_escape",
                 "hardlink_absolute", "device", "fifo", "too_many_members", "too_big", "duplicate")


def hostile_archive(kind: str) -> bytes:
    """An otherwise valid zoo archive with one hostile addition named by ``kind`` (see HOSTILE_KINDS)."""
    base = [_dir(TOP + "/")] + [_file(f"{TOP}/{n}", d) for n, d in checkpoint_files().items()]
    if kind == "dotdot":
        extra = [_file(f"{TOP}/../../escaped.txt", b"pwned\n")]
    elif kind == "absolute":
        extra = [_file("/tmp/zoo-test-absolute-escape.txt", b"pwned\n")]
    elif kind in ("symlink_escape", "symlink_absolute"):
        link = tarfile.TarInfo(f"{TOP}/evil_link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../outside_target" if kind == "symlink_escape" else "/etc"
        # A file written through the link would land outside the target directory.
        extra = [(link, None), _file(f"{TOP}/evil_link/passwd", b"pwned\n")]
    elif kind in ("hardlink_escape", "hardlink_absolute"):
        link = tarfile.TarInfo(f"{TOP}/evil_hardlink")
        link.type = tarfile.LNKTYPE
        link.linkname = "../outside_file" if kind == "hardlink_escape" else "/etc/passwd"
        extra = [(link, None)]
    elif kind == "device":
        dev = tarfile.TarInfo(f"{TOP}/null_device")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        extra = [(dev, None)]
    elif kind == "fifo":
        fifo = tarfile.TarInfo(f"{TOP}/a_fifo")
        fifo.type = tarfile.FIFOTYPE
        extra = [(fifo, None)]
    elif kind == "too_many_members":
        extra = [_file(f"{TOP}/many/{i:05d}", b"") for i in range(300)]
    elif kind == "duplicate":
        # A second member of the same name that would overwrite the real graph with 12 bytes.
        extra = [_file(f"{TOP}/frozen_inference_graph.pb", b"not a graph\n")]
    elif kind == "too_big":
        extra = [_file(f"{TOP}/zeros.bin", bytes(4 << 20))]  # 4 MiB of zeros: compresses to ~4 KiB
    else:
        raise ValueError(f"unknown hostile kind {kind!r}")
    return _tar_gz(base + extra)


def two_top_folders_archive() -> bytes:
    """A valid-looking archive whose checkpoint files are split across two top-level folders."""
    files = list(checkpoint_files().items())
    return _tar_gz([_dir("a/"), _dir("b/"), _file(f"a/{files[0][0]}", files[0][1])]
                   + [_file(f"b/{n}", d) for n, d in files[1:]])


def plain_tar(files: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed tar of a checkpoint (what a mirror serving ``.tar`` under a ``.tar.gz`` name sends)."""
    return gzip.decompress(zoo_archive(files=files or checkpoint_files()))


def registry_yaml(entries: Iterable[dict]) -> str:
    """Registry text with minimal valid checkpoints; each entry needs name and url, the rest has defaults."""
    out = []
    for e in entries:
        out.append({
            "name": e["name"], "dataset": e.get("dataset", "voc"), "backbone": e.get("backbone", "MobileNet-v2"),
            "pretrained_on": ["test"], "eval_crop": [65, 65], "num_classes": 21, "ignore_label": 255,
            "url": e["url"], "size_mb": e.get("size_mb"), "sha256": e.get("sha256"),
            "contents": e.get("contents", FULL_CONTENTS), "evals": [],
        })
    return yaml.safe_dump({"version": 1, "checkpoints": out}, sort_keys=False)
