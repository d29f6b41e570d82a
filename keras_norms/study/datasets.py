"""Real data sets with fixed, seeded train/validation/test splits."""

from __future__ import annotations

import pathlib
import pickle
from typing import NamedTuple

import numpy as np


class Splits(NamedTuple):
    """Train, validation and test arrays of one data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.y_train.max()) + 1


def digits(seed: int = 0, validation_fraction: float = 0.2, test_fraction: float = 0.2) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download).

    Images are float32 in [0, 1] of shape (8, 8, 1); labels int32. The splits
    are stratified and fixed by `seed`.

    Args:
        seed: Seed of the split.
        validation_fraction: Fraction of all examples held out for validation.
        test_fraction: Fraction of all examples held out for testing.

    Returns:
        A `Splits` tuple.

    Example:

    >>> from keras_norms.study.datasets import digits
    >>> data = digits(seed=0)
    >>> data.x_train.shape[1:], data.num_classes
    ((8, 8, 1), 10)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"Argument `{name}` must be in (0, 1). Received: {name}={value!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "validation_fraction + test_fraction must leave examples for training. "
            f"Received: validation_fraction={validation_fraction}, test_fraction={test_fraction}"
        )
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    labels = bunch.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=validation_fraction / (1.0 - test_fraction),
        stratify=y_rest, random_state=seed,
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


#: The data sets `load` knows.
DATASETS = ("digits", "cifar10", "seq-digits")

#: The validation accuracy a cell must reach to count as converged, per data set.
DEFAULT_TARGET_ACCURACY = {"digits": 0.9, "seq-digits": 0.85, "cifar10": 0.5}

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class DataError(ValueError):
    """A data set cannot be loaded as asked (a missing file, an unknown name)."""


def seq_digits(seed: int = 0, validation_fraction: float = 0.2, test_fraction: float = 0.2) -> Splits:
    """The digits read row by row: sequences of 8 time steps with 8 features (same splits as `digits`).

    Example:

    >>> from keras_norms.study.datasets import seq_digits
    >>> seq_digits().x_train.shape[1:]
    (8, 8)
    """
    data = digits(seed, validation_fraction, test_fraction)
    return Splits(*(x[..., 0] if x.ndim == 4 else x for x in data))


_NUMPY_GLOBALS = {"_reconstruct", "ndarray", "dtype", "scalar"}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts, lists and NumPy arrays) and nothing that runs code."""

    def find_class(self, module, name):
        numpy_array = module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS
        # Protocol-2 pickles written by Python 3 encode byte strings through _codecs.encode.
        if numpy_array or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (it has no 'data' and 'labels' entries)")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch["labels"], dtype=np.int32)


def find_cifar_folder(data_dir) -> pathlib.Path:
    """The `cifar-10-batches-py` folder: `data_dir` itself or its child of that name.

    Raises:
        DataError: the folder lacks some of `CIFAR_FILES` (the message names them).
    """
    base = pathlib.Path(data_dir).expanduser()
    folder = base / CIFAR_FOLDER if (base / CIFAR_FOLDER).is_dir() else base
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"--data-dir {data_dir}: missing {', '.join(missing)}; point it at the extracted "
            f"'{CIFAR_FOLDER}' folder of https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
        )
    return folder


def cifar10(seed: int = 0, validation_fraction: float = 0.1, data_dir=None) -> Splits:
    """CIFAR-10 (32x32x3, 10 classes) with a seeded, stratified validation split of the training set.

    Args:
        seed: Seed of the validation split.
        validation_fraction: Fraction of the 50,000 training images held out.
        data_dir: The standard `cifar-10-batches-py` folder (or its parent);
            None downloads it through `keras.datasets.cifar10` (needs a network).

    Returns:
        A `Splits` tuple, images float32 in [0, 1], labels int32.

    Raises:
        DataError: `data_dir` lacks the expected files.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "Argument `validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    if data_dir is None:
        import keras

        (x_rest, y_rest), (x_test, y_test) = keras.datasets.cifar10.load_data()
    else:
        folder = find_cifar_folder(data_dir)
        parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        x_rest = np.concatenate([p[0] for p in parts])
        y_rest = np.concatenate([p[1] for p in parts])
        x_test, y_test = _read_cifar_batch(folder / "test_batch")
    y_rest, y_test = np.ravel(y_rest).astype("int32"), np.ravel(y_test).astype("int32")
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=validation_fraction, stratify=y_rest, random_state=seed
    )
    scale = lambda x: (np.asarray(x, dtype=np.float32) / 255.0)
    return Splits(scale(x_train), y_train, scale(x_val), y_val, scale(x_test), y_test.astype("int32"))


def load(name: str, seed: int = 0, data_dir=None) -> Splits:
    """One of `DATASETS` by name.

    Raises:
        DataError: an unknown name, or `data_dir` given for a data set that has no files.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "cifar10":
        return cifar10(seed, data_dir=data_dir)
    if data_dir is not None:
        raise DataError(f"--data-dir is for cifar10; {name!r} is bundled with scikit-learn")
    return digits(seed) if name == "digits" else seq_digits(seed)


def subsample(data: Splits, train_size: int | None, seed: int = 0) -> Splits:
    """Keeps a seeded, stratified `train_size` of the training set (all of it for None)."""
    if train_size is None or train_size >= len(data.y_train):
        return data
    from sklearn.model_selection import train_test_split

    x_train, _, y_train, _ = train_test_split(
        data.x_train, data.y_train, train_size=train_size, stratify=data.y_train, random_state=seed
    )
    return data._replace(x_train=x_train, y_train=y_train)


def fit_to_shape(x: np.ndarray, shape) -> np.ndarray:
    """Examples `x` brought to the example shape `shape`.

    Images `(N, H, W, C)` are resized (bilinear, antialiased) and their
    channels replicated (1 -> C) or averaged (C -> 1); sequences `(N, T, F)` are
    read as one-channel images; a 2D `shape` `(T, F)` reads images row by row
    (`F = W * C`), which must then already match.

    Raises:
        DataError: the shapes cannot be matched.

    Example:

    >>> import numpy as np
    >>> from keras_norms.study.datasets import fit_to_shape
    >>> fit_to_shape(np.zeros((5, 8, 8, 1), "float32"), (32, 32, 3)).shape
    (5, 32, 32, 3)
    """
    shape = tuple(shape)
    if x.shape[1:] == shape:
        return x
    if len(shape) == 2:
        rows = x.reshape(len(x), x.shape[1], -1)
        if rows.shape[1:] != shape:
            raise DataError(f"examples of shape {x.shape[1:]} cannot be read as sequences of shape {shape}")
        return rows
    if len(shape) != 3 or x.ndim not in (3, 4):
        raise DataError(f"examples of shape {x.shape[1:]} cannot be brought to shape {shape}")
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] != shape[-1]:
        if x.shape[-1] == 1:
            x = np.repeat(x, shape[-1], axis=-1)
        elif shape[-1] == 1:
            x = x.mean(axis=-1, keepdims=True)
        else:
            raise DataError(f"cannot map {x.shape[-1]} channels to {shape[-1]}")
    if x.shape[1:3] != shape[:2]:
        import tensorflow as tf

        x = tf.image.resize(x, shape[:2], method="bilinear", antialias=True).numpy()
    return np.clip(x, 0.0, 1.0).astype("float32")
