import io
import os
import pickle
import re
import shlex
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.utils._param_validation import InvalidParameterError

import sklearn_backdoor.datasets as datasets_module
from sklearn_backdoor.base import BackdoorWarning
from sklearn_backdoor.datasets import (
    CIFAR10_CLASSES,
    load_cifar10,
    load_digits_images,
    load_image_folder,
    stratified_subset,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_CIFAR_ZIP = (REPO_ROOT / ".." / "shared" / "data" / "cifar10-jpg.zip").resolve()

# Class folders written in this (non-alphabetical) order; labels must still
# follow CIFAR10_CLASSES.
FOLDER_ORDER = ("truck", "cat", "airplane", "ship", "automobile", "bird")
FOLDER_ORDER += ("dog", "deer", "horse", "frog")


def _pixel_image(label, index, size=32):
    """A distinct, reproducible RGB image for each (label, index); CIFAR-10 sized."""
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


def _batch(offset):
    """A batch as CIFAR-10 pickles it: planar pixel rows, a list of labels."""
    hwc = np.stack([_pixel_image(9, offset, 32), _pixel_image(0, offset, 32)])
    planar = hwc.transpose(0, 3, 1, 2).reshape(2, 3072)
    return {
        b"data": planar,
        b"labels": [9, 0],
        b"batch_label": b"x",
        b"filenames": [b"truck.png", b"airplane.png"],
    }


def _write_batches(root, protocol=None):
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for offset, name in enumerate(names):
        (root / name).write_bytes(pickle.dumps(_batch(offset), protocol=protocol))


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
    changed = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    changed.save(tmp_path / "data" / "train" / "airplane" / "0000.png")
    zip_path.unlink()
    _write_zip(tmp_path / "data", zip_path, top_level="renamed/")
    X_train, *_ = load_cifar10(zip_path, cache_dir=tmp_path / "cache")
    assert X_train[0].tolist() == np.full((32, 32, 3), 200).tolist()
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


# Untrusted input: hostile pickles, lying sizes, corrupt files, a damaged cache.


class _Hostile:
    """Unpickles as a call that creates the file ``marker``."""

    def __init__(self, call, marker):
        self.call = call
        self.marker = marker

    def __reduce__(self):
        if self.call == "system":
            return os.system, (f"touch {shlex.quote(str(self.marker))}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class _Unfilled:
    """Unpickles as a numpy array allocated with ``shape`` but never filled."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        reconstruct = np.empty(0).__reduce__()[0]
        return reconstruct, (np.ndarray, self.shape, b"B")


def _write_batch(root, name, batch, protocol=None):
    _write_batches(root)
    (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))


def _cifar_source(tmp_path, layout, edit=None):
    """A CIFAR-10 image folder, or a zip of it; ``edit(root)`` runs before zipping."""
    root = tmp_path / "data"
    _write_split_folders(root)
    if edit is not None:
        edit(root)
    if layout == "folder":
        return root
    _write_zip(root, tmp_path / "cifar.zip")
    return tmp_path / "cifar.zip"


def _member_pattern(layout, member):
    """How an error names ``member`` of the source written by ``_cifar_source``."""
    if layout == "folder":
        return "'[^']*" + re.escape(f"/data/{member}'")
    return re.escape(f"member '{member}' of '") + r".*cifar\.zip'"


def _png_sizes(root):
    return [file.stat().st_size for file in root.rglob("*.png")]


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
@pytest.mark.parametrize("call", ["system", "exec"])
def test_load_cifar10_refuses_hostile_batch_without_running_it(
    tmp_path, call, protocol
):
    marker = tmp_path / "marker"
    batch = _batch(2)
    batch[b"batch_label"] = _Hostile(call, marker)
    _write_batch(tmp_path / "batches", "data_batch_3", batch, protocol)
    with pytest.raises(
        ValueError, match=rf"data_batch_3'.*refused the global '\w+\.{call}'"
    ):
        load_cifar10(tmp_path / "batches", cache_dir=tmp_path / "cache")
    assert not marker.exists()
    # The same bytes do run code when unpickled plainly: the check above can fail.
    pickle.loads((tmp_path / "batches" / "data_batch_3").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, pickle.DEFAULT_PROTOCOL, 5])
def test_load_cifar10_reads_batches_of_every_protocol(tmp_path, protocol):
    _write_batches(tmp_path, protocol=protocol)
    X_train, y_train, X_test, y_test = load_cifar10(tmp_path, cache_dir=tmp_path)
    assert y_train.tolist() == [9, 0] * 5 and y_test.tolist() == [9, 0]
    np.testing.assert_array_equal(X_train[2], _pixel_image(9, 1, 32))
    np.testing.assert_array_equal(X_test[1], _pixel_image(0, 5, 32))


def test_load_cifar10_reads_batches_pickled_by_numpy_1(tmp_path):
    # The real batches name numpy.core, numpy 2's numpy._core before its rename.
    _write_batches(tmp_path, protocol=2)
    for file in tmp_path.glob("*_batch*"):
        legacy = file.read_bytes().replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in legacy
        file.write_bytes(legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X_train, y_train, _, _ = load_cifar10(tmp_path, cache_dir=tmp_path)
    np.testing.assert_array_equal(X_train[9], _pixel_image(0, 4, 32))
    assert y_train.tolist() == [9, 0] * 5


def test_load_cifar10_reads_empty_bytes_of_protocol_2(tmp_path):
    batch = {**_batch(1), b"batch_label": b""}
    _write_batch(tmp_path, "data_batch_2", batch, protocol=2)
    X_train, _, _, _ = load_cifar10(tmp_path, cache_dir=tmp_path)
    np.testing.assert_array_equal(X_train[3], _pixel_image(0, 1, 32))


def _without(key):
    return lambda batch: {k: v for k, v in batch.items() if k != key}


def _with(key, value):
    return lambda batch: {**batch, key: value(batch[key])}


BAD_BATCHES = {
    "list": (lambda batch: [batch], r"not a dict with the keys"),
    "no-data": (_without(b"data"), r"not a dict with the keys"),
    "no-labels": (_without(b"labels"), r"not a dict with the keys"),
    "str-keys": (
        lambda batch: {k.decode(): v for k, v in batch.items()},
        r"not a dict with the keys",
    ),
    "short-rows": (
        _with(b"data", lambda d: d[:, :-1]),
        r"b'data' must be an integer array of shape \(n, 3072\); found a uint8 "
        r"array of shape \(2, 3071\)",
    ),
    "flat-data": (_with(b"data", np.ravel), r"found a uint8 array of shape \(6144,"),
    "float-data": (_with(b"data", lambda d: d / 255), r"found a float64 array"),
    "list-data": (_with(b"data", lambda d: d.tolist()), r"found a list\."),
    "unfilled-data": (
        _with(b"data", lambda _: _Unfilled((10**5, 3072))),
        r"b'data' claims 307200000 bytes, more than the \d+ bytes of the file",
    ),
    "too-bright": (
        _with(b"data", lambda d: d.astype(np.int16) + 1),
        r"pixel values in 0\.\.255; found values from 1 to 256",
    ),
    "negative": (
        _with(b"data", lambda d: d.astype(np.int16) - 1),
        r"found values from -1 to 254",
    ),
    "label-10": (_with(b"labels", lambda _: [9, 10]), r"ids 0\.\.9; found 10\."),
    "label-negative": (_with(b"labels", lambda _: [-1, 0]), r"found -1\."),
    "label-bool": (_with(b"labels", lambda _: [True, 0]), r"found True\."),
    "label-bytes": (_with(b"labels", lambda _: [b"cat", 0]), r"found b'cat'\."),
    "labels-bytes": (_with(b"labels", lambda _: b"\x09\x00"), r"found a bytes\."),
    "labels-2d": (
        _with(b"labels", lambda labels: np.array([labels])),
        r"found a ndarray\.",
    ),
    "more-labels": (
        _with(b"labels", lambda _: [9, 0, 1]),
        r"holds 2 images but 3 labels",
    ),
    "fewer-labels": (_with(b"labels", lambda _: [9]), r"holds 2 images but 1 labels"),
}


@pytest.mark.parametrize("bad", BAD_BATCHES)
def test_load_cifar10_refuses_bad_batch_contents(tmp_path, bad):
    change, message = BAD_BATCHES[bad]
    _write_batch(tmp_path, "data_batch_2", change(_batch(1)))
    with pytest.raises(ValueError, match=r"batch file '.*data_batch_2'.*" + message):
        load_cifar10(tmp_path, cache_dir=tmp_path)


@pytest.mark.parametrize(
    "corrupt",
    [lambda data: data[: len(data) // 2], lambda data: b"", lambda data: data[::-1]],
    ids=["truncated", "empty", "reversed"],
)
def test_load_cifar10_refuses_corrupt_batch(tmp_path, corrupt):
    _write_batches(tmp_path)
    file = tmp_path / "test_batch"
    file.write_bytes(corrupt(file.read_bytes()))
    with pytest.raises(ValueError, match=r"'.*test_batch' cannot be unpickled safely"):
        load_cifar10(tmp_path, cache_dir=tmp_path)


def test_load_cifar10_batches_obey_the_total_cap(tmp_path):
    _write_batches(tmp_path)
    total = sum(file.stat().st_size for file in tmp_path.glob("*_batch*"))
    X_train, *_ = load_cifar10(tmp_path, max_member_bytes=1, max_total_bytes=total)
    assert X_train.shape == (10, 32, 32, 3)
    with pytest.raises(ValueError, match=rf"max_total_bytes={total - 1}\."):
        load_cifar10(tmp_path, max_total_bytes=total - 1)


@pytest.mark.parametrize("loader", [load_cifar10, load_image_folder])
@pytest.mark.parametrize("param", ["max_member_bytes", "max_total_bytes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "10MB"])
def test_loaders_validate_byte_caps(tmp_path, loader, param, value):
    _write_split_folders(tmp_path)
    message = (
        rf"'{param}' parameter of {loader.__name__} .* Got {re.escape(repr(value))}"
    )
    with pytest.raises(ValueError, match=message):
        loader(tmp_path, **{param: value})


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_load_cifar10_caps_at_declared_sizes(tmp_path, layout):
    source = _cifar_source(tmp_path, layout)
    sizes = _png_sizes(tmp_path / "data")
    cache = tmp_path / "cache"
    largest, total = max(sizes), sum(sizes)
    X_train, *_ = load_cifar10(
        source, cache_dir=cache, max_member_bytes=largest, max_total_bytes=total
    )
    np.testing.assert_array_equal(X_train, _expected_split()[0])
    shutil.rmtree(cache)
    load_cifar10(source, cache_dir=cache, max_member_bytes=None, max_total_bytes=None)
    shutil.rmtree(cache)

    first = _member_pattern(layout, "train/airplane/0000.png")
    with pytest.raises(ValueError, match=rf"{first} declares \d+ bytes, more than "):
        load_cifar10(source, cache_dir=cache, max_member_bytes=min(sizes) - 1)
    last = _member_pattern(layout, "test/truck/0001.png")
    message = rf"{last} declares \d+ bytes, .* to {total}, more than max_total_bytes="
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=cache, max_total_bytes=total - 1)
    assert not cache.exists()


@pytest.mark.parametrize(
    "caps, message",
    [
        ({"max_member_bytes": 100}, r"holds at least 101 bytes, more than"),
        (
            {"max_total_bytes": 1000},
            r"holds .* bytes read to 1001, more than max_total",
        ),
    ],
)
def test_load_image_folder_caps_the_bytes_read(tmp_path, monkeypatch, caps, message):
    # A file can grow after it was measured, and a zip can declare any size.
    _write_split_folders(tmp_path)
    monkeypatch.setattr(datasets_module._FolderFiles, "size", lambda self, name: 1)
    with pytest.raises(ValueError, match=r"\.png' " + message):
        load_image_folder(tmp_path / "train", **caps)


def test_load_cifar10_refuses_zip_member_larger_than_declared(tmp_path):
    source = _cifar_source(tmp_path, "zip")
    with zipfile.ZipFile(source) as archive:
        first = archive.infolist()[0]
        start_dir = archive.start_dir
    data = bytearray(source.read_bytes())
    central = data.index(b"PK\x01\x02", start_dir)
    data[first.header_offset + 22 : first.header_offset + 26] = struct.pack("<I", 10)
    data[central + 24 : central + 28] = struct.pack("<I", 10)
    source.write_bytes(bytes(data))
    member = _member_pattern("zip", first.filename)
    with pytest.raises(ValueError, match=rf"{member} cannot be read: BadZipFile"):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def test_load_cifar10_refuses_link_to_a_device(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    source = _cifar_source(tmp_path, "folder")
    (source / "train" / "cat" / "0002.png").symlink_to("/dev/zero")
    message = r"cat/0002\.png' cannot be read: ValueError: not a regular file"
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def _bmp_bytes():
    stream = io.BytesIO()
    Image.fromarray(_pixel_image(0, 0)).save(stream, format="BMP")
    return stream.getvalue()


@pytest.mark.parametrize(
    "content, error",
    [
        (lambda png: b"not an image", "UnidentifiedImageError"),
        (lambda png: png[: len(png) // 2], r"(OSError|SyntaxError)"),
        (lambda png: _bmp_bytes(), "UnidentifiedImageError"),
    ],
    ids=["text", "truncated", "bmp"],
)
@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_load_cifar10_refuses_non_images(tmp_path, layout, content, error):
    def spoil(root):
        file = root / "test" / "dog" / "0001.png"
        file.write_bytes(content(file.read_bytes()))

    source = _cifar_source(tmp_path, layout, spoil)
    member = _member_pattern(layout, "test/dog/0001.png")
    message = rf"{member} is not a readable PNG or JPEG image: {error}"
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def test_bmp_would_decode_without_the_format_allow_list():
    # The BMP case above is refused by the allow-list, not by a broken file.
    with Image.open(io.BytesIO(_bmp_bytes())) as image:
        assert image.format == "BMP" and image.size == (32, 32)


def test_load_cifar10_refuses_corrupt_zip_member(tmp_path):
    root = tmp_path / "data"
    _write_split_folders(root)
    source = tmp_path / "cifar.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(root.rglob("*.png")):
            archive.write(file, file.relative_to(root).as_posix())
        target = archive.getinfo("train/bird/0000.png")
    data = bytearray(source.read_bytes())
    start = target.header_offset + 30 + len(target.filename) + len(target.extra)
    data[start : start + target.compress_size] = bytes(target.compress_size)
    source.write_bytes(bytes(data))
    member = _member_pattern("zip", "train/bird/0000.png")
    with pytest.raises(ValueError, match=rf"{member} cannot be read"):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def test_load_cifar10_refuses_corrupt_zip_directory(tmp_path):
    source = _cifar_source(tmp_path, "zip")
    with zipfile.ZipFile(source) as archive:
        start_dir = archive.start_dir
    data = bytearray(source.read_bytes())
    data[start_dir : start_dir + 4] = b"XXXX"
    source.write_bytes(bytes(data))
    assert zipfile.is_zipfile(source)
    with pytest.raises(ValueError, match=r"cifar\.zip' is not a readable zip file"):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def test_load_cifar10_refuses_repeated_zip_member(tmp_path):
    source = _cifar_source(tmp_path, "zip")
    with zipfile.ZipFile(source, "a") as archive, pytest.warns(UserWarning):
        archive.writestr("train/cat/0000.png", archive.read("train/dog/0000.png"))
    message = r"more than one member named 'train/cat/0000\.png'"
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_load_cifar10_refuses_images_not_32x32(tmp_path, layout):
    def shrink(root):
        small = Image.fromarray(_pixel_image(8, 1, size=16))
        small.save(root / "test" / "ship" / "0001.png")

    source = _cifar_source(tmp_path, layout, shrink)
    member = _member_pattern(layout, "test/ship/0001.png")
    message = rf"differ in size: {member} is 16x16 pixels, expected 32x32\."
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("limit, error", [(600, "Warning"), (400, "Error")])
def test_load_image_folder_refuses_decompression_bombs(
    tmp_path, monkeypatch, limit, error
):
    # 32x32 = 1024 pixels: above the limit Pillow warns, above twice it raises.
    _write_split_folders(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    message = rf"airplane/0000\.png' is not .* DecompressionBomb{error}"
    with pytest.raises(ValueError, match=message):
        load_image_folder(tmp_path / "train")


@pytest.mark.parametrize("layout", ["folder", "zip"])
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda root: shutil.rmtree(root / "test" / "horse"), r"'horse' is missing"),
        (
            lambda root: shutil.copytree(root / "test" / "cat", root / "test" / "lion"),
            r"Unknown class folder 'lion'",
        ),
    ],
    ids=["missing", "extra"],
)
def test_load_cifar10_refuses_wrong_class_folders(tmp_path, layout, edit, message):
    source = _cifar_source(tmp_path, layout, edit)
    with pytest.raises(ValueError, match=message):
        load_cifar10(source, cache_dir=tmp_path / "cache")


def test_load_image_folder_refuses_folder_without_classes(tmp_path):
    with pytest.raises(ValueError, match="No class folders in"):
        load_image_folder(tmp_path)


def _cache_file(cache, suffix):
    (file,) = cache.glob(f"*{suffix}")
    return file


def _truncate(cache):
    file = _cache_file(cache, "_X_train.npy")
    file.write_bytes(file.read_bytes()[:1000])


def _flip_last_byte(cache):
    file = _cache_file(cache, "_X_train.npy")
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))


def _replace_with_zeros(cache):
    file = _cache_file(cache, "_X_test.npy")
    np.save(file, np.zeros_like(np.load(file)))


def _replace_with_pickle(cache):
    hostile = np.array([_Hostile("exec", cache.parent / "marker")], dtype=object)
    np.save(_cache_file(cache, "_X_test.npy"), hostile, allow_pickle=True)


CACHE_DAMAGE = {
    "truncated": (_truncate, r"cannot be read \(ValueError"),
    "flipped-byte": (_flip_last_byte, r"_X_train\.npy', which differs from its"),
    "stale-array": (_replace_with_zeros, r"_X_test\.npy', which differs from its"),
    "pickled-array": (_replace_with_pickle, r"cannot be read \(ValueError: Object"),
    "no-array": (
        lambda cache: _cache_file(cache, "_y_test.npy").unlink(),
        r"cannot be read \(FileNotFoundError",
    ),
    "no-manifest": (
        lambda cache: _cache_file(cache, ".json").unlink(),
        r"has no manifest 'cifar10_\w+\.json'",
    ),
    "garbled-manifest": (
        lambda cache: _cache_file(cache, ".json").write_text("{"),
        r"cannot be read \(JSONDecodeError",
    ),
}


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_load_cifar10_rebuilds_damaged_cache(tmp_path, monkeypatch, damage):
    change, reason = CACHE_DAMAGE[damage]
    source = _cifar_source(tmp_path, "zip")
    cache = tmp_path / "cache"
    load_cifar10(source, cache_dir=cache)
    change(cache)
    with pytest.warns(
        BackdoorWarning, match=r"Decoding '.*cifar\.zip' again: .*" + reason
    ):
        arrays = load_cifar10(source, cache_dir=cache)
    assert not (tmp_path / "marker").exists()
    X_expected, y_expected = _expected_split()
    for array, expected in zip(arrays, [X_expected, y_expected] * 2, strict=True):
        np.testing.assert_array_equal(array, expected)
        assert array.dtype == expected.dtype

    monkeypatch.setattr(datasets_module, "_decode_image", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached = load_cifar10(source, cache_dir=cache)
    np.testing.assert_array_equal(cached[2], X_expected)
    assert list(cache.glob("*.tmp")) == []


def test_load_cifar10_changed_folder_is_decoded_again(tmp_path):
    source = _cifar_source(tmp_path, "folder")
    load_cifar10(source, cache_dir=tmp_path / "cache")
    changed = Image.fromarray(np.full((32, 32, 3), 7, np.uint8))
    changed.save(source / "test" / "frog" / "0001.png")
    _, _, X_test, _ = load_cifar10(source, cache_dir=tmp_path / "cache")
    assert (X_test[13] == 7).all()
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_load_cifar10_change_behind_a_folder_link_is_decoded_again(tmp_path):
    _write_split_folders(tmp_path / "real")
    source = tmp_path / "data"
    source.mkdir()
    for split in ("train", "test"):
        (source / split).symlink_to(tmp_path / "real" / split)
    (source / "loop").symlink_to(source)
    load_cifar10(source, cache_dir=tmp_path / "cache")
    changed = Image.fromarray(np.full((32, 32, 3), 7, np.uint8))
    changed.save(tmp_path / "real" / "train" / "frog" / "0001.png")
    X_train, *_ = load_cifar10(source, cache_dir=tmp_path / "cache")
    assert (X_train[13] == 7).all()


@pytest.mark.parametrize("inside", ["cache", "train/cache", "train/cat/cache"])
def test_load_cifar10_cache_inside_the_source(tmp_path, monkeypatch, inside):
    source = _cifar_source(tmp_path, "folder")
    first = load_cifar10(source, cache_dir=source / inside)
    monkeypatch.setattr(datasets_module, "_decode_image", None)
    second = load_cifar10(source, cache_dir=source / inside)
    for cached, decoded in zip(second, first, strict=True):
        np.testing.assert_array_equal(cached, decoded)
    assert len(list((source / inside).glob("*.npy"))) == 4


@st.composite
def labelled_rows(draw):
    """Class-sorted labels of 1-5 classes, a row id per sample, and a size."""
    counts = draw(st.lists(st.integers(1, 30), min_size=1, max_size=5))
    y = np.repeat(np.arange(len(counts)) * 3, counts)
    n_samples = draw(st.integers(1, len(y)))
    return np.arange(len(y)) * 10, y, n_samples, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(labelled_rows())
def test_stratified_subset_keeps_each_class_share_and_leaves_inputs_alone(case):
    X, y, n_samples, seed = case
    X_before, y_before = X.copy(), y.copy()
    X_sub, y_sub = stratified_subset(X, y, n_samples, random_state=seed)
    assert len(X_sub) == len(y_sub) == n_samples
    assert len(set(X_sub.tolist())) == n_samples
    assert np.array_equal(y[X_sub // 10], y_sub)
    classes, counts = np.unique(y, return_counts=True)
    share = counts * n_samples / len(y)
    taken = np.array([np.sum(y_sub == c) for c in classes])
    assert np.all((taken == np.floor(share)) | (taken == np.ceil(share)))
    assert np.array_equal(X, X_before) and np.array_equal(y, y_before)


def test_stratified_subset_of_class_sorted_images_mixes_the_classes():
    X, y = load_digits_images()
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]  # as an image folder loads, class by class
    X_sub, y_sub = stratified_subset(X, y, 200, random_state=0)
    assert set(y[:20].tolist()) == {0}
    assert len(set(y_sub[:20].tolist())) >= 6
    assert all(19 <= count <= 21 for count in np.bincount(y_sub, minlength=10))
    rows, _ = stratified_subset(np.arange(len(y)), y, 200, random_state=0)
    assert np.array_equal(X[rows], X_sub)


def test_stratified_subset_is_reproducible_and_follows_the_seed():
    X, y = load_digits_images()
    first = stratified_subset(X, y, 50, random_state=3)
    again = stratified_subset(X, y, 50, random_state=3)
    other = stratified_subset(X, y, 50, random_state=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_stratified_subset_selects_from_a_list_of_file_names():
    names = [f"{label}/{k}.png" for label in ("cat", "dog") for k in range(4)]
    labels = [0] * 4 + [1] * 4
    names_sub, labels_sub = stratified_subset(names, labels, 4, random_state=0)
    assert sorted(labels_sub) == [0, 0, 1, 1]
    assert [name.startswith("dog") for name in names_sub] == [
        label == 1 for label in labels_sub
    ]


@pytest.mark.parametrize(
    ("n_samples", "error", "match"),
    [
        (0, InvalidParameterError, "'n_samples' parameter .* Got 0 instead"),
        (2.5, InvalidParameterError, "'n_samples' parameter .* Got 2.5 instead"),
        (True, InvalidParameterError, "'n_samples' parameter .* Got True instead"),
        (11, ValueError, "n_samples=11 is more than the 10 rows of X and y"),
    ],
)
def test_stratified_subset_names_a_bad_n_samples(n_samples, error, match):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(error, match=match):
        stratified_subset(X, y, n_samples)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (
            np.zeros((4, 2)),
            np.zeros((4, 1)),
            r"y must be one-dimensional; got shape \(4, 1\)",
        ),
        (np.zeros((4, 2)), np.zeros(5), "X and y must have as many rows; got 4 and 5"),
    ],
)
def test_stratified_subset_names_bad_arrays(X, y, match):
    with pytest.raises(ValueError, match=match):
        stratified_subset(X, y, 2)
