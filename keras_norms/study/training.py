"""One cell of the comparison: the data it needs, its training, and its measurements."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from keras_norms.models import DEFAULT_INPUT_SHAPES, build_model
from keras_norms.recalibrate import recalibrate_batch_norms
from keras_norms.study import corruptions
from keras_norms.study.datasets import DEFAULT_TARGET_ACCURACY, Splits, fit_to_shape, load, subsample
from keras_norms.study.grid import SGD_MOMENTUM, Cell, GridError, GridSpec, describe_norm

#: At most this many training examples measure the train accuracy, and this many test examples
#: each corrupted test set (CIFAR-10 would otherwise need gigabytes per corrupted copy).
TRAIN_EVAL_EXAMPLES = 2000
CORRUPTED_EXAMPLES = 1000
#: Batch size of every evaluation (it does not change the inference-mode results).
EVAL_BATCH_SIZE = 500
#: Training steps run per call of the compiled step: keeps Python out of small-batch timings.
STEPS_PER_EXECUTION = 16


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's retracing warning: every cell builds a new model, so new functions are expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_NO_RETRACING_WARNING = _NoRetracingWarning()


class Prepared(NamedTuple):
    """The data of a grid, shaped for its model, and the evaluation sets packed in one array."""

    data: Splits
    input_shape: tuple[int, ...]
    num_classes: int
    target_accuracy: float
    eval_x: np.ndarray
    eval_y: np.ndarray
    segments: dict[str, slice]
    #: Options every model of the grid is built with (token ids: the transformer's `vocab_size`).
    model_options: dict | None = None


def model_input_shape(spec: GridSpec, data: Splits) -> tuple[int, ...]:
    """`spec.input_shape`, else the data's own rows (sequence model) or examples (transformer), else the
    model's default."""
    if spec.input_shape is not None:
        return tuple(spec.input_shape)
    x = data.x_train
    if spec.model == "sequence":
        return (x.shape[1], int(np.prod(x.shape[2:])))
    if spec.model == "transformer":
        return tuple(x.shape[1:])
    return DEFAULT_INPUT_SHAPES[spec.model]


def _is_tokens(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.integer)


def prepare(spec: GridSpec) -> Prepared:
    """Loads the data set, fits it to the model's input and builds the evaluation sets.

    Raises:
        DataError: the data set cannot be loaded (see `datasets.load`).
        GridError: a batch size larger than the training set.
    """
    data = subsample(load(spec.dataset, spec.split_seed, spec.data_dir), spec.train_size, spec.split_seed)
    shape = model_input_shape(spec, data)
    data = Splits(*(fit_to_shape(a, shape) if i % 2 == 0 else a for i, a in enumerate(data)))
    too_large = [b for b in spec.batch_sizes if b > len(data.y_train)]
    if too_large:
        raise GridError(
            f"batch size {too_large[0]} is larger than the training set ({len(data.y_train)} examples of "
            f"{spec.dataset}); use --batch-sizes up to {len(data.y_train)}"
        )
    x_test, y_test = data.x_test[:CORRUPTED_EXAMPLES], data.y_test[:CORRUPTED_EXAMPLES]
    parts = {"train": (data.x_train[:TRAIN_EVAL_EXAMPLES], data.y_train[:TRAIN_EVAL_EXAMPLES]),
             "test": (data.x_test, data.y_test)}
    tokens = _is_tokens(data.x_train)
    if not tokens:  # the corruptions are of images (and of sequences read as images)
        for name in corruptions.CORRUPTIONS:
            for severity in corruptions.SEVERITIES:
                corrupted = corruptions.corrupt(x_test, name, severity, seed=spec.split_seed)
                parts[f"{name}:{severity}"] = (corrupted, y_test)
        parts["heterogeneous"] = (corruptions.heterogeneous(x_test, seed=spec.split_seed)[0], y_test)
    segments, start = {}, 0
    for name, (_, y) in parts.items():
        segments[name] = slice(start, start + len(y))
        start += len(y)
    target = spec.target_accuracy or DEFAULT_TARGET_ACCURACY[spec.dataset]
    return Prepared(
        data, tuple(shape), int(max(data.y_train.max(), data.y_test.max())) + 1, target,
        np.concatenate([x for x, _ in parts.values()]), np.concatenate([y for _, y in parts.values()]),
        segments,
        {"vocab_size": int(max(data.x_train.max(), data.x_test.max())) + 1} if tokens else {},
    )


@keras.saving.register_keras_serializable(package="keras_norms")
class LinearWarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that rises linearly over the first `warmup_steps` steps, then stays constant.

    Step `s` (counted from 0) trains with ``learning_rate * min(1, (s + 1) / warmup_steps)``:
    ``learning_rate / warmup_steps`` at the first step, `learning_rate` from
    step ``warmup_steps - 1`` on. The cell's `warmup_epochs` times its steps per
    epoch give `warmup_steps`. Written with `keras.ops`, so it works on every backend.

    Examples:
        >>> schedule = LinearWarmUp(0.01, warmup_steps=4)
        >>> [round(float(schedule(step)), 6) for step in range(6)]
        [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01]
    """

    def __init__(self, learning_rate: float, warmup_steps: int):
        if warmup_steps < 1:
            raise ValueError(f"LinearWarmUp: `warmup_steps` must be >= 1. Received: {warmup_steps}")
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        progress = (keras.ops.cast(step, "float32") + 1.0) / float(self.warmup_steps)
        return self.learning_rate * keras.ops.minimum(progress, 1.0)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def learning_rate_of(cell: Cell, steps_per_epoch: int):
    """The optimizer's learning rate for `cell`: a float, or a `LinearWarmUp` over its `warmup_epochs`."""
    if not cell.warmup_epochs:
        return cell.learning_rate
    return LinearWarmUp(cell.learning_rate, cell.warmup_epochs * steps_per_epoch)


