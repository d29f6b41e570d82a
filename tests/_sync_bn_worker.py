"""Worker for test_batch.py: synchronized batch norm under MirroredStrategy on two CPU devices.

Run as ``python _sync_bn_worker.py OUT.npz``. The logical CPU devices must be configured
before TensorFlow initializes, hence a separate process. It trains the same small model,
from the same initial weights and on the same batches, three ways and saves the results:

- ``reference``: no strategy, `synchronized=False`, the whole global batch on one device;
- ``synced``: MirroredStrategy over /cpu:0 and /cpu:1, `synchronized=True`;
- ``unsynced``: the same strategy with `synchronized=False` (the control);
- ``tool``: the strategy, and Keras' own `BatchNormalization` made global by
  `keras_norms.synchronize_batch_norms`.

For each run, ``<run>/<weight path>`` holds the final weights and ``<run>/predictions``
the `predict` output. The test asserts; this script only computes.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _sync_bn_data import GLOBAL_BATCH, initial_weights  # noqa: E402
from _sync_bn_data import data as _data  # noqa: E402

import keras_norms  # noqa: E402


def train(strategy, synchronized, tool=False):
    x, y = _data()
    with strategy.scope():
        norm = (keras.layers.BatchNormalization(momentum=0.5, name="bn") if tool
                else keras_norms.BatchNormalization(momentum=0.5, synchronized=synchronized, name="bn"))
        model = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(4, name="dense"), norm,
             keras.layers.Dense(1, name="head")],
            name="model",
        )
        if tool:
            model = keras_norms.synchronize_batch_norms(model)
        model.set_weights(initial_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    results = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    results["predictions"] = model.predict(x, batch_size=GLOBAL_BATCH, verbose=0)
    return results


def main(out_path):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    runs = {
        "reference": train(tf.distribute.get_strategy(), synchronized=False),
        "synced": train(mirrored, synchronized=True),
        "unsynced": train(mirrored, synchronized=False),
        "tool": train(mirrored, synchronized=False, tool=True),
    }
    np.savez(out_path, **{f"{run}/{key}": value for run, res in runs.items() for key, value in res.items()})


if __name__ == "__main__":
    main(sys.argv[1])
