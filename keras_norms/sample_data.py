"""Small data bundled with scikit-learn, split by seed: the 8x8 digits.

The study (`keras_norms.study.datasets`, which re-exports `Splits` and `digits`), the demo and the
exporter's `--calibration digits` all read the digits from here, below each of them, so that
neither imports the other for its data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Splits", "digits"]


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

    Examples:
        >>> from keras_norms.sample_data import digits
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