class _EpochTimer(keras.callbacks.Callback):
    """Training seconds of each epoch (validation excluded); calls `on_epoch(epoch)` after each."""

    def __init__(self, on_epoch: Callable[[int], None] | None = None):
        super().__init__()
        self.on_epoch = on_epoch
        self.train_seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def _stop(self):
        if self._start is not None:
            self.train_seconds.append(time.perf_counter() - self._start)
            self._start = None


def _finite(values):
    return [float(v) if math.isfinite(v) else None for v in values]


def _recalibrated_test_accuracy(model, cell: Cell, prepared: Prepared) -> float:
    """Test accuracy after `recalibrate_batch_norms` over the training set at the training batch size.

    The moving averages are replaced (in place: call this last) by the
    population statistics of what each batch norm normalizes in training mode
    (Wu and Johnson, 2021): the gap to the moving averages' accuracy is what
    batch statistics that lag behind the weights cost at test time.
    """
    data = prepared.data
    recalibrate_batch_norms(model, data.x_train, batch_size=cell.batch_size, verbose=0)
    test = prepared.segments["test"]
    logits = model.predict(prepared.eval_x[test], batch_size=EVAL_BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == prepared.eval_y[test]))


def train_cell(cell: Cell, prepared: Prepared, on_epoch: Callable[[int], None] | None = None,
               model_path=None) -> dict:
    """Trains one cell and returns its measurements (JSON-ready; None where not reached).

    With `model_path`, the trained model is also saved there as a `.keras` file.

    Measured: test accuracy; the train accuracy in inference mode and the gap
    to the test accuracy; the validation accuracy after each epoch, the first
    epoch reaching `cell.target_accuracy` and the training seconds until then;
    the median milliseconds per training step (epochs after the first, which
    also traces the graph); the accuracy on each corrupted test set and on the
    heterogeneous one; for batch norm, the test accuracy with recalibrated
    population statistics instead of the moving averages.
    """
    logging.getLogger("tensorflow").addFilter(_NO_RETRACING_WARNING)  # idempotent
    data = prepared.data
    keras.utils.set_random_seed(cell.seed)
    model = build_model(cell.model, cell.norm_name, input_shape=prepared.input_shape,
                        num_classes=prepared.num_classes, **cell.norm_options(), **cell.model_options(),
                        **(prepared.model_options or {}))
    steps = math.ceil(len(data.y_train) / cell.batch_size)
    learning_rate = learning_rate_of(cell, steps)
    if cell.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=min(STEPS_PER_EXECUTION, steps),
    )
    timer = _EpochTimer(on_epoch)
    history = model.fit(
        data.x_train, data.y_train, batch_size=cell.batch_size, epochs=cell.epochs,
        validation_data=(data.x_val, data.y_val), validation_batch_size=EVAL_BATCH_SIZE,
        callbacks=[timer, keras.callbacks.TerminateOnNaN()], verbose=0,
    ).history
    if model_path is not None:
        model.save(model_path)
    logits = model.predict(prepared.eval_x, batch_size=EVAL_BATCH_SIZE, verbose=0)
    correct = np.argmax(logits, axis=-1) == prepared.eval_y
    accuracy = {name: float(correct[part].mean()) for name, part in prepared.segments.items()}

    val_accuracy = [float(v) for v in history["val_accuracy"]]
    reached = next((i for i, v in enumerate(val_accuracy) if v >= cell.target_accuracy), None)
    per_step = sorted(s / steps for s in (timer.train_seconds[1:] or timer.train_seconds))
    corrupted = {k: v for k, v in accuracy.items() if ":" in k}
    has_batch_norm = describe_norm(cell.norm_name).batch_norm
    recalibrated = _recalibrated_test_accuracy(model, cell, prepared) if has_batch_norm else None
    return {
        "test_accuracy": accuracy["test"],
        "test_accuracy_recalibrated": recalibrated,
        "train_accuracy": accuracy["train"],
        "generalization_gap": accuracy["train"] - accuracy["test"],
        "final_val_accuracy": val_accuracy[-1],
        "epochs_run": len(val_accuracy),
        "diverged": not all(math.isfinite(v) for v in history["loss"]),
        "epochs_to_target": None if reached is None else reached + 1,
        "seconds_to_target": None if reached is None else float(sum(timer.train_seconds[: reached + 1])),
        "ms_per_step": 1000.0 * per_step[len(per_step) // 2],
        "train_seconds": float(sum(timer.train_seconds)),
        "corrupted_accuracy": float(np.mean(list(corrupted.values()))) if corrupted else None,
        "heterogeneous_accuracy": accuracy.get("heterogeneous"),
        **{f"acc_{k.replace(':', '_s')}": v for k, v in corrupted.items()},
        "curves": {
            "loss": _finite(history["loss"]),
            "accuracy": _finite(history["accuracy"]),
            "val_accuracy": _finite(val_accuracy),
        },
    }
