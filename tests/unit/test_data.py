"""MVTec-layout loading and every documented bad-input error."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from drdc_trt.data import DatasetError, load_image, load_mask, load_split, make_synthetic_dataset, scan


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def small_root(tmp_path):
    return make_synthetic_dataset(tmp_path / "d", size=32, train_per_category=3, test_good_per_category=1,
                                  test_defect_per_type=1, seed=0)


def test_layout_scan_and_load(small_root):
    train = scan(small_root, "train")
    assert len(train) == 6 and {s.category for s in train} == {"brushed", "woven"}
    test = load_split(small_root, "test", 32)
    assert test.images.shape == (8, 3, 32, 32)
    # every image is its file's 8-bit RGB values v mapped to 2·v/255 − 1, channel order kept
    for i, s in enumerate(test.samples):
        with Image.open(s.path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64).transpose(2, 0, 1)
        np.testing.assert_allclose(test.images[i].numpy(), 2 * rgb / 255 - 1, rtol=0, atol=1e-6, err_msg=str(s.path))
    assert set(test.masks.unique().tolist()) <= {0.0, 1.0}
    for i, s in enumerate(test.samples):
        assert int(test.labels[i]) == (s.defect != "good")
        assert (test.masks[i].sum() > 0) == (s.defect != "good")


def test_synthetic_is_deterministic(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", size=32, train_per_category=2, test_good_per_category=1,
                               test_defect_per_type=1, seed=4)
    b = make_synthetic_dataset(tmp_path / "b", size=32, train_per_category=2, test_good_per_category=1,
                               test_defect_per_type=1, seed=4)
    for f in sorted(a.rglob("*.png")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()


def test_grayscale_becomes_three_channels_and_resized(tmp_path):
    p = _png(tmp_path / "g.png", (np.arange(50 * 40) % 256).astype(np.uint8).reshape(40, 50))
    x = load_image(p, 16)
    assert x.shape == (3, 16, 16)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan(tmp_path / "nope", "train")


def test_missing_split_folder(small_root):
    shutil.rmtree(small_root / "brushed" / "train")
    with pytest.raises(DatasetError, match=r"brushed/train: missing folder"):
        scan(small_root, "train", ["brushed"])


def test_empty_train_good(small_root):
    for f in (small_root / "woven" / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"woven/train/good: no images"):
        scan(small_root, "train")


def test_unreadable_image_names_the_file(small_root):
    bad = small_root / "brushed" / "train" / "good" / "000.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DatasetError, match=r"000\.png: unreadable image"):
        load_split(small_root, "train", 32)


def test_truncated_image_names_the_file(small_root):
    bad = small_root / "brushed" / "train" / "good" / "001.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"001\.png: unreadable image"):
        load_split(small_root, "train", 32)


def test_mask_size_mismatch(small_root):
    mask = small_root / "brushed" / "ground_truth" / "spot" / "000_mask.png"
    _png(mask, np.zeros((20, 20), np.uint8))
    with pytest.raises(DatasetError, match=r"000_mask\.png: mask size \(20, 20\) differs"):
        load_split(small_root, "test", 32, ["brushed"])


def test_missing_mask(small_root):
    (small_root / "woven" / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"crack/000\.png: ground-truth mask .* is missing"):
        scan(small_root, "test")


def test_load_mask_binarises(tmp_path):
    img = _png(tmp_path / "i.png", np.zeros((8, 8, 3), np.uint8))
    m = np.zeros((8, 8), np.uint8)
    m[:4] = 200
    m[4:6] = 100
    out = load_mask(_png(tmp_path / "m.png", m), img, 8)
    assert out.sum() == 32
