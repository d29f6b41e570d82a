"""Real data sets with fixed, seeded train/validation/test splits.

`DATASETS` names them and says what each gives a model: scikit-learn's bundled digits (as images
or as sequences), the image and text sets of `keras.datasets` (read from Keras' cache, see
`keras_datasets`), and a folder of images with one subfolder per class.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from keras_norms.sample_data import Splits, digits
from keras_norms.study import keras_datasets
from keras_norms.study.catalog import DATASETS, DEFAULT_TARGET_ACCURACY, DataError, DatasetInfo

__all__ = [
    "DATASETS", "DEFAULT_TARGET_ACCURACY", "DataError", "DatasetInfo", "Splits", "cifar10", "digits",
    "fit_to_shape", "image_folder", "keras_dataset", "load", "seq_digits", "subsample",
]


def seq_digits(seed: int = 0, validation_fraction: float = 0.2, test_fraction: float = 0.2) -> Splits:
    """The digits read row by row: sequences of 8 time steps with 8 features (same splits as `digits`).

    Examples:
        >>> from keras_norms.study.datasets import seq_digits
        >>> seq_digits().x_train.shape[1:]
        (8, 8)
    """
    data = digits(seed, validation_fraction, test_fraction)
    return Splits(*(x[..., 0] if x.ndim == 4 else x for x in data))


def _seeded_split(x, y, test_size: int, seed: int):
    """`train_test_split` into `len(y) - test_size` and `test_size` examples, stratified where every
    class can be (a class of one example, or more classes than a side has examples, cannot)."""
    from sklearn.model_selection import train_test_split

    counts = np.unique(y, return_counts=True)[1]
    stratify = counts.min() >= 2 and len(counts) <= min(test_size, len(y) - test_size)
    return train_test_split(x, y, test_size=test_size, stratify=y if stratify else None, random_state=seed)


def _hold_out(x, y, fraction: float, seed: int, what: str):
    """A seeded `fraction` of (x, y) held out: `x_kept, x_held, y_kept, y_held`."""
    held = math.ceil(fraction * len(y))
    if held >= len(y):
        raise DataError(f"{len(y)} examples are too few to hold out {what} ({fraction:g} of them)")
    return _seeded_split(x, y, held, seed)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"Argument `{name}` must be in (0, 1). Received: {name}={value!r}")


def keras_dataset(name: str, seed: int = 0, validation_fraction: float = 0.1, data_dir=None,
                  download: bool | None = None) -> Splits:
    """mnist, fashion_mnist, cifar10, cifar100 or imdb, as `keras.datasets` has them.

    The test set is the data set's own, in the order Keras gives it; a seeded, stratified
    `validation_fraction` of its training set is the validation set. Images are float32 in [0, 1],
    IMDB reviews int32 token ids (see `DATASETS`), labels int32. Files come from Keras' cache or
    `data_dir`; see `keras_datasets.find_files` for where each lies and when it is downloaded.

    Raises:
        DataError: a file is missing and cannot be downloaded, or is damaged.
    """
    _check_fraction("validation_fraction", validation_fraction)
    (x_rest, y_rest), (x_test, y_test) = keras_datasets.load_arrays(name, data_dir, download)
    x_train, x_val, y_train, y_val = _hold_out(x_rest, y_rest, validation_fraction, seed, "a validation set")
    if DATASETS[name].input == "image":
        x_train, x_val, x_test = (np.asarray(x, dtype=np.float32) / 255.0 for x in (x_train, x_val, x_test))
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def cifar10(seed: int = 0, validation_fraction: float = 0.1, data_dir=None,
            download: bool | None = None) -> Splits:
    """CIFAR-10 (32x32x3, 10 classes) with a seeded, stratified validation split of the training set.

    Args:
        seed: Seed of the validation split.
        validation_fraction: Fraction of the 50,000 training images held out.
        data_dir: The standard `cifar-10-batches-py` folder (or its parent); None reads Keras'
            cache and downloads what is missing there (see `keras_dataset`).
        download: Whether missing files may be downloaded; None: unless `KERAS_NORMS_OFFLINE` is set.

    Returns:
        A `Splits` tuple, images float32 in [0, 1], labels int32.

    Raises:
        DataError: `data_dir` or the cache lacks the expected files.
    """
    return keras_dataset("cifar10", seed, validation_fraction, data_dir, download)


#: The largest side an image folder's images are read at.
MAX_IMAGE_SIDE = 256
_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what image_dataset_from_directory reads


def _class_folders(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_image_folder(folder: pathlib.Path, class_names, color_mode: str, size):
    import keras
    import tensorflow as tf

    try:
        images = keras.utils.image_dataset_from_directory(
            folder, labels="inferred", label_mode="int", class_names=class_names, color_mode=color_mode,
            batch_size=256, image_size=size, shuffle=False, data_format="channels_last", verbose=False)
        batches = [(x.numpy(), y.numpy()) for x, y in images]
    except (ValueError, tf.errors.OpError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read the images in {folder}: {detail}") from None
    x = np.concatenate([x for x, _ in batches]) / np.float32(255.0)
    return x.astype(np.float32), np.concatenate([y for _, y in batches]).astype(np.int32)


def image_folder(data_dir, seed: int = 0, validation_fraction: float = 0.1,
                 test_fraction: float = 0.2) -> Splits:
    """Images in one subfolder per class, read with `keras.utils.image_dataset_from_directory`.

    With `train/` and `test/` subfolders (each with the same class subfolders), `test/` is the test
    set; otherwise a seeded, stratified `test_fraction` of all images is. Either way a seeded,
    stratified `validation_fraction` of the training images is the validation set. Labels number
    the class folders in sorted order. Every image is read at the size of the first one (in sorted
    order), scaled down to at most `MAX_IMAGE_SIDE` pixels a side, as one channel if that image has
    one (grayscale) and as RGB otherwise; float32 in [0, 1].

    Raises:
        DataError: not a folder of class subfolders, fewer than 2 classes, or an unreadable image.
    """
    import tensorflow as tf

    _check_fraction("validation_fraction", validation_fraction)
    _check_fraction("test_fraction", test_fraction)
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    class_names = _class_folders(train_root)
    if len(class_names) < 2:
        raise DataError(f"--data-dir {data_dir}: {train_root} needs a subfolder of images for each of "
                        f"2 or more classes (or train/ and test/ folders holding them); found "
                        f"{class_names or 'none'}")
    if split and _class_folders(root / "test") != class_names:
        raise DataError(f"--data-dir {data_dir}: test/ has the class folders "
                        f"{_class_folders(root / 'test')}, train/ has {class_names}; they must be the same")
    files = sorted(p for name in class_names for p in (train_root / name).rglob("*")
                   if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--data-dir {data_dir}: no {'/'.join(_IMAGE_SUFFIXES)} images in the class "
                        f"folders of {train_root}")
    try:
        first = tf.io.decode_image(tf.io.read_file(str(files[0])), expand_animations=False).shape
    except tf.errors.OpError as error:
        raise DataError(f"{files[0]} is not a readable image ({error.message.splitlines()[0]})") from None
    scale = min(1.0, MAX_IMAGE_SIDE / max(first[0], first[1]))
    size = (max(1, round(first[0] * scale)), max(1, round(first[1] * scale)))
    color_mode = "grayscale" if first[2] in (1, 2) else "rgb"
    x_rest, y_rest = _read_image_folder(train_root, class_names, color_mode, size)
    if split:
        x_test, y_test = _read_image_folder(root / "test", class_names, color_mode, size)
    else:
        x_rest, x_test, y_rest, y_test = _hold_out(x_rest, y_rest, test_fraction, seed, "a test set")
    x_train, x_val, y_train, y_val = _hold_out(x_rest, y_rest, validation_fraction, seed, "a validation set")
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test)


def load(name: str, seed: int = 0, data_dir=None, download: bool | None = None) -> Splits:
    """One of `DATASETS` by name.

    Raises:
        DataError: an unknown name, missing or damaged files, or a `data_dir` given for a data set
            that has no files (or none for `images`, which needs one).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "images":
        if data_dir is None:
            raise DataError("--dataset images needs --data-dir: a folder with one subfolder of images "
                            "per class")
        return image_folder(data_dir, seed)
    if name in ("digits", "seq-digits"):
        if data_dir is not None:
            raise DataError(f"--data-dir is for files of the other data sets; {name!r} is bundled with "
                            "scikit-learn")
        return digits(seed) if name == "digits" else seq_digits(seed)
    return keras_dataset(name, seed, data_dir=data_dir, download=download)


