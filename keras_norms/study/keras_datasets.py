"""The files of `keras.datasets`: where Keras keeps them, reading them safely, fetching missing ones.

Each data set is read from the folder where Keras 3's `keras.datasets.<name>.load_data()` leaves
its files (`$KERAS_HOME/datasets`, else `~/.keras/datasets`), or from a `--data-dir` that holds the
same files. Only a missing file is downloaded, by `keras.utils.get_file` with Keras' own URL and
checksum, and never into a `--data-dir` or when `KERAS_NORMS_OFFLINE` is set; a failed download
becomes a one-line `DataError` that names the missing files and where to put them. The readers
parse the files themselves: unlike Keras' loaders they unpickle nothing but arrays, lists and dicts,
check shapes and labels, and turn a damaged file into a `DataError` that names it.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import pathlib
import pickle
import zipfile
from typing import NamedTuple

import numpy as np

from keras_norms.study.catalog import DATASETS, DataError

#: Set to 1 (or true, yes, on) to forbid downloads: a missing file is then an error at once.
OFFLINE_VARIABLE = "KERAS_NORMS_OFFLINE"

#: IMDB reviews as Keras encodes them: 1 starts a review, 2 stands for a word outside the
#: `IMDB_NUM_WORDS` most frequent ones, word ids start at 3, and 0 pads.
IMDB_NUM_WORDS = DATASETS["imdb"].vocabulary_size
(IMDB_LENGTH,) = DATASETS["imdb"].shape
_IMDB_START, _IMDB_OOV, _IMDB_INDEX_FROM, _IMDB_SHUFFLE_SEED = 1, 2, 3, 113

_KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_TORONTO_ORIGIN = "https://www.cs.toronto.edu/~kriz/"


class KerasFiles(NamedTuple):
    """Where one data set's files lie and how Keras 3 downloads them.

    `folders` are relative to the cache's `datasets/` folder (or to a `--data-dir`), Keras 3's own
    layout first, then the older one of Keras 2. Without `archive`, each file downloads from
    `origin + name`; with it, `keras.utils.get_file(archive, origin, extract=True)` unpacks the
    archive at `origin` into `datasets/<archive>/`, which then holds `folders[0]`.
    """

    folders: tuple[str, ...]
    files: tuple[str, ...]
    origin: str
    sha256: str | None = None
    archive: str | None = None


FASHION_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

#: What Keras 3.x's loaders read (URLs and checksums as in `keras/src/datasets/*.py`).
KERAS_FILES = {
    "mnist": KerasFiles((".",), ("mnist.npz",), _KERAS_ORIGIN,
                        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
    "fashion_mnist": KerasFiles(("fashion-mnist",), FASHION_FILES, _KERAS_ORIGIN),
    "cifar10": KerasFiles(
        ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py"), CIFAR10_FILES,
        _TORONTO_ORIGIN + "cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", "cifar-10-batches-py-target"),
    "cifar100": KerasFiles(
        ("cifar-100-python-target/cifar-100-python", "cifar-100-python"), ("train", "test"),
        _TORONTO_ORIGIN + "cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", "cifar-100-python-target"),
    "imdb": KerasFiles((".",), ("imdb.npz",), _KERAS_ORIGIN,
                       "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
}

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def keras_home() -> pathlib.Path:
    """Keras' cache folder by Keras' own rule: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` when
    the home folder is read-only). Read at each call: Keras itself reads `KERAS_HOME` once, on import,
    so the downloads below pass this folder to `get_file` explicitly."""
    if os.environ.get("KERAS_HOME"):
        return pathlib.Path(os.environ["KERAS_HOME"]).expanduser()
    home = pathlib.Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else pathlib.Path("/tmp")) / ".keras"


def _cache_roots() -> list[pathlib.Path]:
    home = keras_home()
    # get_file writes into /tmp/.keras instead when the cache folder is not writable.
    fallback = [] if os.access(home, os.W_OK) else [pathlib.Path("/tmp/.keras/datasets")]
    return [home / "datasets", *fallback]


def downloads_allowed() -> bool:
    """False when `KERAS_NORMS_OFFLINE` says so."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() not in ("1", "true", "yes", "on")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _complete(folder: pathlib.Path, spec: KerasFiles) -> bool:
    return all((folder / name).is_file() for name in spec.files)


def _missing(folder: pathlib.Path, spec: KerasFiles) -> str:
    missing = [name for name in spec.files if not (folder / name).is_file()]
    return str(folder / missing[0]) if len(missing) == 1 else f"{', '.join(missing)} in {folder}/"


def _instructions(spec: KerasFiles, folder: pathlib.Path) -> str:
    if spec.archive:
        return f"extract {spec.origin} into {folder.parent}/ (it unpacks as {folder.name}/)"
    if len(spec.files) == 1:
        return f"download {spec.origin}{spec.files[0]} into {folder}/"
    return f"download {', '.join(spec.files)} from {spec.origin} into {folder}/"


def find_files(name: str, data_dir=None, download: bool | None = None) -> pathlib.Path:
    """The folder with all files of `name`: in `data_dir`, else in Keras' cache (downloaded if missing).

    Args:
        name: A key of `KERAS_FILES`.
        data_dir: A folder holding the files as Keras' `datasets/` folder does, or the files' own
            folder (e.g. `cifar-10-batches-py`); nothing is downloaded into it.
        download: Whether missing files may be downloaded; None: unless `KERAS_NORMS_OFFLINE` is set.

    Raises:
        DataError: files are missing and cannot be downloaded (the message says where they go).
    """
    spec = KERAS_FILES[name]
    if data_dir is not None:
        base = pathlib.Path(data_dir).expanduser()
        candidates = [base / folder for folder in spec.folders] + [base]
        found = next((c for c in candidates if _complete(c, spec)), None)
        if found is not None:
            return found
        started = [c for c in candidates if any((c / f).is_file() for f in spec.files)]
        folder = (started or [base])[0]
        missing = [f for f in spec.files if not (folder / f).is_file()]
        wanted = (f"the {pathlib.Path(spec.folders[-1]).name!r} folder extracted from {spec.origin}"
                  if spec.archive else f"a folder holding {', '.join(spec.files)} from {spec.origin}")
        raise DataError(f"--data-dir {data_dir}: missing {', '.join(missing)} in {folder}/; "
                        f"point it at {wanted}")
    candidates = [root / folder for root in _cache_roots() for folder in spec.folders]
    found = next((c for c in candidates if _complete(c, spec)), None)
    if found is not None:
        return found
    expected = candidates[0]
    advice = f"{_instructions(spec, expected)}, or pass --data-dir with a folder that holds them"
    if not (downloads_allowed() if download is None else download):
        raise DataError(f"{name}: missing {_missing(expected, spec)} and downloads are off "
                        f"({OFFLINE_VARIABLE}); {advice}")
    try:
        _download(spec, expected)
    except Exception as error:  # get_file raises a bare Exception for network errors
        raise DataError(f"{name}: missing {_missing(expected, spec)} and the download failed "
                        f"({_first_line(error)}); without a network, {advice}") from None
    found = next((c for c in candidates if _complete(c, spec)), None)
    if found is None:
        raise DataError(f"{name}: the download did not give {_missing(expected, spec)}; {advice}")
    return found


def _download(spec: KerasFiles, folder: pathlib.Path) -> None:
    import keras

    home = keras_home()
    home.mkdir(parents=True, exist_ok=True)
    if spec.archive:
        keras.utils.get_file(spec.archive, spec.origin, file_hash=spec.sha256, extract=True,
                             cache_dir=str(home))
        return
    subdir = folder.relative_to(home).as_posix()
    for name in spec.files:
        if not (folder / name).is_file():
            keras.utils.get_file(name, spec.origin + name, file_hash=spec.sha256, cache_subdir=subdir,
                                 cache_dir=str(home))


def load_arrays(name: str, data_dir=None, download: bool | None = None) -> Arrays:
    """`(x_train, y_train), (x_test, y_test)` of a Keras data set, in the order of its files.

    Images are uint8 `(N, H, W, C)`; IMDB reviews are int32 token ids `(N, IMDB_LENGTH)`, the same
    as `keras.datasets.imdb.load_data(num_words=IMDB_NUM_WORDS)` padded and truncated at the start
    (`keras.utils.pad_sequences`); labels are int32 `(N,)`.

    Raises:
        DataError: files are missing (see `find_files`), damaged or of the wrong shape.
    """
    folder = find_files(name, data_dir, download)
    return _READERS[name](folder)


_NUMPY_GLOBALS = {"_reconstruct", "ndarray", "dtype", "scalar"}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and NumPy arrays (CIFAR batches, ragged IMDB reviews) and nothing else."""

    def find_class(self, module, name):
        numpy_array = module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS
        # Protocol-2 pickles written by Python 3 encode byte strings through _codecs.encode.
        if numpy_array or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a data file holds only arrays")


@contextlib.contextmanager
def _reading(path: pathlib.Path):
    """Turns any failure to parse `path` into a `DataError` that names it."""
    try:
        yield
    except DataError:
        raise
    except Exception as error:  # a damaged file fails in any way (zip, gzip, pickle, reshape)
        raise DataError(f"{path} is damaged or not in the expected format ({_first_line(error)}); "
                        "delete or replace it") from None


def _checked(name: str, path: pathlib.Path, x: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    info = DATASETS[name]
    y = np.ravel(np.asarray(y)).astype(np.int32)
    if x.shape[1:] != info.shape or len(x) != len(y):
        raise DataError(f"{path}: {len(y)} labels for examples of shape {x.shape}; expected (N, "
                        f"{', '.join(map(str, info.shape))}) with N labels")
    if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
        raise DataError(f"{path}: labels {y.min()}..{y.max()}, expected 0..{info.num_classes - 1}")
    return x, y


def _read_npz(path: pathlib.Path, keys) -> dict[str, np.ndarray]:
    arrays = {}
    with _reading(path), zipfile.ZipFile(path) as archive:
        for key in keys:
            with archive.open(f"{key}.npy") as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else \
                    np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(member)
                if dtype.hasobject:
                    arrays[key] = _ArrayUnpickler(member, encoding="latin1").load()
                else:
                    count = math.prod(shape)
                    flat = np.frombuffer(member.read(count * dtype.itemsize), dtype, count=count)
                    arrays[key] = flat.reshape(shape, order="F" if fortran_order else "C")
    return arrays


def _read_idx(path: pathlib.Path) -> np.ndarray:
    """One gzipped IDX file of unsigned bytes (the MNIST format): a 4-byte magic, the dimensions, the data."""
    with _reading(path), gzip.open(path, "rb") as f:
        data = f.read()
        if data[:3] != b"\0\0\x08":
            raise ValueError("no IDX header of unsigned bytes")
        rank = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
        return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(shape)


def _read_cifar(path: pathlib.Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with _reading(path), open(path, "rb") as f:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        if "data" not in batch or label_key not in batch:
            raise DataError(f"{path} is not a CIFAR batch (it has no 'data' and '{label_key}' entries)")
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, np.asarray(batch[label_key])


def _mnist(folder: pathlib.Path) -> Arrays:
    path = folder / "mnist.npz"
    arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    return (_checked("mnist", path, arrays["x_train"][..., None], arrays["y_train"]),
            _checked("mnist", path, arrays["x_test"][..., None], arrays["y_test"]))


def _fashion_mnist(folder: pathlib.Path) -> Arrays:
    y_train, x_train, y_test, x_test = (_read_idx(folder / name) for name in FASHION_FILES)
    return (_checked("fashion_mnist", folder / FASHION_FILES[1], x_train[..., None], y_train),
            _checked("fashion_mnist", folder / FASHION_FILES[3], x_test[..., None], y_test))


def _cifar10(folder: pathlib.Path) -> Arrays:
    parts = [_read_cifar(folder / name, "labels") for name in CIFAR10_FILES]
    train = (np.concatenate([x for x, _ in parts[:5]]), np.concatenate([y for _, y in parts[:5]]))
    return _checked("cifar10", folder, *train), _checked("cifar10", folder / "test_batch", *parts[5])


def _cifar100(folder: pathlib.Path) -> Arrays:
    return tuple(_checked("cifar100", folder / name, *_read_cifar(folder / name, "fine_labels"))
                 for name in ("train", "test"))


def _imdb(folder: pathlib.Path) -> Arrays:
    path = folder / "imdb.npz"
    arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    # Keras shuffles both sets with one generator (the raw files are sorted by label).
    rng = np.random.RandomState(_IMDB_SHUFFLE_SEED)
    splits = []
    with _reading(path):
        for part in ("train", "test"):
            reviews, labels = arrays[f"x_{part}"], np.asarray(arrays[f"y_{part}"])
            order = np.arange(len(reviews))
            rng.shuffle(order)
            tokens = _imdb_tokens([reviews[i] for i in order])
            splits.append(_checked("imdb", path, tokens, labels[order]))
    return tuple(splits)


def _imdb_tokens(reviews) -> np.ndarray:
    """Keras' encoding of word ids (see `IMDB_NUM_WORDS`), padded and truncated at the start."""
    tokens = np.zeros((len(reviews), IMDB_LENGTH), np.int32)
    for row, review in enumerate(reviews):
        ids = np.concatenate([[_IMDB_START], np.asarray(review, dtype=np.int64) + _IMDB_INDEX_FROM])
        ids = np.where((ids >= 0) & (ids < IMDB_NUM_WORDS), ids, _IMDB_OOV)[-IMDB_LENGTH:]
        tokens[row, IMDB_LENGTH - len(ids):] = ids
    return tokens


_READERS = {"mnist": _mnist, "fashion_mnist": _fashion_mnist, "cifar10": _cifar10, "cifar100": _cifar100,
            "imdb": _imdb}
