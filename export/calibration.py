"""Calibration and evaluation data for the CLI: the digits resized to a model's input, or a .npz file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fit_images(images: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Fits `(n, height, width, 1)` grayscale images to a model input shape (without the batch axis).

    Images are resized (bilinear) to `(H, W)` and the channel is repeated for
    `(H, W, C)` inputs; `(H, W)` inputs drop the channel axis and `(F,)` inputs
    get the images flattened when `F` is the number of pixels.

    Raises:
        ValueError: The input shape is not an image of these kinds.

    Examples:
        >>> import numpy as np
        >>> from keras_norms.export.calibration import fit_images
        >>> fit_images(np.zeros((5, 8, 8, 1), "float32"), (16, 16, 3)).shape
        (5, 16, 16, 3)
    """
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    shape = tuple(input_shape)
    if len(shape) == 1 and shape[0] == int(np.prod(images.shape[1:])):
        return images.reshape(len(images), -1)
    if len(shape) not in (2, 3) or any(not d for d in shape):
        raise ValueError(
            f"The digits fit image inputs (height, width[, channels]) channels last, not input shape "
            f"{shape}; pass a .npz file of calibration inputs instead."
        )
    if images.shape[1:3] != shape[:2]:
        images = tf.image.resize(images, shape[:2], method="bilinear").numpy()
    if len(shape) == 2:
        return images[..., 0]
    return np.repeat(images, shape[2], axis=-1) if images.shape[-1] != shape[2] else images


def digits_data(input_shape: tuple[int, ...], seed: int = 0):
    """The digits (`keras_norms.sample_data.digits`) fitted to `input_shape`.

    Returns:
        `(calibration, (x_test, y_test))`: training images for calibration, and
        the test split with its labels for evaluation.
    """
    from keras_norms.sample_data import digits

    data = digits(seed=seed)
    return fit_images(data.x_train, input_shape), (fit_images(data.x_test, input_shape), data.y_test)


def load_npz(path, input_names: list[str]):
    """Calibration inputs (and optional labels) from a `.npz` file.

    For one input the array is `x` (or the input's name, or the only array);
    for several, one array per input name. An array `y` holds class labels.

    Returns:
        `(inputs, labels)`: an array or a dict by input name, and the labels or None.

    Raises:
        ValueError: The file lacks an input's array.
    """
    with np.load(Path(path)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    labels = arrays.pop("y", None)
    if len(input_names) == 1:
        (name,) = input_names
        for key in ("x", name):
            if key in arrays:
                return arrays[key], labels
        if len(arrays) == 1:
            return next(iter(arrays.values())), labels
        raise ValueError(
            f"{path} must hold the calibration inputs as an array named 'x'; it has {sorted(arrays)}"
        )
    missing = [name for name in input_names if name not in arrays]
    if missing:
        raise ValueError(f"{path} must hold one array per model input {input_names}; missing {missing}")
    return {name: arrays[name] for name in input_names}, labels
