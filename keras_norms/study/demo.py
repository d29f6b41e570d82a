"""A quick comparison of the core layers: a small CNN trained on the digits with each norm."""

from __future__ import annotations

import time
from typing import NamedTuple

import keras

import keras_norms
from keras_norms.sample_data import Splits, digits

#: Constructor arguments per registry name where the default does not suit this short run:
#: 16-channel maps for group norm, and a BN momentum of 0.9 (PyTorch's default) so that the moving
#: statistics catch up within a few hundred steps (with Keras' 0.99 they are still mostly their
#: initial values after 5 epochs, and inference accuracy collapses).
DEMO_NORM_OPTIONS = {"group": {"groups": 4}, "batch": {"momentum": 0.9}}


class DemoResult(NamedTuple):
    norm: str
    test_accuracy: float
    seconds_per_epoch: float
    epochs: int


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def small_cnn(norm: str, input_shape, num_classes: int) -> keras.Sequential:
    """Conv -> norm -> ReLU, twice, then pooling and a classifier; `norm` is a registry name."""

    def block(filters):
        return [
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
            keras_norms.get(norm, **DEMO_NORM_OPTIONS.get(norm, {})),
            keras.layers.ReLU(),
        ]

    return keras.Sequential(
        [keras.Input(input_shape), *block(16), *block(32),
         keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(num_classes)],
        name=f"cnn_{norm}",
    )


def run_demo(norms=("batch", "layer", "group", "instance", "rms", "none"), *, epochs: int = 8,
             batch_size: int = 32, seed: int = 0, data: Splits | None = None) -> list[DemoResult]:
    """Trains `small_cnn` with each norm on the digits and measures test accuracy and epoch time.

    The time per epoch is the median over epochs after the first (which also
    traces the graph), or the first epoch's time if only one is run.
    """
    if epochs < 1:
        raise ValueError(f"Argument `epochs` must be >= 1. Received: epochs={epochs}")
    if batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be >= 1. Received: batch_size={batch_size}")
    for norm in norms:
        keras_norms.get(norm, **DEMO_NORM_OPTIONS.get(norm, {}))  # fail on a bad name before training
    data = data or digits(seed=seed)
    results = []
    for norm in norms:
        keras.utils.set_random_seed(seed)
        model = small_cnn(norm, data.x_train.shape[1:], data.num_classes)
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        timer = _EpochTimer()
        model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs,
                  validation_data=(data.x_val, data.y_val), callbacks=[timer], verbose=0)
        _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
        timed = sorted(timer.seconds[1:] or timer.seconds)
        results.append(DemoResult(norm, float(accuracy), timed[len(timed) // 2], epochs))
    return results


def format_results(results: list[DemoResult]) -> str:
    """A plain-text table, one line per norm."""
    lines = [f"{'norm':<10} {'test accuracy':>13} {'s/epoch':>8}"]
    lines += [f"{r.norm:<10} {r.test_accuracy:>13.4f} {r.seconds_per_epoch:>8.3f}" for r in results]
    return "\n".join(lines)
