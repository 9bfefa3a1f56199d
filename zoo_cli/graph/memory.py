"""Whether a crop's tensors fit in memory: checked before a network is built, so an absurd ``--crop`` or
``--input-size`` is a one-line usage error instead of a process killed by the OOM killer (a 100000x100000
crop). TensorFlow is not imported here; :func:`floats_per_pixel` reads a graph that is already loaded.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from zoo_cli.errors import UsageError
from zoo_cli.graph.geometry import scaled_crop
from zoo_cli.registry.scales import is_single
from zoo_cli.units import human_bytes

FLOAT_BYTES = 4


def available_memory() -> int:
    """Bytes of memory available to a new allocation without swapping (psutil)."""
    import psutil

    return int(psutil.virtual_memory().available)


def floats_per_pixel(graph: Any, crop: Sequence[int] | None) -> float | None:
    """The largest float tensor of a loaded graph per pixel of its crop (e.g. 21 for VOC logits resized to the
    crop, 12 for MobileNet-v2's first expansion at stride 2), from the static shapes TensorFlow inferred.
    None when the graph has no static crop or no fully known float shape."""
    if not crop:
        return None
    area = float(crop[0]) * float(crop[1])
    best = 0
    for op in graph.get_operations():
        for tensor in op.outputs:
            shape = tensor.shape
            if tensor.dtype.is_floating and shape.rank is not None and shape.is_fully_defined():
                best = max(best, shape.num_elements())
    return best / area if best else None


def crop_memory(crop: Sequence[int], per_pixel: float, num_classes: int, *, scales: Sequence[float] = (1.0,),
                flip: bool = False, networks: int = 2) -> int:
    """Bytes a run at eval ``crop`` needs at least: per network in flight (at most ``networks``, for the
    largest scale) an op's input and output at ``per_pixel`` floats a pixel, plus the probability maps at the
    crop (one per network in flight and the running sum; one when single-scale)."""
    runs = len(scales) * (2 if flip else 1)
    in_flight = max(1, min(networks, runs))
    top = max(scales) if scales else 1.0
    scaled = scaled_crop(crop, top)
    net = 2 * per_pixel * float(scaled[0]) * float(scaled[1]) * FLOAT_BYTES
    maps = (in_flight + (1 if runs > 1 else 0)) * float(crop[0]) * float(crop[1]) * num_classes * FLOAT_BYTES
    return int(in_flight * net + maps)


def check_crop_memory(crop: Sequence[int], *, per_pixel: float, num_classes: int, option: str = "--crop",
                      scales: Sequence[float] = (1.0,), flip: bool = False, networks: int = 2,
                      available: int | None = None) -> None:
    """UsageError when a run at ``crop`` cannot fit in the memory available now: names the size, the memory
    and the largest square crop that would fit (the fix). Cheap: called before a network is built."""
    need = crop_memory(crop, per_pixel, num_classes, scales=scales, flip=flip, networks=networks)
    free = available_memory() if available is None else available
    if need <= free:
        return
    # the largest square crop with the same needs per pixel that fits
    per_px = need / (float(crop[0]) * float(crop[1]))
    side = int(math.sqrt(free / per_px)) if per_px > 0 else 0
    what = "" if is_single(scales, flip) else " (with these --scales/--flip)"
    raise UsageError(f"{option} {crop[0]}x{crop[1]}{what} needs at least {human_bytes(need)} of memory for its "
                     f"tensors, but {human_bytes(free)} is available; use a smaller {option} (at most about "
                     f"{side}x{side})" + (", or fewer/smaller --scales" if what else ""))
