"""Training on several processes: which process is the chief, and `fit` checkpoints that only it writes.

Batch norm needs the statistics of the global batch when each device sees a
few examples; `BatchNormalization(synchronized=True)` (or
`keras_norms.synchronize_batch_norms(model)`) gives them under a
`tf.distribute` strategy and under `keras.distribution.DataParallel` on JAX,
in one process or several. What is left to the training script is to
checkpoint so that a killed process costs no finished epoch: with `fit`,
`BackupAndRestore` below; in a TensorFlow custom loop, `tf.train.CheckpointManager`
written by the chief (see docs/guides/backends.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import keras

__all__ = ["BackupAndRestore", "is_chief", "process_index"]


def process_index() -> int:
    """This process's index in a multi-process job; 0 for the chief and in a single process.

    JAX: `jax.process_index()` (set by `keras.distribution.initialize`).
    TensorFlow: the task in `TF_CONFIG`, where the chief is the task of type
    `"chief"`, or worker 0 when there is none. PyTorch: 0.

    Returns:
        The index of this process, an int (0 for the chief and in a single process).

    Examples:
        >>> from keras_norms.distributed import process_index
        >>> process_index()  # a single process
        0
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.process_index()
    if backend == "tensorflow" and os.environ.get("TF_CONFIG"):
        config = json.loads(os.environ["TF_CONFIG"])
        task = config.get("task", {})
        if task.get("type") == "chief":
            return 0
        has_chief = bool(config.get("cluster", {}).get("chief"))
        return int(task.get("index", 0)) + (1 if has_chief else 0)
    return 0


def is_chief() -> bool:
    """Tells whether this process is the chief, the one that writes checkpoints and results.

    Guard what only one process of a multi-process job should do (writing
    files, printing reports) with it; in a single process it is always True.

    Returns:
        True when `process_index() == 0`.

    Examples:
        >>> from keras_norms.distributed import is_chief
        >>> is_chief()  # a single process
        True
    """
    return process_index() == 0


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for `fit` on several processes: all restore, the chief writes.

    With Keras' callback every process of a multi-process `fit` (JAX under
    `keras.distribution`) would write the same files at the same time. Here
    every process restores from `backup_dir` when training starts, and only
    the chief (`is_chief()`) writes there (the others take part in gathering
    the weights and discard their copy), atomically: the weights go to a new file,
    then the metadata that names it replaces the old metadata in one rename,
    so a process killed at any moment leaves the last finished checkpoint
    readable. A job restarted after a crash resumes at the epoch after the
    last one saved. `backup_dir` must be a folder every process can read (a
    shared file system on a cluster).

    Args:
        backup_dir: The folder of the checkpoint.
        save_freq: `"epoch"`, or an int: save every that many batches.
        delete_checkpoint: Delete the checkpoint when training finishes.

    Examples:
        >>> import keras, numpy as np, tempfile
        >>> from keras_norms.distributed import BackupAndRestore
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> backup = BackupAndRestore(tempfile.mkdtemp())
        >>> _ = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2, callbacks=[backup], verbose=0)
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint: bool = True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)

    def _load_model(self):
        metadata_path = pathlib.Path(self._training_metadata_path)
        if not metadata_path.exists():
            return super()._load_model()  # nothing saved yet, or a checkpoint of Keras' own callback
        metadata = json.loads(metadata_path.read_text())
        if "weights" not in metadata:
            return super()._load_model()
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(pathlib.Path(self.backup_dir) / metadata["weights"])
        self.model._initial_epoch = metadata["epoch"]

    def _save_model(self):
        if not is_chief():
            # Gathering the weights is a collective on JAX: every process saves, the others to a
            # temporary folder that they delete at once (as TensorFlow's multi-worker guide does).
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save_weights(pathlib.Path(scratch) / "discarded.weights.h5")
            return
        folder = pathlib.Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}-batch-{self._last_batch_seen}.weights.h5"
        temporary = folder / f"writing-{os.getpid()}-{name}"
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, folder / name)
        metadata = json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name})
        temporary = folder / f"writing-{os.getpid()}-metadata.json"
        temporary.write_text(metadata)
        os.replace(temporary, self._training_metadata_path)
        for old in folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if is_chief():
            super().on_train_end(logs)
