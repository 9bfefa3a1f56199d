"""Bilinear resize with align_corners=True in numpy, the values TensorFlow's ``ResizeBilinear`` gives.

The multi-scale predictor resizes inside TensorFlow; this is for what runs outside a graph: its guard's probe
image and logits check (:mod:`zoo_cli.evaluation.multiscale`) and the benchmark's prepared inputs.
"""

from __future__ import annotations

import numpy as np


def _axis_weights(n_in: int, n_out: int, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of the first ``keep`` of ``n_out`` align_corners=True samples."""
    if n_out > 1:
        # float32 like TensorFlow's ResizeBilinear (scale = (in - 1) / (out - 1), in = out * scale).
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
        pos = np.arange(keep, dtype=np.float32) * scale
    else:
        pos = np.zeros(keep, np.float32)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], keep: tuple[int, int] | None = None,
                    chunk: int = 128) -> np.ndarray:
    """Bilinear resize with align_corners=True of an HxWxC float32 array to ``size`` = (H', W') (numpy, the
    same values as TensorFlow's; the predictor resizes in-graph, the benchmark prepares its inputs with this);
    with ``keep`` = (h, w) only the top-left h x w of the result is computed. Works in blocks of ``chunk``
    output rows, so the only large allocation is the result (a 2049x4097x3 image is 100 MB)."""
    x = np.asarray(x, np.float32)
    kh, kw = keep or size
    if x.shape[:2] == tuple(size):
        return x[:kh, :kw]
    y0, y1, wy = _axis_weights(x.shape[0], size[0], kh)
    x0, x1, wx = _axis_weights(x.shape[1], size[1], kw)
    wx = wx[None, :, None] if x.ndim == 3 else wx[None, :]
    out = np.empty((kh, kw) + x.shape[2:], np.float32)
    for start in range(0, kh, chunk):
        stop = min(kh, start + chunk)
        top, bottom = x[y0[start:stop]], x[y1[start:stop]]
        top = top[:, x0] + (top[:, x1] - top[:, x0]) * wx  # along x first, as TensorFlow does
        bottom = bottom[:, x0] + (bottom[:, x1] - bottom[:, x0]) * wx
        w = wy[start:stop, None, None] if x.ndim == 3 else wy[start:stop, None]
        out[start:stop] = top + (bottom - top) * w
    return out


