"""What both multi-process examples share: their options, the digits, and the paper's small CNN."""

from __future__ import annotations

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_norms


def parse(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--norm", default="batch", help="the CNN's norm: a registry name (batch, group, ...)")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: the whole training set")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--out", help="the chief saves the final weights here (.npz)")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep after each step")
    return parser.parse_args(argv)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as `(N, 8, 8, 1)` float32 in [0, 1] and int32 labels."""
    data = load_digits()
    return (data.images / 16.0).astype("float32")[..., None], data.target.astype("int32")


def build_model(norm: str) -> keras.Model:
    """The paper's small CNN on 8x8 digits, with `norm` after each convolution."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8, 8, 1))]
    for filters in (16, 32):
        norm_arguments = {"groups": 8} if norm == "group" else {}
        layers += [keras.layers.Conv2D(filters, 3, padding="same"), keras_norms.get(norm, **norm_arguments),
                   keras.layers.ReLU()]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers)


def save_weights(path, model: keras.Model, resumed_at: int) -> None:
    """The final weights by path, and the epoch the run started at, in one `.npz` file."""
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    np.savez(path, resumed_at=resumed_at, **weights)
