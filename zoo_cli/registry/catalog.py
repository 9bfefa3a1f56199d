"""The checkpoint registry: metadata declared once in ``registry.yaml``, read everywhere.

Loading validates the whole file against a schema; every problem is reported as
``file:line: where: what is wrong`` so that a hand-edited registry is easy to fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import yaml

from zoo_cli.constants import FROZEN_GRAPH, REGISTRY_DATASETS
from zoo_cli.errors import RegistryError, UnknownCheckpointError
from zoo_cli.registry.scales import describe_scales
from zoo_cli.urls import redact

SPLITS = ("val", "test")
OUTPUT_STRIDES = (4, 8, 16, 32)
SORT_FIELDS = ("name", "dataset", "backbone", "miou", "madds", "size")
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

    @property
    def multi_scale(self) -> bool:
        return self.scales != (1.0,)

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


# ---------------------------------------------------------------- schema & validation


class _Invalid(Exception):
    def __init__(self, node: yaml.Node, where: str, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.where = where
        self.message = message


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# libyaml's composer is ~10x faster than the pure-Python one; both give nodes with line marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    # PyYAML's own constructor, so ints, floats, bools and nulls mean what YAML says they mean.
    return _CONSTRUCTOR.construct_object(node)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _str(node: yaml.Node, where: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str" or not node.value.strip():
        raise _Invalid(node, where, f"expected a non-empty string, got {_show(node)}")
    return node.value


def _number(node: yaml.Node, where: str, *, integer: bool = False) -> float | int:
    tags = ("tag:yaml.org,2002:int",) if integer else ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    if not isinstance(node, yaml.ScalarNode) or node.tag not in tags:
        raise _Invalid(node, where, f"expected {'an integer' if integer else 'a number'}, got {_show(node)}")
    value = _scalar(node)
    if not integer:
        value = float(value)
        if not math.isfinite(value):
            raise _Invalid(node, where, f"expected a finite number, got {node.value}")
    return value


def _bool(node: yaml.Node, where: str) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
        raise _Invalid(node, where, f"expected true or false, got {_show(node)}")
    return bool(_scalar(node))


def _seq(node: yaml.Node, where: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise _Invalid(node, where, f"expected a list, got {_show(node)}")
    return list(node.value)


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "null" if _is_null(node) else repr(node.value)
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"


def _mapping(node: yaml.Node, where: str, required: Iterable[str], optional: Iterable[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid(node, where, f"expected a mapping, got {_show(node)}")
    required, optional = tuple(required), tuple(optional)
    allowed = set(required) | set(optional)
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(sorted(allowed))}"
            raise _Invalid(key_node, where, f"unknown key '{key}'{extra}")
        if key in out:
            raise _Invalid(key_node, where, f"key '{key}' appears twice")
        out[key] = value_node
    for key in required:
        if key not in out:
            raise _Invalid(node, where, f"missing required field '{key}'")
    return out


def _optional(fields: dict[str, yaml.Node], key: str, where: str, parse: Callable[[yaml.Node, str], Any]) -> Any:
    node = fields.get(key)
    if node is None or _is_null(node):
        return None
    return parse(node, f"{where}.{key}")


def _percent(node: yaml.Node, where: str) -> float:
    value = _number(node, where)
    if not 0.0 <= value <= 100.0:
        raise _Invalid(node, where, f"{value:g} is out of range 0-100")
    return value


def _positive(node: yaml.Node, where: str) -> float:
    value = _number(node, where)
    if value <= 0:
        raise _Invalid(node, where, f"{value:g} must be greater than 0")
    return value


def _pair(node: yaml.Node, where: str) -> tuple[int, int]:
    items = _seq(node, where)
    if len(items) != 2:
        raise _Invalid(node, where, f"expected [height, width], got {len(items)} values")
    values = tuple(int(_number(item, where, integer=True)) for item in items)
    if min(values) <= 0:
        raise _Invalid(node, where, "sizes must be positive")
    return values  # type: ignore[return-value]


def _class_count(node: yaml.Node, where: str) -> int:
    value = int(_number(node, where, integer=True))
    if not 1 <= value <= 256:
        raise _Invalid(node, where, f"{value} is out of range 1-256 (label PNGs hold 8-bit class ids)")
    return value


def _label_id(node: yaml.Node, where: str) -> int:
    value = int(_number(node, where, integer=True))
    if not 0 <= value <= 255:
        raise _Invalid(node, where, f"{value} is out of range 0-255 (label PNGs hold 8-bit ids)")
    return value


def _choice(options: tuple[Any, ...], *, integer: bool = False) -> Callable[[yaml.Node, str], Any]:
    def parse(node: yaml.Node, where: str) -> Any:
        value = _number(node, where, integer=True) if integer else _str(node, where)
        if value not in options:
            raise _Invalid(node, where, f"{value!r} is not one of {', '.join(map(str, options))}")
        return value

    return parse


_EVAL_REQUIRED = ("output_stride", "scales", "flip", "miou", "split")
_EVAL_OPTIONAL = ("madds_billion", "runtime_s", "latency_ms", "pixel_accuracy")


def _eval_row(node: yaml.Node, where: str) -> EvalRow:
    f = _mapping(node, where, _EVAL_REQUIRED, _EVAL_OPTIONAL)
    scale_nodes = _seq(f["scales"], f"{where}.scales")
    if not scale_nodes:
        raise _Invalid(f["scales"], f"{where}.scales", "the scale list is empty; use [1.0] for single scale")
    scales = tuple(_positive(n, f"{where}.scales") for n in scale_nodes)
    if list(scales) != sorted(set(scales)):
        raise _Invalid(f["scales"], f"{where}.scales", f"scales must be strictly increasing, got {list(scales)}")
    return EvalRow(
        output_stride=_choice(OUTPUT_STRIDES, integer=True)(f["output_stride"], f"{where}.output_stride"),
        scales=scales,
        flip=_bool(f["flip"], f"{where}.flip"),
        madds_billion=_optional(f, "madds_billion", where, _positive),
        runtime_s=_optional(f, "runtime_s", where, _positive),
        latency_ms=_optional(f, "latency_ms", where, _positive),
        miou=_percent(f["miou"], f"{where}.miou"),
        pixel_accuracy=_optional(f, "pixel_accuracy", where, _percent),
        split=_choice(SPLITS)(f["split"], f"{where}.split"),
    )


_CKPT_REQUIRED = ("name", "dataset", "backbone", "pretrained_on", "url", "size_mb", "contents", "evals")
_CKPT_OPTIONAL = (
    "depth_multiplier", "aspp", "decoder", "input_size", "eval_crop", "num_classes", "ignore_label",
    "model_flags", "sha256", "class_names", "reported_on", "madds_input_size", "madds_note",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _checkpoint(node: yaml.Node, where: str) -> Checkpoint:
    if isinstance(node, yaml.MappingNode):  # name the entry in messages as soon as its name is known
        for key, value in node.value:
            if getattr(key, "value", None) == "name" and isinstance(value, yaml.ScalarNode) and value.value:
                where = f"checkpoint '{value.value}'"
    f = _mapping(node, where, _CKPT_REQUIRED, _CKPT_OPTIONAL)
    name = _str(f["name"], f"{where}.name")
    if not _NAME_RE.match(name):
        raise _Invalid(f["name"], f"{where}.name", f"'{name}' is not a valid name (letters, digits, _ . -)")
    where = f"checkpoint '{name}'"
    url = _str(f["url"], f"{where}.url").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.endswith((".tar.gz", ".tgz")):
        raise _Invalid(f["url"], f"{where}.url", f"'{redact(url)}' is not an http(s) URL of a .tar.gz archive")
    contents = tuple(_str(n, f"{where}.contents") for n in _seq(f["contents"], f"{where}.contents"))
    if not contents:
        raise _Invalid(f["contents"], f"{where}.contents", "list at least one expected archive member")
    pretrained = tuple(_str(n, f"{where}.pretrained_on") for n in _seq(f["pretrained_on"], f"{where}.pretrained_on"))
    flags: dict[str, str] = {}
    if "model_flags" in f and not _is_null(f["model_flags"]):
        flag_node = f["model_flags"]
        if not isinstance(flag_node, yaml.MappingNode):
            raise _Invalid(flag_node, f"{where}.model_flags", f"expected a mapping, got {_show(flag_node)}")
        for k, v in flag_node.value:
            flags[_str(k, f"{where}.model_flags")] = str(_scalar(v))
    sha = _optional(f, "sha256", where, _str)
    if sha is not None and not _SHA_RE.match(sha):
        raise _Invalid(f["sha256"], f"{where}.sha256", "expected 64 lowercase hex digits or null")
    evals = tuple(
        _eval_row(n, f"{where}.evals[{i}]") for i, n in enumerate(_seq(f["evals"], f"{where}.evals"))
    )
    num_classes = _optional(f, "num_classes", where, _class_count)
    ignore_label = _optional(f, "ignore_label", where, _label_id)
    if ignore_label is not None and num_classes is not None and 0 < ignore_label < num_classes:
        raise _Invalid(f["ignore_label"], f"{where}.ignore_label",
                       f"{ignore_label} is a class id (num_classes is {num_classes}), so that class would never be "
                       f"scored; use 255 (VOC, Cityscapes), 0 (ADE20K's 'other'), or an id from {num_classes} to 255")
    class_names = None
    if "class_names" in f and not _is_null(f["class_names"]):
        class_names = tuple(_str(n, f"{where}.class_names") for n in _seq(f["class_names"], f"{where}.class_names"))
        if num_classes is None or len(class_names) != num_classes:
            raise _Invalid(f["class_names"], f"{where}.class_names",
                           f"{len(class_names)} names given but num_classes is {num_classes}")
    return Checkpoint(
        name=name,
        dataset=_choice(REGISTRY_DATASETS)(f["dataset"], f"{where}.dataset"),
        backbone=_str(f["backbone"], f"{where}.backbone"),
        pretrained_on=pretrained,
        url=url,
        size_mb=_optional(f, "size_mb", where, _positive),
        contents=contents,
        evals=evals,
        depth_multiplier=_optional(f, "depth_multiplier", where, _positive),
        aspp=_optional(f, "aspp", where, _str),
        decoder=_optional(f, "decoder", where, _str),
        input_size=_optional(f, "input_size", where, _pair),
        eval_crop=_optional(f, "eval_crop", where, _pair),
        num_classes=num_classes,
        ignore_label=ignore_label,
        model_flags=flags,
        sha256=sha,
        class_names=class_names,
        reported_on=_optional(f, "reported_on", where, _str),
        madds_input_size=_optional(f, "madds_input_size", where, _pair),
        madds_note=_optional(f, "madds_note", where, _str),
        line=node.start_mark.line + 1,
    )


# ---------------------------------------------------------------- the Registry


class Registry:
    """An ordered, validated collection of checkpoints, with lookup and filtering."""

    def __init__(self, checkpoints: Iterable[Checkpoint], source: str = "<memory>") -> None:
        self.source = source
        self._by_name: dict[str, Checkpoint] = {}
        for ckpt in checkpoints:
            if ckpt.name in self._by_name:
                raise RegistryError(f"{source}:{ckpt.line}: checkpoint '{ckpt.name}' is listed twice")
            self._by_name[ckpt.name] = ckpt

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Checkpoint:
        """The checkpoint called ``name``; an unknown name suggests the closest one."""
        try:
            return self._by_name[name]
        except KeyError:
            pass
        lowered = {n.lower(): n for n in self._by_name}
        if name.lower() in lowered:
            return self._by_name[lowered[name.lower()]]
        hint = difflib.get_close_matches(name, self.names, n=1, cutoff=0.4)
        suffix = f"; did you mean '{hint[0]}'?" if hint else "; run 'zoo list' to see the names"
        raise UnknownCheckpointError(f"unknown checkpoint '{name}'{suffix}")

    def resolve(self, names_or_patterns: Iterable[str]) -> list[Checkpoint]:
        """Checkpoints for exact names or wildcard patterns, in registry order; unknown names fail."""
        chosen: dict[str, Checkpoint] = {}
        for item in names_or_patterns:
            if is_pattern(item):
                matched = self.filter([item])
                if not matched:
                    raise UnknownCheckpointError(f"pattern '{item}' matches no checkpoint; run 'zoo list'")
                for ckpt in matched:
                    chosen.setdefault(ckpt.name, ckpt)
            else:
                ckpt = self.get(item)
                chosen.setdefault(ckpt.name, ckpt)
        return list(chosen.values())

    def filter(
        self,
        patterns: Iterable[str] = (),
        *,
        dataset: str | None = None,
        backbone: str | None = None,
        min_miou: float | None = None,
        max_size_mb: float | None = None,
        predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints matching any of the wildcard ``patterns`` (case-insensitive) and every filter."""
        patterns = list(patterns)
        out = []
        for ckpt in self:
            if patterns and not any(name_matches(p, ckpt.name) for p in patterns):
                continue
            if dataset and ckpt.dataset != dataset.lower():
                continue
            if backbone and not fnmatch.fnmatchcase(ckpt.backbone.lower(), _contains(backbone.lower())):
                continue
            if min_miou is not None and (ckpt.best_miou is None or ckpt.best_miou < min_miou):
                continue
            if max_size_mb is not None and (ckpt.size_mb is None or ckpt.size_mb > max_size_mb):
                continue
            if predicate is not None and not predicate(ckpt):
                continue
            out.append(ckpt)
        return out


