"""DeepLab's size rules, defined once: how a crop scales, and how a feature map's size follows a stride."""

from __future__ import annotations

from typing import Sequence


def scale_dimension(dim: int, scale: float) -> int:
    """The reference's ``int((dim - 1) * scale + 1)`` (e.g. 513 at 0.5 -> 257)."""
    return int((float(dim) - 1.0) * scale + 1.0)


def scaled_crop(crop: Sequence[int], scale: float) -> tuple[int, int]:
    """A crop ``(H, W)`` at ``scale``, side by side with :func:`scale_dimension`."""
    return scale_dimension(crop[0], scale), scale_dimension(crop[1], scale)
