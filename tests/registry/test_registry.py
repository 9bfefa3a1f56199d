"""Registry loading: schema validation with line numbers, lookup, wildcard filtering, sorting."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo_cli.errors import RegistryError, UnknownCheckpointError
from zoo_cli.registry.catalog import builtin_registry_path, load_registry, parse_registry, sort_checkpoints

GOOD_ENTRY = """\
  - name: tiny_voc
    dataset: voc
    backbone: MobileNet-v2
    pretrained_on: [ImageNet]
    url: http://127.0.0.1:1/models/tiny.tar.gz
    size_mb: 1.5
    contents: [frozen_inference_graph.pb, model.ckpt.index]
    eval_crop: [65, 65]
    evals:
      - output_stride: 8
        scales: [0.5, 1.0]
        flip: true
        miou: 50.0
        split: val
"""


def registry_text(entry: str = GOOD_ENTRY, extra: str = "") -> str:
    return "version: 1\ncheckpoints:\n" + entry + extra


def error_of(text: str) -> str:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "reg.yaml")
    return str(info.value)


def test_good_registry_parses():
    reg = parse_registry(registry_text())
    ckpt = reg.get("tiny_voc")
    assert ckpt.evals[0].scales == (0.5, 1.0) and ckpt.evals[0].flip is True
    assert ckpt.evals[0].madds_billion is None  # optional numbers default to null
    assert ckpt.has_frozen_graph and ckpt.archive_filename == "tiny.tar.gz"


@pytest.mark.parametrize("old,new,line,message", [
    ("        miou: 50.0", "        miou: 150.0", 15, "miou: 150 is out of range 0-100"),
    ("        scales: [0.5, 1.0]", "        scales: []", 13, "scale list is empty"),
    ("        scales: [0.5, 1.0]", "        scales: [1.0, 0.5]", 13, "strictly increasing"),
    ("    size_mb: 1.5", "    size_mb: big", 8, "expected a number, got 'big'"),
    ("    dataset: voc", "    dataset: coco", 4, "'coco' is not one of voc, cityscapes, ade20k, imagenet"),
    ("    backbone: MobileNet-v2\n", "    backbone: MobileNet-v2\n    colour: red\n", 6, "unknown key 'colour'"),
    ("        flip: true", "        flip: maybe", 14, "expected true or false"),
    ("        split: val", "        split: train", 16, "'train' is not one of val, test"),
    ("    url: http://127.0.0.1:1/models/tiny.tar.gz", "    url: ftp://x/y.zip", 7, "not an http(s) URL"),
    ("      - output_stride: 8", "      - output_stride: 7", 12, "7 is not one of 4, 8, 16, 32"),
    ("    eval_crop: [65, 65]", "    eval_crop: [65]", 10, "expected [height, width]"),
])
def test_bad_values_name_file_line_and_problem(old, new, line, message):
    text = registry_text(GOOD_ENTRY.replace(old, new))
    assert text != registry_text()
    err = error_of(text)
    assert err.startswith(f"reg.yaml:{line}: ")
    assert message in err


def test_class_names_must_match_the_class_count():
    entry = GOOD_ENTRY.replace("    eval_crop: [65, 65]\n", "    eval_crop: [65, 65]\n    num_classes: 2\n"
                               "    class_names: [background, cat, dog]\n")
    assert "3 names given but num_classes is 2" in error_of(registry_text(entry))
    reg = parse_registry(registry_text(entry.replace("[background, cat, dog]", "[background, cat]")))
    assert reg.get("tiny_voc").class_names == ("background", "cat")


def test_reported_machine_defaults_to_the_seed_one():
    assert "E5-1650" in parse_registry(registry_text()).get("tiny_voc").reported_machine
    entry = GOOD_ENTRY.replace("    size_mb: 1.5\n", "    size_mb: 1.5\n    reported_on: my laptop\n")
    assert parse_registry(registry_text(entry)).get("tiny_voc").reported_machine == "my laptop"


def test_missing_field_points_at_the_entry():
    err = error_of(registry_text(GOOD_ENTRY.replace("    size_mb: 1.5\n", "")))
    assert err.startswith("reg.yaml:3: checkpoint 'tiny_voc': missing required field 'size_mb'")


def test_unknown_key_suggests_the_right_one():
    err = error_of(registry_text(GOOD_ENTRY.replace("    size_mb:", "    sizemb:")))
    assert "unknown key 'sizemb'; did you mean 'size_mb'?" in err


def test_duplicate_name_is_refused_with_both_lines():
    err = error_of(registry_text(extra=GOOD_ENTRY))
    assert err.startswith("reg.yaml:17: ") and "duplicate name (first defined at line 3)" in err


def test_yaml_syntax_error_has_a_line():
    err = error_of("version: 1\ncheckpoints:\n  - name: [unclosed\n")
    assert err.startswith("reg.yaml:") and "not valid YAML" in err


def test_empty_file_and_wrong_version():
    assert "empty" in error_of("")
    assert "unsupported registry version 2" in error_of("version: 2\ncheckpoints: []\n")


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(RegistryError, match="does not exist; check ZOO_REGISTRY or --registry"):
        load_registry(tmp_path / "nope.yaml")


def test_packaged_registry_is_the_repository_one():
    root = Path(__file__).resolve().parents[2] / "registry.yaml"
    assert builtin_registry_path().read_bytes() == root.read_bytes()


REG = load_registry()


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownCheckpointError, match="unknown checkpoint 'xception65_coco_voc_trainvall'; "
                                                     "did you mean 'xception65_coco_voc_trainval'\\?"):
        REG.get("xception65_coco_voc_trainvall")


def test_lookup_is_case_insensitive_as_a_fallback():
    assert REG.get("edgetpu-deeplab").name == "EdgeTPU-DeepLab"


def test_wildcard_filters():
    names = [c.name for c in REG.filter(["*xception*"], dataset="voc")]
    assert names == ["xception65_coco_voc_trainaug", "xception65_coco_voc_trainval"]
    assert {c.name for c in REG.filter(backbone="mobilenet-v3")} == {
        "mobilenetv3_large_cityscapes_trainfine", "mobilenetv3_small_cityscapes_trainfine"}
    small = REG.filter(max_size_mb=10)
    assert [c.name for c in small] == ["mobilenetv2_dm05_coco_voc_trainaug", "mobilenetv2_dm05_coco_voc_trainval",
                                       "mobilenetv3_small_cityscapes_trainfine"]
    assert {c.name for c in REG.filter(min_miou=85)} == {"xception65_coco_voc_trainval"}


def test_resolve_names_and_patterns_in_registry_order_without_duplicates():
    got = REG.resolve(["xception65_coco_voc_trainval", "xception65_coco_voc_*"])
    assert [c.name for c in got] == ["xception65_coco_voc_trainval", "xception65_coco_voc_trainaug"]
    with pytest.raises(UnknownCheckpointError, match="matches no checkpoint"):
        REG.resolve(["nothing*"])


def test_sort_by_miou_best_first_unknown_last():
    ordered = sort_checkpoints(list(REG), "miou")
    assert ordered[0].name == "xception65_coco_voc_trainval"
    assert all(c.best_miou is None for c in ordered[-6:])
    by_size = sort_checkpoints(list(REG), "size")
    sizes = [c.size_mb for c in by_size if c.size_mb is not None]
    assert sizes == sorted(sizes) and by_size[-1].size_mb is None
