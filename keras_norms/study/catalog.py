"""The data sets the study knows: their names, what each gives a model, and `DataError`.

The bottom of the study's data modules: `datasets` (the loaders, which re-export these names) and
`keras_datasets` (the files of `keras.datasets`) both import it, and neither imports the other
back.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DATASETS", "DEFAULT_TARGET_ACCURACY", "DataError", "DatasetInfo"]


class DatasetInfo(NamedTuple):
    """What a data set gives a model, so that the model can pick its input layer.

    `input` is "image" (float32 `(H, W, C)` in [0, 1]), "sequence" (float32 `(T, F)` in [0, 1]) or
    "tokens" (int32 word ids `(T,)`, 0 for padding, all below `vocabulary_size`: an Embedding
    input). `shape` is one example's shape and `num_classes` the number of labels; None where the
    files decide (an image folder). `target_accuracy` is the validation accuracy that counts as
    converged. `files` says where the files come from.
    """

    input: str
    shape: tuple[int, ...] | None
    num_classes: int | None
    target_accuracy: float
    files: str
    vocabulary_size: int | None = None


_KERAS_CACHE = "Keras' cache ($KERAS_HOME/datasets or ~/.keras/datasets; downloaded if missing) or --data-dir"

#: The data sets `load` knows.
DATASETS = {
    "digits": DatasetInfo("image", (8, 8, 1), 10, 0.9, "bundled with scikit-learn"),
    "cifar10": DatasetInfo("image", (32, 32, 3), 10, 0.5, f"cifar-10-batches-py/ in {_KERAS_CACHE}"),
    "seq-digits": DatasetInfo("sequence", (8, 8), 10, 0.85, "bundled with scikit-learn"),
    "mnist": DatasetInfo("image", (28, 28, 1), 10, 0.95, f"mnist.npz in {_KERAS_CACHE}"),
    "fashion_mnist": DatasetInfo("image", (28, 28, 1), 10, 0.85, f"fashion-mnist/*.gz in {_KERAS_CACHE}"),
    "cifar100": DatasetInfo("image", (32, 32, 3), 100, 0.3, f"cifar-100-python/ in {_KERAS_CACHE}"),
    "imdb": DatasetInfo("tokens", (200,), 2, 0.8, f"imdb.npz in {_KERAS_CACHE}", vocabulary_size=20000),
    "images": DatasetInfo("image", None, None, 0.5, "--data-dir: one subfolder of images per class"),
}

#: The validation accuracy a cell must reach to count as converged, per data set.
DEFAULT_TARGET_ACCURACY = {name: info.target_accuracy for name, info in DATASETS.items()}


class DataError(ValueError):
    """A data set cannot be loaded as asked (a missing or damaged file, an unknown name)."""
