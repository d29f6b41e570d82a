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

import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
    # Collectives between processes on CPU hosts (GPU and TPU hosts have their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402  (tf.data: Keras shards a tf.data.Dataset between processes)
from digits_cnn import build_model, digits, parse, save_weights  # noqa: E402

import keras_norms  # noqa: E402
from keras_norms.distributed import BackupAndRestore, is_chief  # noqa: E402


class _Delay(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


def main(argv=None):
    args = parse(__doc__.split("\n\n")[0], argv)
    if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        keras.distribution.initialize()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    print(f"process {jax.process_index()} of {jax.process_count()}, devices {jax.devices()}", flush=True)

    x, y = digits()
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
        save_weights(args.out, model, resumed_at)


if __name__ == "__main__":
    main()