def is_pattern(text: str) -> bool:
    """Whether a command-line name is a wildcard pattern (``*``, ``?``, ``[...]``) rather than a name."""
    return any(c in text for c in "*?[")


def name_matches(pattern: str, name: str) -> bool:
    """The one rule every command uses to match a checkpoint name: shell wildcards, case-insensitive."""
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _contains(pattern: str) -> str:
    """A backbone filter matches as a substring unless it already has wildcards ('xception' → '*xception*')."""
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def sort_checkpoints(checkpoints: list[Checkpoint], key: str) -> list[Checkpoint]:
    """Sort by one of SORT_FIELDS; unknown values (None) sort last; mIOU sorts best first."""
    if key not in SORT_FIELDS:
        raise RegistryError(f"cannot sort by '{key}'; choose one of {', '.join(SORT_FIELDS)}")
    getters: dict[str, Callable[[Checkpoint], Any]] = {
        "name": lambda c: c.name.lower(),
        "dataset": lambda c: c.dataset,
        "backbone": lambda c: c.backbone.lower(),
        "miou": lambda c: None if c.best_miou is None else -c.best_miou,
        "madds": lambda c: c.min_madds,
        "size": lambda c: c.size_mb,
    }
    get = getters[key]
    return sorted(checkpoints, key=lambda c: (get(c) is None, get(c) if get(c) is not None else 0))


