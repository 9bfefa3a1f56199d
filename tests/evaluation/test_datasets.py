"""Raw dataset layouts, image decoding of odd files, Cityscapes id mapping, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.support.datasets import TRAINID_TO_ID, make_ade20k, make_cityscapes, make_voc
from zoo_cli.errors import DatasetError, UsageError
from zoo_cli.evaluation.datasets import (
    CITYSCAPES_ID_TO_TRAINID,
    cityscapes_trainids,
    detect_layout,
    load_image,
    load_label,
    open_dataset,
    resize_long_side,
)


def test_voc_layout_lists_split_and_loads_palette_indices(tmp_path):
    expected = make_voc(tmp_path / "VOC2012", n=3)
    ds = open_dataset(tmp_path / "VOC2012")
    assert ds.kind == "voc" and ds.num_classes == 21 and ds.ignore_label == 255
    assert [s.name for s in ds] == list(expected)
    for sample in ds:
        image, label = ds.load(sample)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert np.array_equal(label, expected[sample.name][1])  # indices, not palette colours


def test_voc_found_from_vocdevkit_root(tmp_path):
    make_voc(tmp_path / "VOCdevkit" / "VOC2012", n=1)
    assert detect_layout(tmp_path) == "voc"
    assert len(open_dataset(tmp_path, "voc")) == 1


def test_voc_listed_image_missing_names_the_file(tmp_path):
    make_voc(tmp_path, n=1, extra_listed=["2007_999999"])
    with pytest.raises(DatasetError, match="2007_999999.jpg"):
        open_dataset(tmp_path, "voc")


def test_voc_missing_split_list(tmp_path):
    make_voc(tmp_path, n=1)
    with pytest.raises(DatasetError, match="test.txt"):
        open_dataset(tmp_path, "voc", "test")


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    expected = make_cityscapes(tmp_path, n=2, label_kind="labelIds")
    ds = open_dataset(tmp_path)
    assert ds.kind == "cityscapes"
    for sample in ds:
        assert sample.label_path.name.endswith("_gtFine_labelIds.png")
        _, label = ds.load(sample)
        assert np.array_equal(label, expected[sample.name][1])


def test_cityscapes_train_ids_preferred_when_present(tmp_path):
    expected = make_cityscapes(tmp_path, n=2, label_kind="labelTrainIds")
    ds = open_dataset(tmp_path, "cityscapes")
    for sample in ds:
        assert sample.label_path.name.endswith("_labelTrainIds.png")
        assert np.array_equal(ds.load(sample)[1], expected[sample.name][1])


def test_cityscapes_mapping_table():
    ids = np.arange(256, dtype=np.uint8)
    train = cityscapes_trainids(ids)
    assert sorted(CITYSCAPES_ID_TO_TRAINID.values()) == list(range(19))
    assert train[7] == 0 and train[26] == 13 and train[33] == 18  # road, car, bicycle
    assert all(train[i] == 255 for i in (0, 1, 4, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255))
    assert TRAINID_TO_ID[11] == 24  # person
    assert cityscapes_trainids(np.array([-1, 24], dtype=np.int32)).tolist() == [255, 11]  # license plate -1


def test_cityscapes_missing_label_names_it(tmp_path):
    make_cityscapes(tmp_path, n=1)
    for f in (tmp_path / "gtFine").rglob("*.png"):
        f.unlink()
    with pytest.raises(DatasetError, match="_gtFine_labelIds.png"):
        open_dataset(tmp_path)


def test_ade20k_layout_and_long_side_resize(tmp_path):
    expected = make_ade20k(tmp_path, n=2, size=(20, 33))
    ds = open_dataset(tmp_path, split="val")
    assert ds.kind == "ade20k" and ds.num_classes == 151 and ds.ignore_label == 0
    image, label = ds.load(ds.samples[0])
    assert np.array_equal(label, expected[ds.samples[0].name][1])
    resized = open_dataset(tmp_path, "ade20k", long_side=66)
    image2, label2 = resized.load(resized.samples[0])
    assert image2.shape == (40, 66, 3) and label2.shape == (40, 66)
    assert set(np.unique(label2)) <= set(np.unique(label))  # nearest neighbour never invents a class
    assert np.array_equal(label2[::2, ::2], label)  # exact 2x: every source pixel kept


def test_resize_long_side_portrait():
    image = np.zeros((30, 10, 3), dtype=np.uint8)
    out, lab = resize_long_side(image, np.zeros((30, 10), dtype=np.uint8), 15)
    assert out.shape == (15, 5, 3) and lab.shape == (15, 5)


def test_label_image_size_mismatch_names_the_file(tmp_path):
    make_voc(tmp_path, n=1)
    label_path = next((tmp_path / "SegmentationClass").glob("*.png"))
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8), mode="P").save(label_path)
    ds = open_dataset(tmp_path, "voc")
    with pytest.raises(DatasetError, match=label_path.name):
        ds.load(ds.samples[0])


def test_unknown_layout(tmp_path):
    with pytest.raises(UsageError, match="no VOC"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")


# ------------------------------------------------------------------ odd image files


@pytest.fixture
def rgb():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


def test_grayscale_is_expanded(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (12, 16, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgb)


def test_palette_image_gives_colours(tmp_path):
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (768 - 9))
    img.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out[0, 1].tolist() == [255, 0, 0] and out[1, 0].tolist() == [0, 0, 255]


def test_16bit_png_keeps_the_high_byte(tmp_path):
    values = np.array([[0, 256, 4095], [32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    assert out[..., 0].tolist() == (values >> 8).tolist()  # scaled, not clipped at 255


def test_cmyk_jpeg_is_converted(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red in CMYK
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (6, 8, 3)
    assert out[..., 0].min() > 200 and out[..., 1].max() < 60 and out[..., 2].max() < 60


def test_truncated_jpeg_is_a_dataset_error_naming_the_file(tmp_path, rgb):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.kron(rgb, np.ones((8, 8, 1), dtype=np.uint8))).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cut.jpg.*truncated"):
        load_image(path)


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(DatasetError, match="x.png"):
        load_image(tmp_path / "x.png")


def test_colour_label_is_rejected(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "l.png")
    with pytest.raises(DatasetError, match="single-channel"):
        load_label(tmp_path / "l.png")
