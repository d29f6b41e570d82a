"""Worker for test_batch.py: batch norm under `keras.distribution.DataParallel` on two JAX CPU devices.

Run as ``python _sync_bn_jax_worker.py OUT.npz``. The backend and the number of
CPU devices are fixed when JAX starts, hence a separate process. It trains
the same small model, from the same initial weights and on the same batches,
and saves the results:

- ``reference``: no distribution, one device, the whole global batch;
- ``synced``: DataParallel over 2 devices, `synchronized=True`;
- ``unsynced``: DataParallel, `synchronized=False` (the same on JAX: a jitted
  step sees the global batch);
- ``tool``: DataParallel, Keras' own `BatchNormalization` made global by
  `keras_norms.synchronize_batch_norms`;
- ``first_step/*``: a batch norm on the model's input (momentum 0) after one
  step under DataParallel, so its moving statistics are those of the batch.

For each run, ``<run>/<weight path>`` holds the final weights and ``<run>/predictions``
the `predict` output. The test asserts; this script only computes.
"""

from __future__ import annotations

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _sync_bn_data import GLOBAL_BATCH, initial_weights  # noqa: E402
from _sync_bn_data import data as _data  # noqa: E402

import keras_norms  # noqa: E402


def distribute(on: bool):
    distribution = keras.distribution.DataParallel(devices=jax.devices()) if on else None
    keras.distribution.set_distribution(distribution)


def train(distributed, synchronized, tool=False):
    distribute(distributed)
    x, y = _data(3.0)
    norm = (keras.layers.BatchNormalization(momentum=0.5, name="bn") if tool
            else keras_norms.BatchNormalization(momentum=0.5, synchronized=synchronized, name="bn"))
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, name="dense"), norm, keras.layers.Dense(1, name="head")],
        name="model",
    )
    if tool:
        model = keras_norms.synchronize_batch_norms(model)
    model.set_weights(initial_weights())
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=True)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    results = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    results["predictions"] = model.predict(x, batch_size=GLOBAL_BATCH, verbose=0)
    return results


def first_step():
    """Moving statistics of a batch norm on the input after one DataParallel step with momentum 0."""
    distribute(True)
    x, y = _data(3.0)
    norm = keras_norms.BatchNormalization(momentum=0.0, synchronized=True, name="bn")
    model = keras.Sequential([keras.Input((5,)), norm, keras.layers.Dense(1, name="head")])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(x[:GLOBAL_BATCH], y[:GLOBAL_BATCH], batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
    return {"moving_mean": keras.ops.convert_to_numpy(norm.moving_mean),
            "moving_variance": keras.ops.convert_to_numpy(norm.moving_variance),
            "batch": x[:GLOBAL_BATCH]}


def main(out_path):
    assert jax.device_count() == 2, jax.devices()
    runs = {
        "reference": train(False, synchronized=False),
        "synced": train(True, synchronized=True),
        "unsynced": train(True, synchronized=False),
        "tool": train(True, synchronized=False, tool=True),
        "first_step": first_step(),
    }
    np.savez(out_path, **{f"{run}/{key}": value for run, res in runs.items() for key, value in res.items()})


if __name__ == "__main__":
    main(sys.argv[1])