def parse_registry(text: str, source: str = "<string>") -> Registry:
    """Parse and validate registry YAML text; errors read ``source:line: where: what``."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RegistryError(f"{source}:{line}: not valid YAML: {problem}") from None
    if root is None:
        raise RegistryError(f"{source}:1: the registry is empty; it needs a 'checkpoints:' list")
    try:
        top = _mapping(root, "registry", ("version", "checkpoints"), ())
        version = _number(top["version"], "version", integer=True)
        if version != 1:
            raise _Invalid(top["version"], "version", f"unsupported registry version {version}; this zoo reads 1")
        items = _seq(top["checkpoints"], "checkpoints")
        checkpoints = []
        seen: dict[str, int] = {}
        for i, node in enumerate(items):
            ckpt = _checkpoint(node, f"checkpoints[{i}]")
            if ckpt.name in seen:
                raise _Invalid(node, f"checkpoint '{ckpt.name}'", f"duplicate name (first defined at line {seen[ckpt.name]})")
            seen[ckpt.name] = ckpt.line
            checkpoints.append(ckpt)
    except _Invalid as exc:
        raise RegistryError(f"{source}:{exc.line}: {exc.where}: {exc.message}") from None
    return Registry(checkpoints, source)


def builtin_registry_path() -> Path:
    """The registry shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "registry.yaml"


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate a registry file (the built-in one when ``path`` is None)."""
    path = Path(path) if path is not None else builtin_registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"registry file {path} does not exist; check ZOO_REGISTRY or --registry") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read registry file {path}: {exc}") from None
    return parse_registry(text, str(path))