def subsample(data: Splits, train_size: int | None, seed: int = 0) -> Splits:
    """Keeps a seeded `train_size` of the training set (stratified where it can be; all of it for None)."""
    if train_size is None or train_size >= len(data.y_train):
        return data
    x_train, _, y_train, _ = _seeded_split(data.x_train, data.y_train, len(data.y_train) - train_size, seed)
    return data._replace(x_train=x_train, y_train=y_train)


def fit_to_shape(x: np.ndarray, shape) -> np.ndarray:
    """Examples `x` brought to the example shape `shape`.

    Images `(N, H, W, C)` are resized (bilinear, antialiased) and their
    channels replicated (1 -> C) or averaged (C -> 1); sequences `(N, T, F)` are
    read as one-channel images; a 2D `shape` `(T, F)` reads images row by row
    (`F = W * C`), which must then already match.

    Raises:
        DataError: the shapes cannot be matched.

    Examples:
        >>> import numpy as np
        >>> from keras_norms.study.datasets import fit_to_shape
        >>> fit_to_shape(np.zeros((5, 8, 8, 1), "float32"), (32, 32, 3)).shape
        (5, 32, 32, 3)
    """
    shape = tuple(shape)
    if x.shape[1:] == shape:
        return x
    if np.issubdtype(x.dtype, np.integer):
        raise DataError(f"token ids of shape {x.shape[1:]} cannot be brought to shape {shape}: they need a "
                        f"model whose input is {x.shape[1:]} (an Embedding)")
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
