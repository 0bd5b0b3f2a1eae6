import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sklearn_backdoor.datasets as datasets_module
from sklearn_backdoor.datasets import (
    CIFAR10_CLASSES,
    load_cifar10,
    load_digits_images,
    load_image_folder,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_CIFAR_ZIP = (REPO_ROOT / ".." / "shared" / "data" / "cifar10-jpg.zip").resolve()

# Class folders written in this (non-alphabetical) order; labels must still
# follow CIFAR10_CLASSES.
FOLDER_ORDER = ("truck", "cat", "airplane", "ship", "automobile", "bird")
FOLDER_ORDER += ("dog", "deer", "horse", "frog")


def _pixel_image(label, index, size=4):
    """A distinct, reproducible RGB image for each (label, index)."""
    values = np.arange(size * size * 3, dtype=np.int64).reshape(size, size, 3)
    return ((values + 31 * label + 7 * index) % 256).astype(np.uint8)


def _write_split_folders(root, n_per_class=2):
    for split in ("train", "test"):
        for name in FOLDER_ORDER:
            label = CIFAR10_CLASSES.index(name)
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(n_per_class):
                image = Image.fromarray(_pixel_image(label, index))
                image.save(folder / f"{index:04d}.png")


def _expected_split(n_per_class=2):
    labels = np.repeat(np.arange(10), n_per_class)
    indices = np.tile(np.arange(n_per_class), 10)
    X = np.stack([_pixel_image(lab, i) for lab, i in zip(labels, indices, strict=True)])
    return X, labels


def _write_zip(folder_root, zip_path, top_level=""):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(folder_root.rglob("*.png"), reverse=True):
            arcname = top_level + file.relative_to(folder_root).as_posix()
            archive.write(file, arcname)


def _write_batches(root):
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for offset, name in enumerate(names):
        hwc = np.stack([_pixel_image(9, offset, 32), _pixel_image(0, offset, 32)])
        planar = hwc.transpose(0, 3, 1, 2).reshape(2, 3072)
        batch = {b"data": planar, b"labels": [9, 0], b"batch_label": b"x"}
        (root / name).write_bytes(pickle.dumps(batch))


def test_load_digits_images_shape_dtype_values():
    X, y = load_digits_images()
    assert X.shape == (1797, 8, 8, 1)
    assert X.dtype == np.uint8
    assert y.dtype == np.int64
    assert int(X.max()) == 255
    assert int(X[0].sum()) == 4687
    # 0..16 -> round(v * 255 / 16): 5 -> 80, 13 -> 207, 8 -> 128 (127.5 rounds even)
    assert X[0, 0, :4, 0].tolist() == [0, 0, 80, 207]
    assert X[0, 3, 5, 0] == 128
    assert y[:10].tolist() == list(range(10))


def test_load_digits_images_bunch():
    bunch = load_digits_images(return_X_y=False)
    assert bunch.data.shape == (1797, 8, 8, 1)
    assert bunch.target_names.tolist() == list(range(10))


def test_load_cifar10_batches_round_trip(tmp_path):
    _write_batches(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):
        X_train, y_train, X_test, y_test = load_cifar10(path, cache_dir=tmp_path)
        assert X_train.shape == (10, 32, 32, 3)
        assert X_train.dtype == np.uint8 and y_train.dtype == np.int64
        assert y_train.tolist() == [9, 0] * 5
        assert y_test.tolist() == [9, 0]
        np.testing.assert_array_equal(X_train[2], _pixel_image(9, 1, 32))
        np.testing.assert_array_equal(X_train[9], _pixel_image(0, 4, 32))
        np.testing.assert_array_equal(X_test[1], _pixel_image(0, 5, 32))


def test_load_cifar10_image_folder_maps_standard_labels(tmp_path):
    _write_split_folders(tmp_path / "data")
    X_train, y_train, X_test, y_test = load_cifar10(
        tmp_path / "data", cache_dir=tmp_path / "cache"
    )
    X_expected, y_expected = _expected_split()
    np.testing.assert_array_equal(X_train, X_expected)
    np.testing.assert_array_equal(y_train, y_expected)
    np.testing.assert_array_equal(X_test, X_expected)
    assert y_test.tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        6,
        6,
        7,
        7,
        8,
        8,
        9,
        9,
    ]


@pytest.mark.parametrize("top_level", ["", "cifar10/"])
def test_load_cifar10_zip(tmp_path, top_level):
    _write_split_folders(tmp_path / "data")
    _write_zip(tmp_path / "data", tmp_path / "cifar.zip", top_level)
    X_train, y_train, X_test, y_test = load_cifar10(
        tmp_path / "cifar.zip", cache_dir=tmp_path / "cache"
    )
    X_expected, y_expected = _expected_split()
    np.testing.assert_array_equal(X_train, X_expected)
    np.testing.assert_array_equal(y_train, y_expected)
    np.testing.assert_array_equal(X_test, X_expected)
    np.testing.assert_array_equal(y_test, y_expected)


