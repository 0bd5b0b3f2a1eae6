"""Image data sets as uint8 ``(n, height, width, channels)`` arrays.

The loaders return images in HWC layout with ``uint8`` pixels and ``int64``
labels, the common currency of the poisoning and defence code in this package.
Their rows come in file order, often class by class, so ``X[:n]`` may hold a
single class: :func:`stratified_subset` takes a shuffled subset with the
classes in their proportions.

Training data is untrusted: the loaders run no code from the files they read,
read at most ``max_member_bytes`` per image and ``max_total_bytes`` in all, and
turn every malformed input into a :class:`ValueError` that names the file.
"""

import hashlib
import io
import json
import os
import pickle
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from functools import partial
from numbers import Integral
from pathlib import Path, PurePosixPath
from stat import S_ISREG

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, resample
from sklearn.utils._param_validation import Interval, validate_params

from sklearn_backdoor.constraints import StrictInterval
from sklearn_backdoor.contract import BackdoorWarning
from sklearn_backdoor.inputs import data_fingerprint

__all__ = [
    "CIFAR10_CLASSES",
    "load_cifar10",
    "load_digits_images",
    "load_image_folder",
    "stratified_subset",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Standard CIFAR-10 class names; the position of a name is its label id."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Only the decoders of the suffixes read: Pillow's other plugins (EPS runs
# Ghostscript) must never see untrusted bytes that merely carry a .png name.
_IMAGE_FORMATS = ("PNG", "JPEG")
_CIFAR10_SIZE = (32, 32)
_CIFAR10_ROW = 3 * 32 * 32
_BATCH_FOLDER = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_BATCH_KEYS = (b"data", b"labels")
_CACHE_ENV = "SKLEARN_BACKDOOR_CACHE"
_CACHE_ARRAYS = ("X_train", "y_train", "X_test", "y_test")
_CACHE_FORMAT = 1
_MAX_MEMBER_BYTES = 10 * 2**20
_MAX_TOTAL_BYTES = 2 * 2**30
_BYTES_CAP = [None, Interval(Integral, 1, None, closed="left")]


def load_digits_images(*, return_X_y=True):
    """Load scikit-learn's 8x8 digits as uint8 grey-scale images.

    The 1,797 images of :func:`sklearn.datasets.load_digits` have integer
    intensities in ``0..16``. They are rescaled to ``0..255`` with
    ``np.round(v * 255 / 16)`` so that they share the pixel range of
    photographs (``16 -> 255``, ``8 -> 128``, ``1 -> 16``).

    Parameters
    ----------
    return_X_y : bool, default=True
        If True, return ``(X, y)``; otherwise return a :class:`~sklearn.utils.Bunch`
        with ``data``, ``target``, ``target_names`` and ``DESCR``.

    Returns
    -------
    X : ndarray of shape (1797, 8, 8, 1), dtype uint8
        Images in HWC layout.
    y : ndarray of shape (1797,), dtype int64
        Digit labels ``0..9``.

    Examples
    --------
    >>> from sklearn_backdoor.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> X.shape, X.dtype, int(X.max()), y[:5].tolist()
    ((1797, 8, 8, 1), dtype('uint8'), 255, [0, 1, 2, 3, 4])
    """
    digits = load_digits()
    X = np.round(digits.images * 255 / 16).astype(np.uint8)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        target_names=digits.target_names.copy(),
        DESCR=digits.DESCR,
    )


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "n_samples": [StrictInterval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def stratified_subset(X, y, n_samples, *, random_state=None):
    """A shuffled subset of ``n_samples`` rows that keeps the class proportions.

    The loaders return the rows in file order, class by class for an image
    folder, so ``X[:n]`` may hold a single class. Here each class gets its
    share of ``n_samples``, rounded down or up so that the shares add up to
    ``n_samples`` (ties broken at random), drawn without replacement; the
    rows of the subset are then shuffled. ``X`` and ``y`` are not modified.

    Parameters
    ----------
    X : array-like of shape (n_total, ...)
        Images, features or anything indexed by row (a list of file names).
    y : array-like of shape (n_total,)
        Labels, which set the proportions.
    n_samples : int
        Size of the subset, from 1 to ``n_total``. A class whose share is
        less than one row may be left out.
    random_state : int, RandomState instance or None, default=None
        Seeds the rounding, the draw and the shuffle.

    Returns
    -------
    X_subset : array-like of shape (n_samples, ...)
        The chosen rows of ``X``, a copy of the same kind.
    y_subset : array-like of shape (n_samples,)
        Their labels.

    Raises
    ------
    ValueError
        If ``y`` is not one-dimensional, ``X`` and ``y`` differ in length, or
        ``n_samples`` exceeds it.

    Notes
    -----
    ``stratified_subset(np.arange(len(y)), y, n_samples)`` gives the indices
    of the subset, to select other arrays by.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_backdoor.datasets import load_digits_images, stratified_subset
    >>> X, y = load_digits_images()
    >>> X_small, y_small = stratified_subset(X, y, 100, random_state=0)
    >>> X_small.shape, np.bincount(y_small).tolist()
    ((100, 8, 8, 1), [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    """
    if np.ndim(y) != 1:
        raise ValueError(f"y must be one-dimensional; got shape {np.shape(y)}.")
    n_total = len(X)
    if n_total != len(y):
        raise ValueError(f"X and y must have as many rows; got {n_total} and {len(y)}.")
    if n_samples > n_total:
        raise ValueError(
            f"n_samples={n_samples} is more than the {n_total} rows of X and y."
        )
    return resample(
        X,
        y,
        replace=False,
        n_samples=n_samples,
        stratify=y,
        random_state=random_state,
    )


@validate_params(
    {
        "path": [str, os.PathLike],
        "class_names": [None, "array-like"],
        "max_member_bytes": _BYTES_CAP,
        "max_total_bytes": _BYTES_CAP,
    },
    prefer_skip_nested_validation=True,
)
def load_image_folder(
    path,
    class_names=None,
    *,
    max_member_bytes=_MAX_MEMBER_BYTES,
    max_total_bytes=_MAX_TOTAL_BYTES,
):
    """Load a ``<path>/<class>/<image>`` directory of equally sized images.

    Files are read in sorted path order, so sample indices are stable. Only
    ``.jpg``, ``.jpeg`` and ``.png`` files are read, with Pillow's PNG and JPEG
    decoders only; images are converted to RGB.

    Parameters
    ----------
    path : str or path-like
        Directory whose sub-folders are named after the classes.
    class_names : sequence of str, default=None
        Class folder names; the position of a name is its label. Every one must
        be present and non-empty, and images in other folders raise an error.
        If None, the sorted sub-folder names are used.
    max_member_bytes : int or None, default=10 * 2**20
        Largest image file read (10 MiB by default), checked against its size
        before reading and against the bytes read. None means no limit.
    max_total_bytes : int or None, default=2 * 2**30
        Most bytes read from all image files together (2 GiB by default).
        None means no limit.

    Returns
    -------
    X : ndarray of shape (n_samples, height, width, 3), dtype uint8
        Images in HWC layout.
    y : ndarray of shape (n_samples,), dtype int64
        Labels, indices into ``class_names``.

    Raises
    ------
    ValueError
        If ``path`` is not a directory, a class folder is missing, empty or
        unknown, a file exceeds a size cap, is not a PNG or JPEG image, or is not
        the size of the others.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_backdoor.datasets import load_image_folder
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ["dog", "cat"]:
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (4, 4), (255, 0, 0)).save(root / name / "0.png")
    >>> X, y = load_image_folder(root, class_names=["dog", "cat"])
    >>> X.shape, y.tolist()
    ((2, 4, 4, 3), [1, 0])
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path={str(path)!r} is not a directory.")
    if class_names is None:
        class_names = [folder.name for folder in _sub_folders(root)]
    split = _class_members(_class_files(root), class_names, where=str(root))
    budget = _ReadBudget(max_member_bytes, max_total_bytes)
    return _read_splits(_FolderFiles(root), [split], budget, size=None)


@validate_params(
    {
        "path": [str, os.PathLike],
        "cache_dir": [None, str, os.PathLike],
        "max_member_bytes": _BYTES_CAP,
        "max_total_bytes": _BYTES_CAP,
    },
    prefer_skip_nested_validation=True,
)
def load_cifar10(
    path,
    *,
    cache_dir=None,
    max_member_bytes=_MAX_MEMBER_BYTES,
    max_total_bytes=_MAX_TOTAL_BYTES,
):
    """Load CIFAR-10 from local files as uint8 HWC arrays.

    Labels use the standard ids of :data:`CIFAR10_CLASSES`
    (0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse,
    8 ship, 9 truck); class folders are mapped by name, never by listing order.

    Three layouts are recognised:

    - the pickled ``cifar-10-batches-py`` folder of torchvision (or a folder
      containing it), with ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``;
    - an image-folder directory ``train/<class>/*.png|jpg`` and
      ``test/<class>/...``;
    - a zip file holding that image-folder layout, at its root or under one
      top-level folder.

    Images are read in sorted name order, so sample indices are stable. Decoded
    image folders and zips are cached as ``.npy`` files in ``cache_dir``, keyed
    by the source's resolved path, size and modification time, so a changed
    source is decoded again.

    Parameters
    ----------
    path : str or path-like
        Batches folder, image-folder directory or zip file.
    cache_dir : str or path-like, default=None
        Where decoded arrays are cached. If None, the environment variable
        ``SKLEARN_BACKDOOR_CACHE`` is used, else ``~/.cache/sklearn_backdoor``.
    max_member_bytes : int or None, default=10 * 2**20
        Largest image file (in a folder or zip) read, checked against its
        declared size before reading and against the bytes read. Batch files,
        about 30 MiB each, are bounded by ``max_total_bytes`` only. None means no
        limit.
    max_total_bytes : int or None, default=2 * 2**30
        Most bytes read from the source in all (uncompressed, for a zip). None
        means no limit.

    Returns
    -------
    X_train : ndarray of shape (n_train, 32, 32, 3), dtype uint8
    y_train : ndarray of shape (n_train,), dtype int64
    X_test : ndarray of shape (n_test, 32, 32, 3), dtype uint8
    y_test : ndarray of shape (n_test,), dtype int64

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the layout is not recognised; a file or class folder is missing; a
        batch holds anything but CIFAR-10 data; a file exceeds a size cap, is
        corrupt, is not a PNG or JPEG image or not 32x32; or a zip repeats a
        member name. The message names the file or zip member.

    Warns
    -----
    BackdoorWarning
        If a cache entry is incomplete, corrupt or altered; it is rebuilt.

    Notes
    -----
    The files are treated as untrusted, as training data is:

    - batch files are read by an unpickler that admits only the globals a
      CIFAR-10 batch needs (numpy array and dtype reconstruction, and the
      latin-1 ``bytes`` of protocol-2 pickles); any other global, such as
      ``os.system``, is refused before it can run;
    - the size caps are checked against the sizes a folder or zip declares
      before anything is read, and against the bytes read, as a zip can lie;
      Pillow's ``Image.MAX_IMAGE_PIXELS`` bounds an image's decoded size;
    - each cache entry has a manifest, written last, with the shape, dtype and
      a blake2b digest of each array; arrays are read with
      ``allow_pickle=False`` and one that does not match its manifest is
      decoded again. A cache folder inside the source is not read as data.
      The manifest detects corruption and staleness, not a forger who can write
      to the cache folder: keep it private.

    Examples
    --------
    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from sklearn_backdoor.datasets import load_cifar10
    >>> root = Path(tempfile.mkdtemp())
    >>> names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    >>> for name in names:
    ...     batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}
    ...     _ = (root / name).write_bytes(pickle.dumps(batch))
    >>> X_train, y_train, X_test, y_test = load_cifar10(root)
    >>> X_train.shape, y_train.tolist(), X_test.shape
    ((10, 32, 32, 3), [3, 5, 3, 5, 3, 5, 3, 5, 3, 5], (2, 32, 32, 3))
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist.")
    batch_folder = _find_batch_folder(source)
    if batch_folder is not None:
        return _load_batches(batch_folder, _ReadBudget(None, max_total_bytes))
    budget = _ReadBudget(max_member_bytes, max_total_bytes)
    cache = _cache_folder(cache_dir)
    if source.is_dir() and (source / "train").is_dir() and (source / "test").is_dir():
        load = partial(_load_split_folders, budget=budget, skip=cache)
        return _cached(source, cache, load)
    if source.is_file() and zipfile.is_zipfile(source):
        return _cached(source, cache, partial(_load_split_zip, budget=budget))
    raise ValueError(
        f"path={str(path)!r} is not a CIFAR-10 layout: expected a "
        f"'{_BATCH_FOLDER}' folder, a folder with 'train/' and 'test/' class "
        "folders, or a zip file holding them."
    )


@contextmanager
def _untrusted(what):
    """Re-raise any failure to parse untrusted bytes as a ValueError naming them."""
    try:
        yield
    except Exception as error:
        # Decoders fail on hostile bytes in open-ended ways (zlib.error,
        # struct.error, SyntaxError from Pillow plugins, MemoryError ...); the
        # caller must learn which file is bad, never see a third-party error.
        raise ValueError(f"{what}: {type(error).__name__}: {error}") from error


class _FolderFiles:
    """The files below a folder, named by their POSIX paths relative to it."""

    def __init__(self, root):
        self.root = Path(root)

    def describe(self, name):
        return repr(str(self.root / name))

    def size(self, name):
        status = (self.root / name).stat()
        if not S_ISREG(status.st_mode):
            raise ValueError("not a regular file")
        return status.st_size

    def open(self, name):
        return (self.root / name).open("rb")


class _ZipFiles:
    """The members of an open zip archive."""

    def __init__(self, archive, file):
        self.archive = archive
        self.where = repr(str(file))

    def describe(self, name):
        return f"member {name!r} of {self.where}"

    def size(self, name):
        return self.archive.getinfo(name).file_size

    def open(self, name):
        return self.archive.open(name)


class _ReadBudget:
    """The bytes a loader may read: per file (None for no cap) and in total."""

    def __init__(self, max_member_bytes, max_total_bytes):
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.bytes_read = 0

    def check_declared(self, files, names):
        """Refuse, before reading any, files whose declared sizes break a cap."""
        total = self.bytes_read
        for name in names:
            with _untrusted(f"{files.describe(name)} cannot be read"):
                size = files.size(name)
            total += size
            self._check(f"{files.describe(name)} declares {size} bytes", size, total)

    def read(self, files, name):
        """Read one file, stopping as soon as it breaks a cap."""
        caps = [self.max_member_bytes, self._total_left()]
        limit = min((cap for cap in caps if cap is not None), default=None)
        with _untrusted(f"{files.describe(name)} cannot be read"):
            with files.open(name) as stream:
                data = stream.read(-1 if limit is None else limit + 1)
        size = len(data)
        self._check(
            f"{files.describe(name)} holds at least {size} bytes",
            size,
            self.bytes_read + size,
        )
        self.bytes_read += size
        return data

    def _total_left(self):
        if self.max_total_bytes is None:
            return None
        return self.max_total_bytes - self.bytes_read

    def _check(self, what, size, total):
        if self.max_member_bytes is not None and size > self.max_member_bytes:
            raise ValueError(
                f"{what}, more than max_member_bytes={self.max_member_bytes}."
            )
        if self.max_total_bytes is not None and total > self.max_total_bytes:
            raise ValueError(
                f"{what}, which brings the bytes read to {total}, more than "
                f"max_total_bytes={self.max_total_bytes}."
            )


def _find_batch_folder(source):
    for folder in (source, source / _BATCH_FOLDER):
        if (folder / _TRAIN_BATCHES[0]).is_file():
            return folder
    return None


def _load_batches(folder, budget):
    files = _FolderFiles(folder)
    for name in (*_TRAIN_BATCHES, _TEST_BATCH):
        if not (folder / name).is_file():
            raise ValueError(f"CIFAR-10 batch file {files.describe(name)} is missing.")
    budget.check_declared(files, (*_TRAIN_BATCHES, _TEST_BATCH))
    X_train, y_train = _read_batches(files, _TRAIN_BATCHES, budget)
    X_test, y_test = _read_batches(files, (_TEST_BATCH,), budget)
    return X_train, y_train, X_test, y_test


def _read_batches(files, names, budget):
    batches = [_read_batch(files, name, budget) for name in names]
    images, labels = zip(*batches, strict=True)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _read_batch(files, name, budget):
    """One batch file as HWC images and int64 labels."""
    where = f"CIFAR-10 batch file {files.describe(name)}"
    raw = budget.read(files, name)
    with _untrusted(f"{where} cannot be unpickled safely"):
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    if not isinstance(batch, dict) or not all(key in batch for key in _BATCH_KEYS):
        raise ValueError(f"{where} is not a dict with the keys {list(_BATCH_KEYS)}.")
    images = _batch_images(batch[b"data"], where, len(raw))
    labels = _batch_labels(batch[b"labels"], where)
    if len(images) != len(labels):
        raise ValueError(
            f"{where} holds {len(images)} images but {len(labels)} labels."
        )
    return images, labels


def _batch_images(data, where, file_bytes):
    """``(n, 3072)`` planar pixel rows as ``(n, 32, 32, 3)`` uint8 images."""
    if not (
        isinstance(data, np.ndarray)
        and np.issubdtype(data.dtype, np.integer)
        and data.shape[1:] == (_CIFAR10_ROW,)
    ):
        found = (
            f"a {data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else f"a {type(data).__name__}"
        )
        raise ValueError(
            f"{where}: b'data' must be an integer array of shape (n, "
            f"{_CIFAR10_ROW}); found {found}."
        )
    if data.nbytes > file_bytes:
        # Pixels unpickled from a file are in the file; more is an array
        # allocated but never filled, which reading would bring into memory.
        raise ValueError(
            f"{where}: b'data' claims {data.nbytes} bytes, more than the "
            f"{file_bytes} bytes of the file."
        )
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ValueError(
            f"{where}: b'data' must hold pixel values in 0..255; found values "
            f"from {data.min()} to {data.max()}."
        )
    planar = data.astype(np.uint8).reshape(-1, 3, *_CIFAR10_SIZE)
    return planar.transpose(0, 2, 3, 1)


def _batch_labels(labels, where):
    """The class ids of a batch as int64, refusing anything but ``0..9``."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        labels = labels.tolist()
    if not isinstance(labels, list | tuple):
        raise ValueError(
            f"{where}: b'labels' must be a list of class ids; found a "
            f"{type(labels).__name__}."
        )
    for label in labels:
        if not (
            isinstance(label, int | np.integer)
            and not isinstance(label, bool)
            and 0 <= label < len(CIFAR10_CLASSES)
        ):
            raise ValueError(
                f"{where}: b'labels' must hold class ids 0..9; found {label!r}."
            )
    return np.array(labels, dtype=np.int64)


def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"_codecs.encode is admitted for latin-1 text only, not {encoding!r}"
        )
    return text.encode("latin-1")


def _empty_bytes():
    return b""


# Python 3 pickles of protocol < 3 spell bytes as ``_codecs.encode(text,
# "latin1")`` and b"" as ``bytes()``; these stand-ins can do nothing else.
_BATCH_STAND_INS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
# Containers, ints and strings are built by pickle opcodes and need no global.
_BATCH_GLOBALS = frozenset(
    [
        *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
        *((f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    ]
)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch, refusing every global a batch does not need.

    Loading a pickle runs the callables its globals name; admitting only numpy
    array reconstruction keeps a hostile batch from running any code.
    """

    def find_class(self, module, name):
        if (module, name) in _BATCH_STAND_INS:
            return _BATCH_STAND_INS[module, name]
        if (module, name) in _BATCH_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused the global '{module}.{name}', which a CIFAR-10 batch never needs"
        )


def _load_split_folders(root, *, budget, skip):
    splits = [
        _class_members(
            _class_files(root / split, skip),
            CIFAR10_CLASSES,
            where=str(root / split),
            prefix=f"{split}/",
        )
        for split in ("train", "test")
    ]
    return _read_splits(_FolderFiles(root), splits, budget, _CIFAR10_SIZE)


def _load_split_zip(file, *, budget):
    with _untrusted(f"path={str(file)!r} is not a readable zip file"):
        archive = zipfile.ZipFile(file)
    with archive:
        names = _zip_names(archive, file)
        prefix = _zip_split_prefix(names, file)
        splits = []
        for split in ("train", "test"):
            split_prefix = f"{prefix}{split}/"
            relative = [
                n[len(split_prefix) :] for n in names if n.startswith(split_prefix)
            ]
            where = f"{file}:{split_prefix}"
            splits.append(
                _class_members(relative, CIFAR10_CLASSES, where, prefix=split_prefix)
            )
        files = _ZipFiles(archive, file)
        return _read_splits(files, splits, budget, _CIFAR10_SIZE)


def _zip_names(archive, file):
    """Member names, without macOS metadata; a repeated name is refused."""
    names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"path={str(file)!r} holds more than one member named {name!r}; "
                "which one is the data is ambiguous."
            )
        seen.add(name)
    return names


def _zip_split_prefix(names, file):
    top_levels = {PurePosixPath(n).parts[0] for n in names if n.strip("/")}
    if {"train", "test"} <= top_levels:
        return ""
    if len(top_levels) == 1:
        (top,) = top_levels
        inner = {
            PurePosixPath(n).parts[1] for n in names if len(PurePosixPath(n).parts) > 1
        }
        if {"train", "test"} <= inner:
            return f"{top}/"
    raise ValueError(
        f"path={str(file)!r} is a zip without 'train/' and 'test/' folders at its "
        "root or under one top-level folder."
    )


def _sub_folders(root, skip=None):
    """The sorted sub-folders of ``root``, but ``skip`` (a resolved path)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and p.resolve() != skip)


def _class_files(root, skip=None):
    """``<folder>/<name>`` paths of what the sub-folders of ``root`` hold.

    Entries that are not folders are listed even if they are not regular files,
    so that a device or a broken link with an image's name is refused, not
    skipped.
    """
    return [
        f"{folder.name}/{entry.name}"
        for folder in _sub_folders(root, skip)
        for entry in folder.iterdir()
        if not entry.is_dir()
    ]


def _class_members(relative_paths, class_names, where, prefix=""):
    """Pick ``<class>/<image>`` paths; return them sorted with their labels.

    The paths returned start with ``prefix``.
    """
    if len(class_names) == 0:
        raise ValueError(f"No class folders in {where!r}.")
    label_of = {name: label for label, name in enumerate(class_names)}
    members = []
    for relative in relative_paths:
        parts = PurePosixPath(relative).parts
        if len(parts) == 2 and parts[1].lower().endswith(_IMAGE_SUFFIXES):
            if parts[0] not in label_of:
                raise ValueError(
                    f"Unknown class folder {parts[0]!r} in {where!r}; "
                    f"expected one of {list(class_names)}."
                )
            members.append(relative)
    members.sort()
    y = np.array([label_of[PurePosixPath(m).parts[0]] for m in members], np.int64)
    present = set(y.tolist())
    for label, name in enumerate(class_names):
        if label not in present:
            raise ValueError(f"Class folder {name!r} is missing or empty in {where!r}.")
    return [prefix + m for m in members], y


def _read_splits(files, splits, budget, size):
    """Decode each split's ``(members, y)``; all sizes are checked first."""
    budget.check_declared(files, [name for members, _ in splits for name in members])
    arrays = []
    for members, y in splits:
        arrays += [_decode_all(files, members, budget, size), y]
    return tuple(arrays)


def _decode_all(files, members, budget, size):
    """Decode the members into one array; ``size`` (w, h) defaults to the first's."""
    images = []
    for name in members:
        image = _decode_image(budget.read(files, name), files.describe(name), size)
        size = (image.shape[1], image.shape[0])
        images.append(image)
    return np.stack(images)


def _decode_image(data, where, size):
    with _untrusted(f"{where} is not a readable PNG or JPEG image"):
        with warnings.catch_warnings():
            # Above MAX_IMAGE_PIXELS Pillow only warns; an image that large is
            # a decompression bomb here, never a training sample.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as image:
                found = image.size
                if size in (None, found):
                    return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise ValueError(
        f"Images differ in size: {where} is {found[0]}x{found[1]} pixels, "
        f"expected {size[0]}x{size[1]}."
    )


def _cached(source, folder, load):
    """``load(source)``, or its arrays from the cache when they prove intact."""
    key = _source_key(source, skip=folder)
    files = [folder / f"cifar10_{key}_{name}.npy" for name in _CACHE_ARRAYS]
    manifest = folder / f"cifar10_{key}.json"
    try:
        arrays = _read_cache(files, manifest)
    except _CacheError as error:
        warnings.warn(
            f"Decoding {str(source)!r} again: its cache entry in {str(folder)!r} "
            f"{error}.",
            BackdoorWarning,
            stacklevel=4,
        )
        arrays = None
    if arrays is not None:
        return arrays
    arrays = load(source)
    folder.mkdir(parents=True, exist_ok=True)
    for file, array in zip(files, arrays, strict=True):
        _write_atomically(file, partial(np.save, arr=array, allow_pickle=False))
    # Written last: a manifest vouches only for arrays already in place.
    entries = {
        name: {"shape": list(a.shape), "dtype": a.dtype.str, "blake2b": digest}
        for name, a, digest in zip(
            _CACHE_ARRAYS, arrays, map(data_fingerprint, arrays), strict=True
        )
    }
    text = json.dumps({"format": _CACHE_FORMAT, "arrays": entries}, indent=1)
    _write_atomically(manifest, lambda stream: stream.write(text.encode()))
    return arrays


class _CacheError(Exception):
    """A cache entry that cannot be trusted; the message says why."""


def _read_cache(files, manifest):
    """The cached arrays, or None if there are none; raise _CacheError if bad."""
    if not manifest.is_file():
        if any(file.is_file() for file in files):
            raise _CacheError(f"has no manifest {manifest.name!r}")
        return None
    try:
        entries = json.loads(manifest.read_bytes())["arrays"]
        expected = [entries[name] for name in _CACHE_ARRAYS]
        arrays = tuple(np.load(file, allow_pickle=False) for file in files)
    except (OSError, EOFError, ValueError, KeyError, TypeError, MemoryError) as error:
        raise _CacheError(
            f"cannot be read ({type(error).__name__}: {error})"
        ) from error
    for file, array, entry in zip(files, arrays, expected, strict=True):
        found = {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "blake2b": data_fingerprint(array),
        }
        if found != entry:
            raise _CacheError(f"has {file.name!r}, which differs from its manifest")
    return arrays


def _cache_folder(cache_dir):
    if cache_dir is None:
        cache_dir = (
            os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "sklearn_backdoor"
        )
    return Path(cache_dir).expanduser().resolve()


def _source_key(source, skip):
    """Digest of the resolved path, size and mtime of the source's files.

    Files in ``skip`` (the cache folder, if it lies inside the source) are left
    out: writing the cache must not change the key it is stored under.
    """
    resolved = source.resolve()
    files = _files_below(resolved, skip) if resolved.is_dir() else [resolved]
    digest = hashlib.sha256(str(resolved).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _files_below(root, skip):
    """The files below ``root``, sorted, without those in ``skip``.

    Links to folders are followed, as the loaders follow them, each real folder
    once so that a link loop ends.
    """
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders[:] = [d for d in subfolders if (real / d).resolve() != skip]
        found += [Path(folder, name) for name in names]
    return sorted(found)


def _write_atomically(file, write):
    """Call ``write(stream)`` on a temporary file, then move it to ``file``."""
    # A reader never sees a half-written cache file, even with concurrent writers.
    handle, temporary = tempfile.mkstemp(dir=file.parent, suffix=f"{file.suffix}.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
