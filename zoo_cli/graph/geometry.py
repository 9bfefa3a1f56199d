"""DeepLab's size rules, defined once: how a crop scales, and how a feature map's size follows a stride."""

from __future__ import annotations

from typing import Sequence


def scale_dimension(dim: int, scale: float) -> int:
    """The reference's ``int((dim - 1) * scale + 1)`` (e.g. 513 at 0.5 -> 257)."""
    return int((float(dim) - 1.0) * scale + 1.0)


def scaled_crop(crop: Sequence[int], scale: float) -> tuple[int, int]:
    """A crop ``(H, W)`` at ``scale``, side by side with :func:`scale_dimension`."""
    return scale_dimension(crop[0], scale), scale_dimension(crop[1], scale)


def size_at_stride(crop: Sequence[int], stride: int) -> tuple[int, int]:
    """The feature map of a crop ``(H, W)`` at output stride ``stride``: ``(side - 1) // stride + 1`` a side."""
    return (crop[0] - 1) // stride + 1, (crop[1] - 1) // stride + 1


def stride_between(full: int, size: int) -> int | None:
    """The stride k with ``(full - 1) // k + 1 == size`` (powers of two first: DeepLab strides), else None."""
    if size == full:
        return 1
    for k in (2, 4, 8, 16, 32, 64):
        if (full - 1) // k + 1 == size:
            return k
    for k in range(3, max(4, full)):
        if (full - 1) // k + 1 == size:
            return k
    return None


def stride_ratio(full: int, reduced: int) -> int | None:
    """The stride ``zoo info --inspect`` reports from two sizes it read off a graph: exact for DeepLab crops
    (k * OS + 1, so ``(full - 1) / (reduced - 1)`` divides), else the rounded ratio; None when ``reduced`` is
    not smaller. Not :func:`stride_between`: the two disagree on crops of another form (e.g. 10 -> 3), and
    the reported number must stay what it was."""
    if reduced <= 1 or full <= reduced:
        return 1 if reduced == full else None
    if (full - 1) % (reduced - 1) == 0:
        return (full - 1) // (reduced - 1)
    return max(1, round(full / reduced))


def required_paddings(size: int, base: tuple[int, int], block: int) -> tuple[list[int], list[int]]:
    """SpaceToBatchND paddings and BatchToSpaceND crops for one spatial dim (as tf.nn.atrous_conv2d)."""
    full = size + base[0] + base[1]
    extra = (-full) % block
    return [base[0], base[1] + extra], [0, extra]
