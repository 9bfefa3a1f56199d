"""TensorFlow runtime errors told in one line: the line of the message that says what went wrong, with an
out-of-memory turned into the size it wanted and the fix. TensorFlow is not imported here (the CLI's error
handler uses it on any exception)."""

from __future__ import annotations

import math
import re

from zoo_cli.errors import ModelError
from zoo_cli.graph.memory import available_memory
from zoo_cli.units import human_bytes

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
