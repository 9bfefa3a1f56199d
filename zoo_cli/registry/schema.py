"""The registry file's schema: YAML nodes validated into :class:`~zoo_cli.registry.types.Checkpoint` objects.

Every problem is reported as ``file:line: where: what is wrong`` (a :class:`~zoo_cli.errors.RegistryError`), so a
hand-edited registry is easy to fix. YAML is composed into nodes (not loaded into dicts) to keep line numbers.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import yaml

from zoo_cli.constants import REGISTRY_DATASETS
from zoo_cli.errors import RegistryError
from zoo_cli.registry.types import OUTPUT_STRIDES, SPLITS, Checkpoint, EvalRow
from zoo_cli.urls import redact


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


def parse_checkpoints(text: str, source: str = "<string>") -> list[Checkpoint]:
    """Parse and validate registry YAML text into its checkpoints; errors read ``source:line: where: what``."""
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
    return checkpoints

