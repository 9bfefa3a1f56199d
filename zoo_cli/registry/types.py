"""What one registry entry is: a checkpoint and its reported eval rows (declared once, read everywhere).

The dataclasses are frozen; :mod:`zoo_cli.registry.schema` builds them from validated YAML, and every other module
reads them (torchvision's ``models/_api.py`` Weights metadata plays the same role).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo_cli.constants import FROZEN_GRAPH
from zoo_cli.registry.scales import describe_scales

SPLITS = ("val", "test")
OUTPUT_STRIDES = (4, 8, 16, 32)  # the output strides an eval row may report
# Where the seed's numbers come from; an entry measured elsewhere says so in its own `reported_on`.
SEED_MACHINE = "Xeon E5-1650 v3 @ 3.50GHz, 32GB (tfprof)"


@dataclass(frozen=True)
class EvalRow:
    """One line of the seed's results table: an eval setting and what was reported for it."""

    output_stride: int
    scales: tuple[float, ...]
    flip: bool
    madds_billion: float | None
    runtime_s: float | None
    latency_ms: float | None
    miou: float
    pixel_accuracy: float | None
    split: str

    def describe(self) -> str:
        """Short human description of the setting, e.g. ``OS 8, scales 0.5-1.75 (6), flip``."""
        return f"OS {self.output_stride}, {describe_scales(self.scales, self.flip)}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d


@dataclass(frozen=True)
class Checkpoint:
    """Everything the registry knows about one downloadable checkpoint."""

    name: str
    dataset: str
    backbone: str
    pretrained_on: tuple[str, ...]
    url: str
    size_mb: float | None
    contents: tuple[str, ...]
    evals: tuple[EvalRow, ...]
    depth_multiplier: float | None = None
    aspp: str | None = None
    decoder: str | None = None
    input_size: tuple[int, int] | None = None
    eval_crop: tuple[int, int] | None = None
    num_classes: int | None = None
    ignore_label: int | None = None
    model_flags: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    class_names: tuple[str, ...] | None = None
    reported_on: str | None = None
    # The input (H, W) the reported Multiply-Adds refer to, when it is not the eval crop (EdgeTPU-DeepLab's
    # figures are at 513x513 although it is evaluated at 1025x2049); bench counts at this size.
    madds_input_size: tuple[int, int] | None = None
    # What a comparison with the reported Multiply-Adds must know (e.g. that the figure counts FLOPs).
    madds_note: str | None = None
    line: int = 0

    @property
    def has_frozen_graph(self) -> bool:
        return FROZEN_GRAPH in self.contents

    @property
    def reported_machine(self) -> str:
        """The machine/tool the reported runtimes and Multiply-Adds come from."""
        return self.reported_on or SEED_MACHINE

    @property
    def archive_filename(self) -> str:
        return Path(urlsplit(self.url).path).name

    @property
    def best_miou(self) -> float | None:
        return max((row.miou for row in self.evals), default=None)

    @property
    def min_madds(self) -> float | None:
        """Multiply-Adds of the cheapest reported setting (billions), if any is reported."""
        values = [row.madds_billion for row in self.evals if row.madds_billion is not None]
        return min(values, default=None)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("line")
        d["pretrained_on"] = list(self.pretrained_on)
        d["contents"] = list(self.contents)
        d["input_size"] = list(self.input_size) if self.input_size else None
        d["eval_crop"] = list(self.eval_crop) if self.eval_crop else None
        d["madds_input_size"] = list(self.madds_input_size) if self.madds_input_size else None
        d["class_names"] = list(self.class_names) if self.class_names else None
        d["reported_on"] = self.reported_machine
        d["evals"] = [row.to_json() for row in self.evals]
        d["has_frozen_graph"] = self.has_frozen_graph
        return d
