"""Data-parallel training on several TensorFlow processes, with batch norm over the global batch.

Keras 3's `model.fit` does not run under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585), so this is a custom loop: `strategy.run` on each
worker's slice of every global batch, gradients all-reduced by Keras'
optimizer, and batch norm statistics all-reduced by
`keras_norms.synchronize_batch_norms`. A checkpoint at the end of every epoch
(written by the chief; the other workers write to a temporary folder that they
delete, as TensorFlow's multi-worker guide does) lets a restarted job resume
where the last finished epoch left it.

Run one process per worker, each with its `TF_CONFIG`::

    export TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python examples/train_multiworker_tf.py --checkpoint-dir /shared/ckpt --out weights.npz

(index 1 on the second host). Without `TF_CONFIG` it runs as one worker with
the whole global batch: the same training on one process.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from digits_cnn import build_model, digits, parse, save_weights  # noqa: E402

import keras_norms  # noqa: E402
from keras_norms.distributed import is_chief  # noqa: E402


def main(argv=None):
    args = parse(__doc__.split("\n\n")[0], argv)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING))
    workers = strategy.num_replicas_in_sync
    worker = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    if args.global_batch % workers:
        raise ValueError(f"--global-batch must be a multiple of the {workers} workers. "
                         f"Received: --global-batch={args.global_batch}")
    with strategy.scope():
        # An existing model's batch norms (Keras' or ours) made global in one line.
        model = keras_norms.synchronize_batch_norms(build_model(args.norm))
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        optimizer.build(model.trainable_variables)
        finished_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, finished_epochs=finished_epochs)

    folder = pathlib.Path(args.checkpoint_dir)
    latest = tf.train.latest_checkpoint(folder)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    resumed_at = int(finished_epochs.numpy())
    print(f"worker {worker} of {workers}: starting at epoch {resumed_at}", flush=True)
    # Only the chief's checkpoint is kept; the others write theirs to a folder they delete.
    write_to = folder if is_chief() else folder.parent / f".{folder.name}-worker-{worker}"
    manager = tf.train.CheckpointManager(checkpoint, write_to, max_to_keep=2)

    loss_function = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    @tf.function
    def train_step(x, y):
        def step(x, y):
            with tf.GradientTape() as tape:
                per_example = loss_function(y, model(x, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=args.global_batch)
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss
        return strategy.reduce("SUM", strategy.run(step, args=(x, y)), axis=None)

    x, y = digits()
    steps = args.steps_per_epoch or len(x) // args.global_batch
    local = args.global_batch // workers
    for epoch in range(resumed_at, args.epochs):
        losses = []
        for step in range(steps):
            # This worker's slice of the global batch (the same order every epoch, for reproducibility).
            start = step * args.global_batch + worker * local
            batch = slice(start, start + local)
            losses.append(float(train_step(tf.constant(x[batch]), tf.constant(y[batch]))))
            time.sleep(args.step_delay)
        finished_epochs.assign(epoch + 1)
        manager.save()
        if not is_chief():
            shutil.rmtree(write_to, ignore_errors=True)
        print(f"worker {worker}: epoch {epoch + 1} loss {np.mean(losses):.4f}", flush=True)
    if args.out and is_chief():
        save_weights(args.out, model, resumed_at)


if __name__ == "__main__":
    main()
