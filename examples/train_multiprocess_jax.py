"""Data-parallel `model.fit` on several JAX processes, with batch norm over the global batch.

`keras.distribution.initialize` connects the processes (from the
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID` environment variables), `DataParallel` shards
every global batch over all their devices, and `fit` runs one jitted step on
the global batch, so batch norm statistics are those of the global batch.
`keras_norms.distributed.BackupAndRestore` saves a checkpoint at the end of
every epoch (the chief writes it; every process restores from it), so a
restarted job resumes after the last finished epoch.

Run one process per host::

    export KERAS_BACKEND=jax
    export KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:12345,host1:12345
    export KERAS_DISTRIBUTION_NUM_PROCESSES=2
    export KERAS_DISTRIBUTION_PROCESS_ID=0   # 1 on the second host
    python examples/train_multiprocess_jax.py --checkpoint-dir /shared/ckpt --out weights.npz

Without those variables it runs as one process with the whole global batch.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
    # Collectives between processes on CPU hosts (GPU and TPU hosts have their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (tf.data: Keras shards a tf.data.Dataset between processes)
from sklearn.datasets import load_digits  # noqa: E402

import keras_norms  # noqa: E402
from keras_norms.distributed import BackupAndRestore, is_chief  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--norm", default="batch", help="the CNN's norm: a registry name (batch, group, ...)")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: the whole training set")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--out", help="the chief saves the final weights here (.npz)")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep after each step")
    return parser.parse_args(argv)


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


class _Delay(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


def main(argv=None):
    args = parse(argv)
    if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        keras.distribution.initialize()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.devices()}", flush=True)

    data = load_digits()
    x, y = (data.images / 16.0).astype("float32")[..., None], data.target.astype("int32")
    steps = args.steps_per_epoch or len(x) // args.global_batch
    x, y = x[:steps * args.global_batch], y[:steps * args.global_batch]
    # The global batches, in the same order every epoch; Keras gives each process its slice of each.
    # Repeated, with `steps_per_epoch`: each process's shard of the data has no known length.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.global_batch, drop_remainder=True)
    dataset = dataset.repeat()

    # An existing model's batch norms (Keras' or ours) made global in one line.
    model = keras_norms.synchronize_batch_norms(build_model(args.norm))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    callbacks = [BackupAndRestore(args.checkpoint_dir, delete_checkpoint=False)]
    if args.step_delay:
        callbacks.append(_Delay(args.step_delay))
    history = model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    resumed_at = args.epochs - len(history.history.get("loss", []))
    losses = history.history.get("loss")
    print(f"process {jax.process_index()}: resumed at epoch {resumed_at}, losses {losses}", flush=True)
    if args.out and is_chief():
        weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
        np.savez(args.out, resumed_at=resumed_at, **weights)


if __name__ == "__main__":
    main()