def test_load_cifar10_cache_hit_skips_decoding(tmp_path, monkeypatch):
    _write_split_folders(tmp_path / "data")
    _write_zip(tmp_path / "data", tmp_path / "cifar.zip")
    first = load_cifar10(tmp_path / "cifar.zip", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
    assert list((tmp_path / "cache").glob("*.tmp")) == []

    def fail_decode(data):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(datasets_module, "_decode_image", fail_decode)
    second = load_cifar10(tmp_path / "cifar.zip", cache_dir=tmp_path / "cache")
    for cached, decoded in zip(second, first, strict=True):
        np.testing.assert_array_equal(cached, decoded)
        assert cached.dtype == decoded.dtype


def test_load_cifar10_cache_dir_from_environment(tmp_path, monkeypatch):
    _write_split_folders(tmp_path / "data")
    monkeypatch.setenv("SKLEARN_BACKDOOR_CACHE", str(tmp_path / "env_cache"))
    load_cifar10(tmp_path / "data")
    assert len(list((tmp_path / "env_cache").glob("*.npy"))) == 4


def test_load_cifar10_changed_source_is_decoded_again(tmp_path):
    _write_split_folders(tmp_path / "data")
    zip_path = tmp_path / "cifar.zip"
    _write_zip(tmp_path / "data", zip_path)
    load_cifar10(zip_path, cache_dir=tmp_path / "cache")
    changed = Image.fromarray(np.full((4, 4, 3), 200, np.uint8))
    changed.save(tmp_path / "data" / "train" / "airplane" / "0000.png")
    zip_path.unlink()
    _write_zip(tmp_path / "data", zip_path, top_level="renamed/")
    X_train, *_ = load_cifar10(zip_path, cache_dir=tmp_path / "cache")
    assert X_train[0].tolist() == np.full((4, 4, 3), 200).tolist()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8


def test_load_image_folder_default_and_given_classes(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        Image.fromarray(_pixel_image(ord(name), 0)).save(tmp_path / name / "x.png")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    X, y = load_image_folder(tmp_path)
    assert y.tolist() == [0, 1]
    np.testing.assert_array_equal(X[0], _pixel_image(ord("a"), 0))
    _, y = load_image_folder(tmp_path, class_names=["b", "a"])
    assert y.tolist() == [1, 0]


def test_load_image_folder_rejects_mixed_sizes(tmp_path):
    for name, size in (("a", 4), ("b", 5)):
        (tmp_path / name).mkdir()
        Image.fromarray(_pixel_image(0, 0, size)).save(tmp_path / name / "x.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_image_folder(tmp_path)


def test_load_image_folder_rejects_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="path=.*nowhere.*not a directory"):
        load_image_folder(tmp_path / "nowhere")


def test_load_cifar10_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="path=.*nowhere"):
        load_cifar10(tmp_path / "nowhere", cache_dir=tmp_path)


def test_load_cifar10_unrecognised_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ValueError, match="not a CIFAR-10 layout"):
        load_cifar10(tmp_path / "stuff", cache_dir=tmp_path)
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ValueError, match="not a CIFAR-10 layout"):
        load_cifar10(tmp_path / "plain.txt", cache_dir=tmp_path)


def test_load_cifar10_zip_without_splits(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("a/train/cat/0.png", b"")
        archive.writestr("b/test/cat/0.png", b"")
    with pytest.raises(ValueError, match="zip without 'train/' and 'test/'"):
        load_cifar10(tmp_path / "bad.zip", cache_dir=tmp_path)


def test_load_cifar10_missing_class_folder(tmp_path):
    _write_split_folders(tmp_path / "data")
    for file in (tmp_path / "data" / "test" / "horse").iterdir():
        file.unlink()
    (tmp_path / "data" / "test" / "horse").rmdir()
    with pytest.raises(ValueError, match="'horse' is missing"):
        load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache")


def test_load_cifar10_unknown_class_folder(tmp_path):
    _write_split_folders(tmp_path / "data")
    (tmp_path / "data" / "train" / "unicorn").mkdir()
    Image.fromarray(_pixel_image(0, 0)).save(tmp_path / "data/train/unicorn/0.png")
    with pytest.raises(ValueError, match="Unknown class folder 'unicorn'"):
        load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache")


def test_load_cifar10_missing_batch_file(tmp_path):
    _write_batches(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(ValueError, match="test_batch.*missing"):
        load_cifar10(tmp_path, cache_dir=tmp_path)


def test_load_cifar10_does_not_write_cache_for_batches(tmp_path):
    _write_batches(tmp_path / "batches")
    load_cifar10(tmp_path / "batches", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_load_cifar10_real_zip(tmp_path):
    if not REAL_CIFAR_ZIP.is_file():
        pytest.skip(f"{REAL_CIFAR_ZIP} not available")
    X_train, y_train, X_test, y_test = load_cifar10(REAL_CIFAR_ZIP, cache_dir=tmp_path)
    assert X_train.shape == (50000, 32, 32, 3)
    assert X_test.shape == (10000, 32, 32, 3)
    assert X_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [5000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    cached = load_cifar10(REAL_CIFAR_ZIP, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached[0][:100], X_train[:100])
