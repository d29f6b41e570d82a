"""The data and initial weights that both synchronized batch norm workers train on (_sync_bn_*worker.py)."""

from __future__ import annotations

import numpy as np

GLOBAL_BATCH = 16
STEPS = 3


def data(second_half_shift: float = 0.0):
    """`STEPS` global batches of a 5-feature regression, channels of different means and scales.

    `second_half_shift` is added to the second half of every global batch, so that the statistics of
    each device's half batch differ from those of the global batch even more.
    """
    rng = np.random.default_rng(7)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 5)) * [1.0, 2.0, 3.0, 0.5, 4.0] + [1.0, 0.0, -2.0, 3.0, 0.5]
    x[np.arange(len(x)) % GLOBAL_BATCH >= GLOBAL_BATCH // 2] += second_half_shift
    y = rng.normal(size=(GLOBAL_BATCH * STEPS, 1))
    return x.astype("float32"), y.astype("float32")


def initial_weights():
    """Dense(4) -> BatchNormalization -> Dense(1), as `model.set_weights` takes them."""
    rng = np.random.default_rng(11)
    return [
        rng.normal(size=(5, 4)).astype("float32"),  # dense kernel
        rng.normal(size=(4,)).astype("float32") * 0.1,  # dense bias
        (1.0 + 0.2 * rng.normal(size=(4,))).astype("float32"),  # gamma
        (0.1 * rng.normal(size=(4,))).astype("float32"),  # beta
        np.zeros(4, "float32"),  # moving_mean
        np.ones(4, "float32"),  # moving_variance
        rng.normal(size=(4, 1)).astype("float32"),  # dense_1 kernel
        np.zeros(1, "float32"),  # dense_1 bias
    ]
