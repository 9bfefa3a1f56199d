"""The one place zoo imports TensorFlow, and the one place it creates TF1 sessions.

Importing TensorFlow costs 2-3 s, so nothing imports this module's :func:`import_tf` at module level of a
module that the light commands (``--help``, ``list``, ``info``, ``download``, ...) load.

TensorFlow 2.21 prints start-up lines on stderr from C++ before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ...

The first three come with ``import tensorflow``, the last with the first device initialisation (the first
session). Both are run with file descriptor 2 pointed at ``/dev/null`` and restored afterwards; Python-level
errors still surface, because the exception is raised after the restore. GPUs are not hidden: only the
messages are. ``ZOO_DEBUG=1`` keeps all of it (and does not raise ``TF_CPP_MIN_LOG_LEVEL``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator

_lock = threading.Lock()
_devices_ready = False


def _debug() -> bool:
    return os.environ.get("ZOO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null while the block runs (no-op with ZOO_DEBUG=1).

    C++ code writes to the descriptor directly, so replacing ``sys.stderr`` would not catch it. Python's own
    buffered stderr is flushed first so nothing written before the block is lost.
    """
    if _debug():
        yield
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to hide
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_tf_logger() -> Iterator[None]:
    """Raise the Python ``tensorflow`` logger to ERROR while the block runs.

    The TF1 graph APIs zoo relies on (``convert_variables_to_constants``, ``tf.compat.v1`` layers) log
    deprecation notices that would bury the tool's own output.
    """
    import logging

    logger = logging.getLogger("tensorflow")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def import_tf() -> Any:
    """Import and return the ``tensorflow`` module with its start-up noise silenced (see the module doc)."""
    module = sys.modules.get("tensorflow")
    if module is not None and hasattr(module, "compat"):
        return module
    if not _debug():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _lock:
        with quiet_stderr():
            import tensorflow as tf
        if not _debug():
            # zoo drives frozen graphs through TF1 APIs (graph_util, tf.compat.v1); their deprecation notices
            # concern zoo's code, not the user's work, so only errors are shown (ZOO_DEBUG=1 shows all).
            tf.get_logger().setLevel("ERROR")
    return tf


def init_devices() -> None:
    """Initialise TensorFlow's devices once with stderr silenced (for eager code; sessions do it themselves)."""
    global _devices_ready
    tf = import_tf()
    with _lock:
        if not _devices_ready:
            with quiet_stderr():
                tf.config.list_physical_devices()
            _devices_ready = True


def new_session(config: Any = None, *, graph: Any = None) -> Any:
    """A ``tf.compat.v1.Session`` on ``graph``; the first one is created with stderr silenced (cuInit noise)."""
    global _devices_ready
    tf = import_tf()
    if _devices_ready:
        return tf.compat.v1.Session(graph=graph, config=config)
    with _lock:
        if _devices_ready:
            return tf.compat.v1.Session(graph=graph, config=config)
        with quiet_stderr():
            session = tf.compat.v1.Session(graph=graph, config=config)
        _devices_ready = True
    return session
