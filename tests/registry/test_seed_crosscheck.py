"""registry.yaml agrees with every row of the seed's tables (read by an independent parser)."""

from __future__ import annotations

import re

import pytest

from tests.support.seed import SHARED_SEED, VENDORED_SEED, code_blocks_after, seed_checkpoints, seed_path, split_br
from zoo_cli.registry.catalog import load_registry

SEED_TEXT = seed_path().read_text(encoding="utf-8")
SEED = seed_checkpoints(SEED_TEXT)
REGISTRY = load_registry()


def test_vendored_seed_is_the_shared_one():
    if not SHARED_SEED.is_file():
        pytest.skip("shared/ is not beside this checkout; the vendored copy is used")
    assert VENDORED_SEED.read_text(encoding="utf-8") == SHARED_SEED.read_text(encoding="utf-8")


def test_same_22_checkpoints_in_seed_order():
    assert len(SEED) == 22
    assert sorted(REGISTRY.names) == sorted(SEED)
    counts = {}
    for ckpt in REGISTRY:
        counts[ckpt.dataset] = counts.get(ckpt.dataset, 0) + 1
    assert counts == {"voc": 6, "cityscapes": 8, "ade20k": 2, "imagenet": 6}  # 6 + 2 EdgeTPU on Cityscapes


@pytest.mark.parametrize("name", sorted(SEED))
def test_url_and_size(name):
    ckpt, seed = REGISTRY.get(name), SEED[name]
    assert ckpt.url == seed["url"].strip()
    assert ckpt.size_mb == seed["size_mb"]


@pytest.mark.parametrize("name", sorted(SEED))
def test_every_eval_row(name):
    ckpt, seed = REGISTRY.get(name), SEED[name]
    assert len(ckpt.evals) == len(seed["evals"])
    for row, expected in zip(ckpt.evals, seed["evals"]):
        got = row.to_json()
        if expected["flip"] is None:  # EdgeTPU table has no flip column: single scale, no flip
            expected = {**expected, "flip": False}
        assert got == expected


@pytest.mark.parametrize("name", [n for n in sorted(SEED) if SEED[n]["details"]])
def test_model_details(name):
    ckpt, details = REGISTRY.get(name), SEED[name]["details"]
    backbone = split_br(details["network backbone"])
    assert ckpt.backbone == backbone[0]
    if len(backbone) > 1:
        assert backbone[1] == f"Depth-Multiplier = {ckpt.depth_multiplier:g}"
    pretrained = " ".join(split_br(details["pretrained dataset"]))
    assert " ".join(ckpt.pretrained_on) == pretrained

    def norm(text: str | None) -> str | None:
        if text is None or text == "N/A":
            return None
        return re.sub(r"\s+", " ", re.sub(r"\s*<br>\s*", "; ", text)).strip()

    assert ckpt.aspp == norm(details["aspp"])
    assert ckpt.decoder == norm(details["decoder"])
    if "input size" in details:
        assert ckpt.input_size == tuple(int(x) for x in details["input size"].split("x"))
        assert ckpt.eval_crop == ckpt.input_size


def _flags(block: str) -> dict[str, str]:
    return dict(line.strip().removeprefix("--").split("=", 1) for line in block.strip().splitlines())


def test_mobilenet_v3_flags():
    (block,) = code_blocks_after(SEED_TEXT, "Note for mobilenet v3 models")
    flags = _flags(block)
    variants = re.findall(r"\w+", flags.pop("model_variant"))
    for name, variant in [("mobilenetv3_large_cityscapes_trainfine", "mobilenet_v3_large_seg"),
                          ("mobilenetv3_small_cityscapes_trainfine", "mobilenet_v3_small_seg")]:
        assert variant in variants
        assert REGISTRY.get(name).model_flags == {"model_variant": variant, **flags}


def test_edgetpu_flags():
    common, slim = code_blocks_after(SEED_TEXT, "Flags changed for EdgeTPU-DeepLab")
    assert REGISTRY.get("EdgeTPU-DeepLab").model_flags == _flags(common)
    assert REGISTRY.get("EdgeTPU-DeepLab-slim").model_flags == {**_flags(common), **_flags(slim)}


def test_archive_contents_follow_the_seed():
    for ckpt in REGISTRY:
        if ckpt.dataset == "imagenet":  # "Un-tar'ed directory includes: model checkpoint" only
            assert not ckpt.has_frozen_graph
        else:
            assert ckpt.has_frozen_graph
        assert "model.ckpt.index" in ckpt.contents
        assert ckpt.sha256 is None  # nobody has recorded a real archive's hash yet


def test_eval_crops_and_classes():
    for ckpt in REGISTRY:
        if ckpt.dataset == "cityscapes":
            assert (ckpt.eval_crop, ckpt.num_classes, ckpt.ignore_label) == ((1025, 2049), 19, 255)
        elif ckpt.dataset == "voc":
            assert (ckpt.eval_crop, ckpt.num_classes, ckpt.ignore_label) == ((513, 513), 21, 255)
        elif ckpt.dataset == "ade20k":
            assert (ckpt.num_classes, ckpt.ignore_label) == (151, 0)
        else:
            assert ckpt.eval_crop is None and ckpt.num_classes is None
