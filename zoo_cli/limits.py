"""Bounds on numbers a user passes: thread and job counts, and whether a crop's tensors fit in memory.

Both are checked before anything heavy starts, so an absurd value is a one-line usage error instead of a
process killed by SIGABRT (100000 threads) or by the OOM killer (a 100000x100000 crop). TensorFlow is not
imported here.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

from zoo_cli.errors import ModelError, UsageError
from zoo_cli.units import human_bytes

THREADS_PER_CPU = 4  # more threads than this per CPU only adds contention (and each one has a stack)
FLOAT_BYTES = 4


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask when the OS has one, e.g. in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads(cpus: int | None = None) -> int:
    """The largest ``--threads`` / ``--inter-threads`` / ``--jobs`` accepted: a few per CPU."""
    return THREADS_PER_CPU * (cpus or cpu_count())


def check_count(value: Any, option: str, *, minimum: int = 0, cpus: int | None = None) -> int:
    """``value`` as an int in ``minimum..max_threads()``; UsageError naming ``option``, the bound and why."""
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} {value!r} is not a whole number") from None
    top = max_threads(cpus)
    hint = " (0 lets TensorFlow choose)" if minimum == 0 else ""
    if number < minimum:
        why = "is negative" if number < 0 else f"is below {minimum}"
        raise UsageError(f"{option} {number} {why}; use a count from {minimum} to {top}{hint}")
    if number > top:
        raise UsageError(f"{option} {number} is more than {THREADS_PER_CPU} per CPU on this machine "
                         f"({cpus or cpu_count()} CPUs); use at most {top}{hint}")
    return number


# ------------------------------------------------------------------------------------------- memory


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
    scaled = (int((crop[0] - 1) * top + 1), int((crop[1] - 1) * top + 1))
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
    what = "" if tuple(scales) == (1.0,) and not flip else " (with these --scales/--flip)"
    raise UsageError(f"{option} {crop[0]}x{crop[1]}{what} needs at least {human_bytes(need)} of memory for its "
                     f"tensors, but {human_bytes(free)} is available; use a smaller {option} (at most about "
                     f"{side}x{side})" + (", or fewer/smaller --scales" if what else ""))


# ------------------------------------------------------------------------------------------- TensorFlow errors

_OOM = re.compile(r"OOM when allocating tensor with shape\s*\[([\d,\s]*)\](?: and type (\w+))?")
_NOISE = ("Graph execution error", "Detected at node", "File ", "Node:", "[[", "Hint:", "Traceback", "(most recent",
          "Instructions for updating")
_DTYPE_BYTES = {"float": 4, "int32": 4, "int64": 8, "double": 8, "half": 2, "uint8": 1, "bool": 1, "bfloat16": 2}


def describe_tf_error(exc: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong (TF 2 puts it after 'Graph execution error:'
    and a 'Detected at node' traceback), with an out-of-memory turned into the size it wanted and the fix."""
    message = getattr(exc, "message", None) or str(exc)
    oom = _OOM.search(message)
    if oom is not None or type(exc).__name__ == "ResourceExhaustedError":
        if oom is not None:
            dims = [int(d) for d in oom.group(1).replace(" ", "").split(",") if d]
            size = math.prod(dims) * _DTYPE_BYTES.get(oom.group(2) or "float", 4)
            tensor = f"a [{','.join(map(str, dims))}] {oom.group(2) or 'float'} tensor ({human_bytes(size)})"
        else:
            tensor = "a tensor"
        return (f"TensorFlow ran out of memory allocating {tensor}; {human_bytes(available_memory())} is available. "
                "Use a smaller --crop / --input-size, fewer --scales, no --flip, or --jobs 1")
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(_NOISE) and not line.endswith(":"):
            return line
    return type(exc).__name__


def tf_model_error(exc: BaseException, where: str) -> ModelError:
    """A ModelError for a TensorFlow runtime error: ``<where>: <the line that says why>``."""
    return ModelError(f"{where}: {describe_tf_error(exc)}")
